// A private redis-server (Debian's) for the shared-state tests: a temp dir,
// a free port on 127.0.0.1, a random password, no persistence (--save ''),
// a UNIX socket in the temp dir, DEBUG enabled (for DEBUG SLEEP), and
// optionally a TLS port with a throwaway CA. It can be killed (SIGKILL, as a
// crash) and started again on the same port; a watchdog kills it and removes
// the dir if the test process dies first.
import { type ChildProcess, spawn } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import Redis from 'ioredis';
import { freePort, makeCertificates } from './dovecot';
import { startWatchdog } from './watchdog';

export interface RedisServer {
  dir: string;
  port: number;
  password: string;
  socketPath: string;
  /** redis://:password@127.0.0.1:port/db */
  url(db?: number): string;
  tls?: { port: number; caFile: string; otherCaFile: string };
  /** A client of the test's own (closed by stop()). */
  client(): Redis;
  /** Keys under a prefix, by SCAN (never KEYS). */
  keys(prefix: string): Promise<string[]>;
  /** SIGKILL: a crash, nothing flushed. */
  kill(): Promise<void>;
  running(): boolean;
  /** Starts it again on the same port (empty: nothing was saved). */
  restart(): Promise<void>;
  /** Makes the server unresponsive for ms (DEBUG SLEEP); resolves when the command is sent. */
  sleep(ms: number): Promise<void>;
  log(): string;
  stop(): Promise<void>;
}

export interface RedisOptions {
  tls?: boolean;
}

async function waitReady(port: number, password: string, child: ChildProcess, logFile: string): Promise<void> {
  const until = Date.now() + 10_000;
  for (;;) {
    if (child.exitCode !== null)
      throw new Error(`redis-server exited with ${child.exitCode}:\n${fs.readFileSync(logFile, 'utf8')}`);
    const c = new Redis({
      port,
      host: '127.0.0.1',
      password,
      lazyConnect: true,
      retryStrategy: () => null,
      enableOfflineQueue: false,
    });
    c.on('error', () => undefined);
    try {
      await c.connect();
      if ((await c.ping()) === 'PONG') return;
    } catch {
      // not yet
    } finally {
      c.disconnect();
    }
    if (Date.now() > until) throw new Error(`redis-server not up within 10 s:\n${fs.readFileSync(logFile, 'utf8')}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

export async function startRedis(opts: RedisOptions = {}): Promise<RedisServer> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'saslauthd-ts-redis-'));
  const port = await freePort();
  const password = crypto.randomBytes(12).toString('base64url');
  const socketPath = path.join(dir, 'redis.sock');
  const logFile = path.join(dir, 'redis.log');
  const confPath = path.join(dir, 'redis.conf');
  let tls: RedisServer['tls'];
  const lines = [
    'bind 127.0.0.1',
    `port ${port}`,
    `requirepass ${password}`,
    `dir ${dir}`,
    "save ''",
    'appendonly no',
    `unixsocket ${socketPath}`,
    'unixsocketperm 700',
    `logfile ${logFile}`,
    'daemonize no',
    'enable-debug-command yes',
  ];
  if (opts.tls) {
    const certs = makeCertificates(dir);
    let tlsPort = await freePort();
    while (tlsPort === port) tlsPort = await freePort();
    lines.push(
      `tls-port ${tlsPort}`,
      `tls-cert-file ${certs.certFile}`,
      `tls-key-file ${certs.keyFile}`,
      `tls-ca-cert-file ${certs.caFile}`,
      'tls-auth-clients no',
    );
    tls = { port: tlsPort, caFile: certs.caFile, otherCaFile: certs.otherCaFile };
  }
  fs.writeFileSync(confPath, `${lines.join('\n')}\n`, { mode: 0o600 });
  startWatchdog(dir, { uniqueArg: confPath });

  let child: ChildProcess;
  const launch = async (): Promise<void> => {
    child = spawn('redis-server', [confPath], { stdio: 'ignore' });
    await waitReady(port, password, child, logFile);
  };
  await launch();
  const clients: Redis[] = [];
  const exited = (): Promise<void> =>
    child.exitCode !== null || child.signalCode !== null ? Promise.resolve() : new Promise((r) => child.once('exit', () => r()));

  const server: RedisServer = {
    dir,
    port,
    password,
    socketPath,
    url: (db = 0) => `redis://:${password}@127.0.0.1:${port}/${db}`,
    client() {
      const c = new Redis({ port, host: '127.0.0.1', password, maxRetriesPerRequest: 1 });
      c.on('error', () => undefined);
      clients.push(c);
      return c;
    },
    async keys(prefix) {
      const c = new Redis({ port, host: '127.0.0.1', password });
      c.on('error', () => undefined);
      try {
        const found: string[] = [];
        let cursor = '0';
        do {
          const [next, batch] = await c.scan(cursor, 'MATCH', `${prefix}*`, 'COUNT', 1000);
          cursor = next;
          found.push(...batch);
        } while (cursor !== '0');
        return found;
      } finally {
        c.disconnect();
      }
    },
    async kill() {
      child.kill('SIGKILL');
      await exited();
    },
    running: () => child.exitCode === null && child.signalCode === null,
    async restart() {
      await launch();
    },
    async sleep(ms) {
      const c = new Redis({ port, host: '127.0.0.1', password });
      c.on('error', () => undefined);
      // The reply comes only when the sleep ends; do not wait for it.
      void c
        .call('DEBUG', 'SLEEP', String(ms / 1000))
        .catch(() => undefined)
        .finally(() => c.disconnect());
      await new Promise((r) => setTimeout(r, 20));
    },
    log: () => (fs.existsSync(logFile) ? fs.readFileSync(logFile, 'utf8') : ''),
    async stop() {
      for (const c of clients.splice(0)) c.disconnect();
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGTERM');
        await exited();
      }
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
  if (tls) server.tls = tls;
  return server;
}

/** A fleet key file (root, 0600, 32 random bytes) in dir. */
export function makeKeyFile(dir: string, name = 'state.key'): string {
  const file = path.join(dir, name);
  fs.writeFileSync(file, crypto.randomBytes(32), { mode: 0o600 });
  return file;
}
