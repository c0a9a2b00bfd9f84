// Command-line flags: Cyrus saslauthd 2.1.28's getopt set ("a:cdhO:lm:n:rs:t:vV"
// plus master's -f) with the same meanings, and a few long options of ours.
import path from 'node:path';
import { Command, CommanderError, Option } from 'commander';

export const VERSION = '0.1.0';
export const DEFAULT_RUN_DIR = '/var/spool/postfix/var/run/saslauthd';
export const MECHANISMS = ['shadow', 'pam', 'ldap', 'rimap'] as const;

export interface DaemonOptions {
  mech: string;
  mechOption: string | undefined;
  runDir: string;
  threads: number;
  /** --workers: processes sharing the listening socket; 1 = no cluster. */
  workers: number;
  cache: boolean;
  cacheSizeKb: number | undefined;
  cacheTimeoutSec: number;
  cacheMode: 'normal' | 'outage';
  concatRealm: boolean;
  noAcceptLock: boolean;
  /** -d: foreground and debug logging to stderr. */
  debug: boolean;
  /** -f or -d: do not detach. */
  foreground: boolean;
  verbose: boolean;
  readTimeoutMs: number;
  authTimeoutMs: number;
  drainTimeoutMs: number;
  /** --check: validate and print the effective settings instead of starting. */
  check: boolean;
  /** --defaults-file: Cyrus-style MECHANISMS/MECH_OPTIONS/THREADS/OPTIONS file. */
  defaultsFile: string | undefined;
}

export class UsageError extends Error {
  constructor(
    message: string,
    readonly exitCode = 1,
  ) {
    super(message);
  }
}

export type ParseResult =
  | { kind: 'run'; options: DaemonOptions }
  | { kind: 'exit'; code: number; stdout?: string; stderr?: string };

function positiveInt(name: string, min: number) {
  return (value: string): number => {
    if (!/^\d+$/.test(value)) throw new UsageError(`${name}: '${value}' is not a whole number`);
    const n = Number(value);
    if (n < min) throw new UsageError(`${name}: must be at least ${min}`);
    return n;
  };
}

export function versionText(): string {
  return `saslauthd-ts ${VERSION}\nauthentication mechanisms: ${MECHANISMS.join(' ')}\n\n`;
}

