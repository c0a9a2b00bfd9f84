// pino setup. One JSON object per event; the destination is stderr in the
// foreground (-d/-f, and under systemd, whose journal keeps it) or syslog's
// LOG_AUTH facility when detached, as Cyrus logs.
//
// Passwords are never handed to the logger; redact is the second fence in
// case a future caller passes a request object whole.
import pino from 'pino';
import { native } from '../native/binding';

export type LogDestination = 'stderr' | 'syslog';

export interface LoggerOptions {
  level: pino.LevelWithSilent;
  destination: LogDestination;
  /** Synchronous writes: slower, but nothing is lost if the process dies. */
  sync?: boolean;
}

// No code path hands a password to the logger (a test greps whole debug runs
// for the test passwords); these cover the names one would have. Wildcard
// paths are avoided: they doubled pino's cost per line on the hot path.
export const REDACT_PATHS = [
  'password',
  'passwd',
  'secret',
  'req.password',
  'request.password',
  'config.ldap_password',
  'config.ldap_bind_pw',
];

// pino numeric levels -> syslog priorities (LOG_DEBUG..LOG_CRIT).
function syslogPriority(line: string): number {
  const m = /"level":(\d+)/.exec(line);
  const level = m ? Number(m[1]) : 30;
  if (level >= 60) return 2;
  if (level >= 50) return 3;
  if (level >= 40) return 4;
  if (level >= 30) return 6;
  return 7;
}

export interface DaemonLogger {
  log: pino.Logger;
  /**
   * The one-line-per-attempt result log. Same destination, no redaction:
   * its fields are built field by field from strings that cannot hold a
   * password (user, service, realm, mech, result, reason), and redaction
   * doubled pino's cost on the hottest line.
   */
  resultLog: pino.Logger;
  /** Write out anything buffered (call before exit). */
  flush(): void;
}

export function createLogger(opts: LoggerOptions): DaemonLogger {
  const base: pino.LoggerOptions = {
    name: 'saslauthd-ts',
    level: opts.level,
    redact: { paths: REDACT_PATHS, censor: '[redacted]' },
    timestamp: pino.stdTimeFunctions.isoTime,
    base: { pid: process.pid },
  };
  if (opts.destination === 'syslog') {
    native.openlog('saslauthd-ts');
    const stream = {
      write(line: string): void {
        native.syslog(syslogPriority(line), line.endsWith('\n') ? line.slice(0, -1) : line);
      },
    };
    const { redact: _unused, ...plain } = base;
    return { log: pino(base, stream), resultLog: pino(plain, stream), flush: () => undefined };
  }
  // Batched: one write per 4 KiB of lines under load, and within 200 ms when
  // quiet. An unbatched async write per line costs a thread-pool round trip
  // per request, which measured at 50-140 us of CPU per authentication.
  const sync = opts.sync ?? false;
  const dest = pino.destination({ dest: 2, sync, minLength: sync ? 0 : 4096 });
  if (!sync) {
    setInterval(() => {
      try {
        dest.flush();
      } catch {
        // a write is in progress; the next tick takes the rest
      }
    }, 200).unref();
  }
  const { redact: _unused, ...plain } = base;
  return {
    log: pino(base, dest),
    resultLog: pino(plain, dest),
    flush: () => {
      try {
        dest.flushSync();
      } catch {
        // not ready yet or already closed: nothing buffered to lose
      }
    },
  };
}
