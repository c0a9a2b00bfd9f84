// Where the daemon's lines go, and in what shape.
//
// Shape (--log-format): text by default, Cyrus's own line shapes
// ("auth failure: [user=bob] [service=smtp] [realm=] [mech=pam] [reason=PAM
// auth error]"), so existing logwatch and fail2ban patterns match; json for
// log pipelines: one pino object per event, fields and all.
//
// Destination: stderr in the foreground (-d, -f, and under systemd, whose
// journal reads it) or syslog's auth facility when detached, as Cyrus logs.
// On the journal's stream each line starts with its priority ("<4>"), which
// journald turns into the entry's priority, so `journalctl -p warning` shows
// outages; the unit's SyslogFacility=auth puts it in auth.log.
//
// Nothing here may block the event loop: stderr is written asynchronously in
// batches, bounded (a stalled journal drops lines rather than growing
// memory), and syslog datagrams are sent non-blocking (src/native/syslog.cc).
// Dropped lines are counted and reported once they can be.
//
// Passwords are never handed to the logger; redact is the second fence in
// case a future caller passes a request object whole, and message texts have
// the password of any user:password@ URI masked.
import fs from 'node:fs';
import pino from 'pino';
import { native } from '../native/binding';
import { maskCredentials } from './redact';

export type LogDestination = 'stderr' | 'syslog';
export type LogFormat = 'text' | 'json';

export interface LoggerOptions {
  level: pino.LevelWithSilent;
  destination: LogDestination;
  format?: LogFormat;
  /** Synchronous writes: slower, but nothing is lost if the process dies. */
  sync?: boolean;
  /** Test seam: the syslog socket. */
  syslogPath?: string;
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

/** syslog's facility for authorization messages (LOG_AUTH). */
const LOG_AUTH = 4;
/** Lines held for stderr before they are dropped: a stalled journal must not grow the daemon. */
const STDERR_BUFFER_MAX = 1 << 20;

/** pino's numeric level -> syslog severity (LOG_CRIT .. LOG_DEBUG). */
export function severity(level: number): number {
  if (level >= 60) return 2;
  if (level >= 50) return 3;
  if (level >= 40) return 4;
  if (level >= 30) return 6;
  return 7;
}

interface Entry {
  level: number;
  msg?: string;
  err?: { message?: string };
}

/** The text form of a pino JSON line: its message (and an error's message when the text lacks it). */
export function textOf(json: string): { severity: number; text: string } {
  let e: Entry;
  try {
    e = JSON.parse(json) as Entry;
  } catch {
    return { severity: 6, text: json.trimEnd() };
  }
  let text = e.msg ?? '';
  const err = e.err?.message;
  if (err !== undefined && !text.includes(err)) text = text === '' ? err : `${text}: ${err}`;
  // One line per entry, whatever a message holds.
  return { severity: severity(e.level), text: text.replace(/[\r\n]+/g, ' ') };
}

/** Is stderr the systemd journal's stream (JOURNAL_STREAM=dev:inode of fd 2)? */
export function stderrIsJournal(env: NodeJS.ProcessEnv = process.env): boolean {
  const js = env.JOURNAL_STREAM;
  if (js === undefined) return false;
  const [dev, ino] = js.split(':');
  try {
    const st = fs.fstatSync(2);
    return String(st.dev) === dev && String(st.ino) === ino;
  } catch {
    return false;
  }
}

const SEVERITY_NAMES = ['emerg', 'alert', 'crit', 'error', 'warning', 'notice', 'info', 'debug'];
const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];

/** RFC 3164 timestamp, as syslog(3) writes it: "Nov  9 22:05:01". */
function syslogTime(d = new Date()): string {
  const p = (n: number): string => String(n).padStart(2, '0');
  return `${MONTHS[d.getMonth()]} ${String(d.getDate()).padStart(2, ' ')} ${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}`;
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
  /** Lines dropped because the log daemon or the journal did not keep up. */
  readonly dropped: number;
  /** Write out anything buffered (call before exit). */
  flush(): void;
}

export function createLogger(opts: LoggerOptions): DaemonLogger {
  const format = opts.format ?? 'text';
  const base: pino.LoggerOptions = {
    name: 'saslauthd-ts',
    level: opts.level,
    redact: { paths: REDACT_PATHS, censor: '[redacted]' },
    hooks: {
      // Second fence for URIs with a password in them (-O values, config
      // values, referrals), which their sources already mask: every message
      // text of the main log. Not on the result log (its text is built from
      // the login, which may legitimately look like user:x@host).
      logMethod(args, method) {
        method.apply(
          this,
          args.map((a: unknown) => (typeof a === 'string' ? maskCredentials(a) : a)) as Parameters<typeof method>,
        );
      },
    },
    timestamp: pino.stdTimeFunctions.isoTime,
    base: { pid: process.pid },
  };
  const { redact: _unused, hooks: _hooks, ...plain } = base;
  let dropped = 0;
  let reported = 0;

  let stream: pino.DestinationStream;
  let flush: () => void = () => undefined;
  if (opts.destination === 'syslog') {
    const path = opts.syslogPath ?? '/dev/log';
    native.syslogOpen(path);
    stream = {
      write(line: string): void {
        const { severity: sev, text } = textOf(line);
        const body = format === 'json' ? line.trimEnd() : text;
        const r = native.syslogSend(`<${LOG_AUTH * 8 + sev}>${syslogTime()} saslauthd-ts[${process.pid}]: ${body}`);
        if (r !== 0) dropped++;
      },
    };
  } else {
    const journal = stderrIsJournal();
    // Batched: one write per 4 KiB of lines under load, and within 200 ms when
    // quiet. An unbatched async write per line costs a thread-pool round trip
    // per request, which measured at 50-140 us of CPU per authentication.
    const sync = opts.sync ?? false;
    const dest = pino.destination({ dest: 2, sync, minLength: sync ? 0 : 4096, maxLength: sync ? 0 : STDERR_BUFFER_MAX });
    dest.on('drop', () => dropped++);
    if (!sync) {
      setInterval(() => {
        try {
          dest.flush();
        } catch {
          // a write is in progress; the next tick takes the rest
        }
      }, 200).unref();
    }
    flush = () => {
      try {
        dest.flushSync();
      } catch {
        // not ready yet or already closed: nothing buffered to lose
      }
    };
    stream = {
      write(line: string): void {
        if (format === 'json') {
          dest.write(journal ? `<${textOf(line).severity}>${line}` : line);
          return;
        }
        const { severity: sev, text } = textOf(line);
        if (journal) {
          dest.write(`<${sev}>${text}\n`);
        } else {
          const tag = sev <= 4 ? `${SEVERITY_NAMES[sev]}: ` : '';
          dest.write(`${syslogTime()} saslauthd-ts[${process.pid}]: ${tag}${text}\n`);
        }
      },
    };
  }
  const log = pino(base, stream);
  // Once a minute, say how many lines were lost (if the line itself gets through).
  setInterval(() => {
    if (dropped === reported) return;
    const lost = dropped - reported;
    reported = dropped;
    log.warn({ dropped: lost }, `${lost} log lines dropped in the last minute: the log daemon did not keep up`);
  }, 60_000).unref();
  return {
    log,
    resultLog: pino(plain, stream),
    get dropped() {
      return dropped;
    },
    flush,
  };
}
