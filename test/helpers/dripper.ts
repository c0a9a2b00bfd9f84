// The slow-client load generator (test/fixtures/dripper.c): compiled into a
// temp dir when a test needs it (it is a test tool, not part of the
// package), run as a child process, its one-JSON-line-a-second reports
// collected.
import { execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';
import { ROOT } from './daemon';

export interface DripperReport {
  /** ms since the start. */
  t: number;
  /** Connections open now. */
  open: number;
  connects: number;
  /** Connections the daemon closed. */
  cuts: number;
  /** Request bytes sent. */
  sent: number;
  /** Bytes the daemon sent back. */
  received: number;
  /** Connects refused with EAGAIN (backlog full) and retried. */
  retries: number;
  errors: number;
  lastError: string;
}

export interface DripperRun {
  pid: number;
  /** Every report so far; the last one is the final count once done resolves. */
  reports: DripperReport[];
  /** Resolves with the exit code once the run is over. */
  done: Promise<number | null>;
  output(): string;
  kill(): void;
}

export interface DripperOptions {
  socketPath: string;
  clients: number;
  seconds: number;
  bytesPerSecond: number;
  rampSeconds: number;
}

/** Compiles the dripper into dir; returns the binary's path. */
export function buildDripper(dir: string): string {
  const bin = path.join(dir, 'dripper');
  execFileSync('cc', ['-O2', '-Wall', '-Wextra', '-o', bin, path.join(ROOT, 'test', 'fixtures', 'dripper.c')], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  return bin;
}

export function runDripper(bin: string, o: DripperOptions): DripperRun {
  const child = spawn(
    bin,
    [o.socketPath, String(o.clients), String(o.seconds), String(o.bytesPerSecond), String(o.rampSeconds)],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  const reports: DripperReport[] = [];
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  readline.createInterface({ input: child.stdout }).on('line', (line) => {
    reports.push(JSON.parse(line) as DripperReport);
  });
  const done = new Promise<number | null>((resolve) => child.once('close', (code) => resolve(code)));
  return {
    pid: child.pid!,
    reports,
    done,
    output: () => stderr,
    kill: () => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    },
  };
}

/** The hard RLIMIT_NOFILE of this process (what a child can raise its soft limit to). */
export function hardFdLimit(): number {
  const line = fs
    .readFileSync('/proc/self/limits', 'utf8')
    .split('\n')
    .find((l) => l.startsWith('Max open files'));
  const hard = line?.trim().split(/\s+/)[4];
  return hard === 'unlimited' ? Infinity : Number(hard);
}

export function tempDir(): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), 'saslts-dripper-'));
}
