// --check's look at the shared store: connect (with the daemon's TLS files
// and credentials), read the server's version, time a few PINGs, and run the
// throttle's read script once on a key under the prefix, which proves the
// user may run scripts on those keys (an ACL user without +@scripting, or
// with ~other:* only, would otherwise fail only at the first login).
import fs from 'node:fs';
import Redis from 'ioredis';
import { THROTTLE_SCRIPTS } from '../auth/throttle/redis-store';
import type { StateSettings } from '../config/options';
import { errorHint, parseVersion, redisOptions, type TlsFiles } from './redis';

export type ProbeResult =
  | { ok: true; server: string; version: string; mode: string; latencyMs: number[]; warning?: string }
  | { ok: false; error: string };

const CONNECT_TIMEOUT_MS = 3_000;

function readTls(st: StateSettings): TlsFiles | string {
  const out: TlsFiles = {};
  const files: Array<[keyof TlsFiles, string, string | undefined]> = [
    ['ca', '--state-tls-ca', st.tls.caFile],
    ['cert', '--state-tls-cert', st.tls.certFile],
    ['key', '--state-tls-key', st.tls.keyFile],
  ];
  for (const [k, flag, file] of files) {
    if (file === undefined) continue;
    try {
      out[k] = fs.readFileSync(file);
    } catch (err) {
      return `${flag} ${file}: cannot read: ${(err as Error).message}`;
    }
  }
  return out;
}

export async function probeState(st: StateSettings): Promise<ProbeResult> {
  const tls = readTls(st);
  if (typeof tls === 'string') return { ok: false, error: tls };
  let lastError = '';
  const client = new Redis(
    redisOptions(st.target, tls, {
      lazyConnect: true,
      enableOfflineQueue: false,
      maxRetriesPerRequest: 0,
      retryStrategy: () => null,
      connectTimeout: CONNECT_TIMEOUT_MS,
      protocol: 2,
      disableClientInfo: true,
      connectionName: 'saslauthd-ts-check',
    }),
  );
  client.on('error', (err: Error) => (lastError = err.message));
  const deadline = <T>(p: Promise<T>, what: string): Promise<T> => {
    let timer: NodeJS.Timeout | undefined;
    return Promise.race([
      p,
      new Promise<T>(
        (_r, reject) =>
          (timer = setTimeout(
            () => reject(new Error(`no answer to ${what} within ${CONNECT_TIMEOUT_MS} ms`)),
            CONNECT_TIMEOUT_MS,
          )),
      ),
    ]).finally(() => clearTimeout(timer));
  };
  try {
    await deadline(client.connect(), 'connect');
    const info = await deadline(client.info('server'), 'INFO');
    const version = parseVersion(info) ?? 'unknown version';
    const server = /^valkey_version:/m.test(info) ? 'Valkey' : 'Redis';
    const mode = /^redis_mode:(\S+)/m.exec(info)?.[1] ?? 'standalone';
    const latencyMs: number[] = [];
    for (let i = 0; i < 5; i++) {
      const t0 = performance.now();
      await deadline(client.ping(), 'PING');
      latencyMs.push(performance.now() - t0);
    }
    const lua = THROTTLE_SCRIPTS.saslauthdRead?.lua ?? '';
    await deadline(client.eval(lua, 2, `${st.prefix}g:check`, `${st.prefix}t:check`, '1'), 'a script');
    latencyMs.sort((a, b) => a - b);
    const median = latencyMs[2] ?? 0;
    const result: ProbeResult = { ok: true, server, version, mode, latencyMs };
    if (median > st.timeoutMs / 2) {
      result.warning = `--state: the median PING takes ${median.toFixed(1)} ms, over half the ${st.timeoutMs} ms deadline: most operations would time out; raise --state-timeout or use a nearer server`;
    }
    // One request's keys hash to different slots: a cluster would refuse its scripts (CROSSSLOT).
    if (mode === 'cluster')
      return {
        ok: false,
        error: 'is a Redis Cluster, which is not supported: use one Redis (with replicas and Sentinel) per site',
      };
    return result;
  } catch (err) {
    // The server's or the socket's own error says more than ioredis's "Connection is closed".
    const detail = lastError !== '' ? lastError : (err as Error).message;
    return { ok: false, error: `cannot use it: ${detail}${errorHint(detail)}` };
  } finally {
    client.disconnect();
  }
}