export function buildCommand(): Command {
  const cmd = new Command('saslauthd-ts')
    .description('SASL authentication daemon, wire-compatible with Cyrus saslauthd')
    .helpOption('-h, --help', 'show this help and exit')
    .addOption(new Option('-a <mech>', `authentication mechanism (required): ${MECHANISMS.join(', ')}`))
    .addOption(
      new Option(
        '-O <option>',
        'mechanism option: rimap host[/port], imaps://host[:port] or imap://host[:port] (STARTTLS); ' +
          'ldap config file (default /etc/saslauthd.conf)',
      ),
    )
    .addOption(new Option('-m <path>', `run directory holding the "mux" socket (absolute)`).default(DEFAULT_RUN_DIR))
    .addOption(
      new Option(
        '-n <procs>',
        'Cyrus: number of worker processes. Accepted for compatibility: saslauthd-ts serves every ' +
          'connection concurrently and hashes on one thread per CPU; see --workers',
      )
        .argParser(positiveInt('-n', 0))
        .default(5),
    )
    .addOption(
      new Option(
        '--workers <n>',
        'processes accepting on the socket (1 = one process; more share the socket and the cache, ' +
          'for socket-bound loads on machines with spare cores)',
      )
        .argParser(positiveInt('--workers', 1))
        .default(1),
    )
    .addOption(new Option('-c', 'enable the credential cache'))
    .addOption(new Option('-s <kb>', 'cache size in KiB (with -c)').argParser(positiveInt('-s', 1)))
    .addOption(new Option('-t <seconds>', 'cache entry lifetime (with -c)').argParser(positiveInt('-t', 1)).default(28800))
    .addOption(
      new Option(
        '--cache-mode <mode>',
        'normal: a cache hit answers OK without asking the mechanism (Cyrus); ' +
          'outage: the cache answers only while the mechanism is unavailable',
      )
        .choices(['normal', 'outage'])
        .default('normal'),
    )
    .addOption(new Option('-r', 'pass login@realm to the mechanism when the client sends a realm'))
    .addOption(new Option('-l', 'Cyrus: disable the accept lock. Accepted; there is no accept lock here'))
    .addOption(new Option('-d', 'debug: stay in the foreground and log verbosely to stderr'))
    .addOption(new Option('-f', 'stay in the foreground and log to stderr (for systemd)'))
    .addOption(new Option('-V', 'verbose logging (debug level), including each successful authentication, as in Cyrus'))
    .addOption(new Option('-v', 'print the version and mechanisms, and exit'))
    .addOption(
      new Option('--read-timeout <seconds>', 'close a client whose request has not fully arrived by then')
        .argParser(positiveInt('--read-timeout', 1))
        .default(10),
    )
    .addOption(
      new Option('--auth-timeout <seconds>', 'answer NO when the mechanism has not decided by then')
        .argParser(positiveInt('--auth-timeout', 1))
        .default(15),
    )
    .addOption(
      new Option('--drain-timeout <seconds>', 'close a client that keeps the connection open after the answer')
        .argParser(positiveInt('--drain-timeout', 1))
        .default(2),
    )
    .addOption(
      new Option(
        '--defaults-file <path>',
        'read MECHANISMS, MECH_OPTIONS, THREADS and OPTIONS from this /etc/default file (as the systemd unit does); ' +
          'flags given here override them',
      ),
    )
    .addOption(
      new Option(
        '--check',
        'validate the flags, the defaults file and the mechanism configuration, print the effective settings, and exit',
      ),
    )
    .allowExcessArguments(false)
    .exitOverride()
    .configureOutput({ writeOut: () => undefined, writeErr: () => undefined });
  return cmd;
}

export function parseArgs(argv: string[]): ParseResult {
  const cmd = buildCommand();
  try {
    cmd.parse(argv, { from: 'user' });
  } catch (err) {
    if (err instanceof CommanderError) {
      if (err.code === 'commander.helpDisplayed' || err.code === 'commander.help') {
        return { kind: 'exit', code: 0, stdout: cmd.helpInformation() };
      }
      return { kind: 'exit', code: 1, stderr: `saslauthd-ts: ${err.message.replace(/^error: /, '')}\n` };
    }
    if (err instanceof UsageError) return { kind: 'exit', code: err.exitCode, stderr: `saslauthd-ts: ${err.message}\n` };
    throw err;
  }
  const o = cmd.opts<Record<string, string | number | boolean | undefined>>();
  if (o.v) return { kind: 'exit', code: 0, stderr: versionText() };
  const fail = (msg: string): ParseResult => ({ kind: 'exit', code: 1, stderr: `saslauthd-ts: ${msg}\n` });

  if (o.a === undefined) return fail('no authentication mechanism specified (-a); try -h');
  const mech = String(o.a).toLowerCase();
  const runDir = String(o.m);
  if (!path.isAbsolute(runDir)) return fail('-m requires an absolute pathname');

  return {
    kind: 'run',
    options: {
      mech,
      mechOption: o.O === undefined ? undefined : String(o.O),
      runDir,
      threads: Number(o.n),
      workers: Number(o.workers),
      cache: o.c === true,
      cacheSizeKb: o.s === undefined ? undefined : Number(o.s),
      cacheTimeoutSec: Number(o.t),
      cacheMode: o.cacheMode === 'outage' ? 'outage' : 'normal',
      concatRealm: o.r === true,
      noAcceptLock: o.l === true,
      debug: o.d === true,
      foreground: o.d === true || o.f === true,
      verbose: o.V === true || o.d === true,
      readTimeoutMs: Number(o.readTimeout) * 1000,
      authTimeoutMs: Number(o.authTimeout) * 1000,
      drainTimeoutMs: Number(o.drainTimeout) * 1000,
      check: o.check === true,
      defaultsFile: o.defaultsFile === undefined ? undefined : String(o.defaultsFile),
    },
  };
}
