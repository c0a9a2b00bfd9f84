// A guard for processes a test starts: a detached shell that waits for the
// test process to go away by any means (even SIGKILL, which runs no hooks),
// then kills what it was told to and removes dir. It leaves by itself once
// dir is gone, i.e. after a normal cleanup.
import { spawn } from 'node:child_process';

export interface WatchdogTargets {
  /** Files holding a PID each (e.g. slapd's pidfile, read when it fires). */
  pidFiles?: string[];
  /**
   * An argument only our process has (a path inside dir): processes with
   * exactly this argument are killed. Covers a child whose PID we never saw.
   */
  uniqueArg?: string;
}

export function startWatchdog(dir: string, targets: WatchdogTargets): void {
  const script = [
    'while kill -0 "$TEST_PID" 2>/dev/null && [ -d "$DIR" ]; do sleep 1; done',
    '[ -d "$DIR" ] || exit 0',
    'for f in "$@"; do',
    '  p=$(cat "$f" 2>/dev/null)',
    '  [ -n "$p" ] && kill -CONT "$p" 2>/dev/null && kill -KILL "$p" 2>/dev/null',
    'done',
    'if [ -n "$UNIQUE_ARG" ]; then',
    '  for d in /proc/[0-9]*; do',
    '    grep -qzxF -- "$UNIQUE_ARG" "$d/cmdline" 2>/dev/null && kill -KILL "${d#/proc/}" 2>/dev/null',
    '  done',
    'fi',
    'rm -rf "$DIR"',
  ].join('\n');
  const child = spawn('sh', ['-c', script, 'watchdog', ...(targets.pidFiles ?? [])], {
    detached: true,
    stdio: 'ignore',
    env: {
      PATH: process.env.PATH ?? '/usr/bin:/bin',
      TEST_PID: String(process.pid),
      DIR: dir,
      UNIQUE_ARG: targets.uniqueArg ?? '',
    },
  });
  child.unref();
}
