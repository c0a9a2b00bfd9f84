// Runs Debian's real /usr/sbin/testsaslauthd (package sasl2-bin).
import { execFile } from 'node:child_process';

export const TESTSASLAUTHD = '/usr/sbin/testsaslauthd';

export interface ToolResult {
  stdout: string;
  stderr: string;
  code: number;
}

export function runTool(cmd: string, args: string[], timeoutMs = 30_000): Promise<ToolResult> {
  return new Promise((resolve) => {
    execFile(cmd, args, { timeout: timeoutMs, encoding: 'utf8', maxBuffer: 16 << 20 }, (err, stdout, stderr) => {
      const code = err ? (typeof err.code === 'number' ? err.code : -1) : 0;
      resolve({ stdout, stderr, code });
    });
  });
}

export interface TestsaslauthdArgs {
  socket: string;
  user: string;
  password: string;
  service?: string;
  realm?: string;
  repeat?: number;
}

/** The stock client: prints `0: OK "Success."` or `0: NO "authentication failed"`. */
export function testsaslauthd(a: TestsaslauthdArgs): Promise<ToolResult> {
  const args = ['-f', a.socket, '-u', a.user, '-p', a.password];
  if (a.service !== undefined) args.push('-s', a.service);
  if (a.realm !== undefined) args.push('-r', a.realm);
  if (a.repeat !== undefined) args.push('-R', String(a.repeat));
  return runTool(TESTSASLAUTHD, args);
}

export const OK_LINE = '0: OK "Success."\n';
export const NO_LINE = '0: NO "authentication failed"\n';
