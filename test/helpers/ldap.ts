// The daemon with -a ldap against the slapd fixture: writes a saslauthd.conf
// under a temp dir, runs the daemon on a run dir inside it, and removes both.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { sendRequest } from '../../src/client/request';
import { DAEMON_BIN, startDaemon, type RunningDaemon } from './daemon';
import { startWatchdog } from './watchdog';
import { ADMIN_PASSWORD, DUP_STAFF_PASSWORD, SERVICE_DN, SERVICE_PASSWORD, USERS } from './slapd';

export type ConfValues = Record<string, string | number | undefined>;

/** A saslauthd.conf from key/value pairs (undefined values are left out). */
export function confText(values: ConfValues): string {
  return (
    Object.entries(values)
      .filter(([, v]) => v !== undefined)
      .map(([k, v]) => `${k}: ${String(v)}`)
      .join('\n') + '\n'
  );
}

/** The service account and search base most tests use. */
export function serviceConf(servers: string, extra: ConfValues = {}): ConfValues {
  return {
    ldap_servers: servers,
    ldap_bind_dn: SERVICE_DN,
    ldap_password: SERVICE_PASSWORD,
    ldap_search_base: 'dc=example,dc=org',
    ldap_timeout: 3,
    ...extra,
  };
}

export interface AskOptions {
  realm?: string;
  service?: string;
  timeoutMs?: number;
}

export interface Explained {
  reply: string;
  result: string;
  reason: string;
}

interface AuthLogLine {
  user?: string;
  service?: string;
  result?: string;
  reason?: string;
}

export interface LdapDaemon {
  d: RunningDaemon;
  dir: string;
  confPath: string;
  ask(login: string, password: string, opts?: AskOptions): Promise<string>;
  /** ask, then wait for the daemon's log line about it: reason and result (ok, denied, unavailable). */
  explain(login: string, password: string, opts?: AskOptions): Promise<Explained>;
  /** ask, and how long it took. */
  timed(login: string, password: string, opts?: AskOptions): Promise<{ reply: string; ms: number }>;
  /** Rewrite (null: delete) the config file and send SIGHUP; resolves with the daemon's log line about it. */
  reload(values: ConfValues | string | null): Promise<string>;
  /** Stop the daemon, assert no secret reached its log, and remove the temp dir. */
  stop(): Promise<void>;
}

/** Every password the fixture knows: none may ever appear in a log. */
export const SECRETS = [...Object.values(USERS).map((u) => u.password), DUP_STAFF_PASSWORD, SERVICE_PASSWORD, ADMIN_PASSWORD];

export function assertNoSecrets(output: string, extra: string[] = []): void {
  for (const secret of [...SECRETS, ...extra]) {
    assert.ok(!output.includes(secret), `a password (${secret.slice(0, 3)}...) appears in the daemon log`);
  }
}

export async function startLdapDaemon(
  values: ConfValues | string,
  extraArgs: string[] = [],
  env?: NodeJS.ProcessEnv,
): Promise<LdapDaemon> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sts-ldapd-'));
  const confPath = path.join(dir, 'saslauthd.conf');
  const write = (v: ConfValues | string): void => fs.writeFileSync(confPath, typeof v === 'string' ? v : confText(v));
  write(values);
  const runDir = path.join(dir, 'run');
  // The daemon's -O argument is unique to it.
  startWatchdog(dir, { uniqueArg: confPath });
  let d: RunningDaemon;
  try {
    // explain() reads each attempt's own log line: none may be folded into
    // the per-login summaries the daemon writes under a flood.
    d = await startDaemon({
      args: [
        '-a',
        'ldap',
        '-O',
        confPath,
        '--log-failures-per-login',
        '100000',
        '--log-failures-per-second',
        '100000',
        ...extraArgs,
      ],
      runDir,
      ...(env !== undefined ? { env } : {}),
    });
  } catch (err) {
    fs.rmSync(dir, { recursive: true, force: true });
    throw err;
  }
  const ask = (login: string, password: string, opts: AskOptions = {}): Promise<string> =>
    sendRequest(
      d.socketPath,
      { login, password, service: opts.service ?? 'imap', realm: opts.realm ?? '' },
      opts.timeoutMs ?? 30_000,
    );
  let reloads = 0;
  let explained = 0;
  const authLines = (login: string): AuthLogLine[] =>
    d
      .output()
      .split('\n')
      .filter((l) => l.startsWith('{') && l.includes('"msg":"auth '))
      .map((l) => JSON.parse(l) as AuthLogLine)
      .filter((j) => j.user === login);
  return {
    d,
    dir,
    confPath,
    ask,
    async explain(login, password, opts = {}) {
      // A unique service name tells this request's log line from earlier ones.
      const service = opts.service ?? `explain${++explained}`;
      const reply = await ask(login, password, { ...opts, service });
      // The log is written asynchronously: wait for the line.
      const until = Date.now() + 5000;
      for (;;) {
        const line = authLines(login).find((j) => j.service === service);
        if (line !== undefined) return { reply, result: line.result ?? '', reason: line.reason ?? '' };
        if (Date.now() > until) throw new Error(`no auth log line for ${login}:\n${d.output()}`);
        await new Promise((r) => setTimeout(r, 10));
      }
    },
    async timed(login, password, opts) {
      const t = process.hrtime.bigint();
      const reply = await ask(login, password, opts);
      return { reply, ms: Number(process.hrtime.bigint() - t) / 1e6 };
    },
    async reload(v) {
      if (v === null) fs.rmSync(confPath, { force: true });
      else write(v);
      const before = d
        .output()
        .split('\n')
        .filter((l) => /SIGHUP: configuration/.test(l)).length;
      reloads++;
      d.child.kill('SIGHUP');
      const until = Date.now() + 5000;
      for (;;) {
        const lines = d
          .output()
          .split('\n')
          .filter((l) => /SIGHUP: configuration/.test(l));
        if (lines.length > before) return lines[lines.length - 1] ?? '';
        if (Date.now() > until) throw new Error(`reload ${reloads}: no SIGHUP log line\n${d.output()}`);
        await new Promise((r) => setTimeout(r, 20));
      }
    },
    async stop() {
      try {
        await d.stop();
        assertNoSecrets(d.output());
      } finally {
        fs.rmSync(dir, { recursive: true, force: true });
      }
    },
  };
}

export interface FailedStart {
  code: number | null;
  stderr: string;
}

/** Run the daemon with a config it must refuse; resolves with its exit status. */
export async function expectStartupFailure(
  values: ConfValues | string | undefined,
  confName = 'saslauthd.conf',
): Promise<FailedStart> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sts-ldapd-'));
  try {
    const confPath = path.join(dir, confName);
    if (values !== undefined) fs.writeFileSync(confPath, typeof values === 'string' ? values : confText(values));
    const child = spawn(process.execPath, [DAEMON_BIN, '-f', '-m', path.join(dir, 'run'), '-a', 'ldap', '-O', confPath], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stderr = '';
    child.stderr.on('data', (b: Buffer) => (stderr += b.toString()));
    child.stdout.on('data', (b: Buffer) => (stderr += b.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
    const code = await new Promise<number | null>((resolve) => child.once('exit', (c) => resolve(c)));
    clearTimeout(timer);
    return { code, stderr };
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}
