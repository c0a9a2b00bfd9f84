// Starts the built daemon (bin/saslauthd-ts.js) in the foreground on a temp
// run dir, captures its log output, and stops it. Used by integration tests.
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';

export const ROOT = path.resolve(__dirname, '..', '..', '..');
export const DAEMON_BIN = path.join(ROOT, 'bin', 'saslauthd-ts.js');
export const CLIENT_BIN = path.join(ROOT, 'bin', 'testsaslauthd-ts.js');

export interface RunningDaemon {
  runDir: string;
  socketPath: string;
  child: ChildProcess;
  /** Everything the daemon wrote to stdout and stderr so far. */
  output: () => string;
  /** Waits until a log line matching re appears (or throws after timeoutMs). */
  waitForLog(re: RegExp, timeoutMs?: number): Promise<string>;
  /** SIGTERM and wait for exit; returns the exit code. Removes the run dir if startDaemon made it. */
  stop(): Promise<number | null>;
}

export interface StartOptions {
  args: string[];
  /** -f (default) or -d. */
  mode?: '-f' | '-d';
  env?: NodeJS.ProcessEnv;
  runDir?: string;
  timeoutMs?: number;
  /** Start under this descriptor limit (soft and hard), through prlimit(1). */
  nofile?: number;
  /** A command that sets something up and execs the daemon (chrt, prlimit): the pid stays the daemon's. */
  prefix?: string[];
  /**
   * --log-format; json unless a test says otherwise, as tests read the
   * fields of the result lines. The text form has tests of its own.
   */
  logFormat?: 'text' | 'json';
  /** --dovecot-socket: also wait for this socket before returning. */
  dovecotSocket?: string;
}

export async function waitForSocket(socketPath: string, timeoutMs: number, child?: ChildProcess): Promise<void> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    if (child && child.exitCode !== null) throw new Error(`daemon exited with ${child.exitCode} before listening`);
    const ok = await new Promise<boolean>((resolve) => {
      const s = net.connect(socketPath);
      s.once('connect', () => {
        s.destroy();
        resolve(true);
      });
      s.once('error', () => resolve(false));
    });
    if (ok) return;
    if (Date.now() > until) throw new Error(`socket ${socketPath} not up within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

export async function startDaemon(opts: StartOptions): Promise<RunningDaemon> {
  const runDir = opts.runDir ?? fs.mkdtempSync(path.join(os.tmpdir(), 'saslauthd-ts-test-'));
  const socketPath = path.join(runDir, 'mux');
  const dovecot = opts.dovecotSocket === undefined ? [] : ['--dovecot-socket', opts.dovecotSocket];
  const argv = [DAEMON_BIN, opts.mode ?? '-f', '-m', runDir, '--log-format', opts.logFormat ?? 'json', ...dovecot, ...opts.args];
  // prlimit sets the limit on itself and then execs: the pid stays the daemon's.
  const prefix = [
    ...(opts.prefix ?? []),
    ...(opts.nofile === undefined ? [] : ['prlimit', `--nofile=${opts.nofile}:${opts.nofile}`, '--']),
  ];
  const [cmd, ...args] = [...prefix, process.execPath, ...argv] as [string, ...string[]];
  const child = spawn(cmd, args, {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, ...opts.env },
  });
  let out = '';
  const waiters: Array<() => void> = [];
  const onData = (d: Buffer): void => {
    out += d.toString('utf8');
    for (const w of waiters.splice(0)) w();
  };
  child.stdout.on('data', onData);
  child.stderr.on('data', onData);
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  try {
    await waitForSocket(socketPath, opts.timeoutMs ?? 10_000, child);
    if (opts.dovecotSocket !== undefined) await waitForSocket(opts.dovecotSocket, opts.timeoutMs ?? 10_000, child);
  } catch (err) {
    child.kill('SIGKILL');
    throw new Error(`${(err as Error).message}\n--- daemon output ---\n${out}`);
  }
  return {
    runDir,
    socketPath,
    child,
    output: () => out,
    async waitForLog(re, timeoutMs = 5000) {
      const until = Date.now() + timeoutMs;
      for (;;) {
        const line = out.split('\n').find((l) => re.test(l));
        if (line !== undefined) return line;
        if (Date.now() > until) throw new Error(`no log line matching ${re} within ${timeoutMs} ms:\n${out}`);
        await new Promise<void>((r) => {
          waiters.push(r);
          setTimeout(r, 100);
        });
      }
    },
    async stop() {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
      const code = await exited;
      if (opts.runDir === undefined) fs.rmSync(runDir, { recursive: true, force: true });
      return code;
    },
  };
}
