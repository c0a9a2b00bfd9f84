// Command-line flags: Cyrus saslauthd 2.1.28's getopt set ("a:cdhO:lm:n:rs:t:vV"
// plus master's -f) with the same meanings, and a few long options of ours.
import path from 'node:path';
import { Command, CommanderError, Option } from 'commander';
import { cyrusEntries } from '../auth/cache';
import { TAKES_OPTION, TELLS_UNKNOWN_USER } from '../backends/chain';
import { DEFAULT_THROTTLE, type ThrottleConfig } from '../auth/throttle/throttle';
import { type MetricsAddress, parseMetricsAddress } from '../metrics/address';
import { parseStateUri, StateUriError, type StateTarget } from '../state/uri';

export const VERSION = '0.1.0';
export const DEFAULT_RUN_DIR = '/var/spool/postfix/var/run/saslauthd';
export const MECHANISMS = ['shadow', 'pam', 'ldap', 'rimap'] as const;

export interface DaemonOptions {
  /** -a: one mechanism, or a chain "shadow,ldap" (docs/routes.md); "routes" with --routes. */
  mech: string;
  mechOption: string | undefined;
  /** --routes: the routes file (a chain of mechanisms per realm); undefined: -a. */
  routesFile: string | undefined;
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
  /** --dovecot-socket: a second socket speaking Dovecot's auth protocol (docs/dovecot.md); undefined: none. */
  dovecotSocket: string | undefined;
  /** --max-connections: open connections past which new ones wait in the backlog. */
  maxConnections: number;
  /** --pam-threads: PAM checks run at once. */
  pamThreads: number;
  /** The brute-force throttle (see src/auth/throttle/throttle.ts); undefined with --throttle off. */
  throttle: ThrottleSettings | undefined;
  /** --log-format: Cyrus-style text lines, or one JSON object per event. */
  logFormat: 'text' | 'json';
  /** Failure lines per login and interval, and per second daemon-wide, before they are summarised. */
  failureLinesPerLogin: number;
  failureLinesPerSecond: number;
  /** --metrics: where the Prometheus endpoint listens; undefined: no endpoint. */
  metrics: MetricsAddress | undefined;
  /** --state: the fleet's shared store (docs/fleet.md); undefined: this host's memory only. */
  state: StateSettings | undefined;
  /** --state-key: the fleet's secret, for the fingerprints (and the shared store's key names). */
  stateKeyFile: string | undefined;
  /** --check: validate and print the effective settings instead of starting. */
  check: boolean;
  /** --defaults-file: Cyrus-style MECHANISMS/MECH_OPTIONS/THREADS/OPTIONS file. */
  defaultsFile: string | undefined;
}

export interface ThrottleSettings extends ThrottleConfig {
  knownGoodTtlMs: number;
  knownGoodMax: number;
  trackedMax: number;
}

export interface StateSettings {
  target: StateTarget;
  prefix: string;
  /** Deadline of every operation on the store. */
  timeoutMs: number;
  /** rediss://: PEM files (CA to trust, client certificate and its key). */
  tls: { caFile?: string; certFile?: string; keyFile?: string };
  /** --state-cache: share the -c entries too (full fingerprints; see docs/fleet.md). */
  shareCache: boolean;
}

export const DEFAULT_MAX_CONNECTIONS = 16_384;
export const DEFAULT_STATE_PREFIX = 'saslauthd-ts:';
export const DEFAULT_STATE_TIMEOUT_MS = 50;

export class UsageError extends Error {
  constructor(
    message: string,
    readonly exitCode = 1,
  ) {
    super(message);
  }
}

export type ParseResult =
  { kind: 'run'; options: DaemonOptions } | { kind: 'exit'; code: number; stdout?: string; stderr?: string };

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
    .addOption(
      new Option(
        '-a <mech>',
        `authentication mechanism (required unless --routes): ${MECHANISMS.join(', ')}; or a chain such as shadow,ldap, ` +
          'the next mechanism asked only when the one before does not know the login (docs/routes.md)',
      ),
    )
    .addOption(
      new Option(
        '--routes <file>',
        'route each realm to its own chain of mechanisms, one "REALM MECH[:OPTION] ... [+r]" line per realm ' +
          '(docs/routes.md); instead of -a and -O',
      ),
    )
    .addOption(
      new Option(
        '-O <option>',
        'mechanism option: for rimap the IMAP server(s), comma-separated, each host[/port] (Cyrus, plain IMAP), ' +
          'imaps://host[:port] (TLS) or imap://host[:port] (STARTTLS); for ldap the configuration file ' +
          '(default /etc/saslauthd.conf); ignored by pam and shadow',
      ),
    )
    .addOption(
      new Option('-m <path>', 'run directory holding the "mux" socket (absolute; created root:sasl 0710 if missing)').default(
        DEFAULT_RUN_DIR,
      ),
    )
    .addOption(
      new Option(
        '-n <procs>',
        'Cyrus: number of worker processes. Accepted for compatibility, no effect: saslauthd-ts serves every ' +
          'connection concurrently; see --workers',
      )
        .argParser(positiveInt('-n', 0))
        .default(5),
    )
    .addOption(
      new Option(
        '--workers <n>',
        'processes accepting on the socket, at most one per CPU (1 = one process; more share the socket and ' +
          'the cache, for socket-bound loads on machines with spare cores)',
      )
        .argParser(positiveInt('--workers', 1))
        .default(1),
    )
    .addOption(
      new Option(
        '--dovecot-socket <path>',
        "also listen here, speaking Dovecot's auth protocol, for Postfix's smtpd_sasl_type = dovecot: the client's address " +
          'reaches the throttle and an outage answers 454, not 535 (usually /var/spool/postfix/private/saslauthd-ts; docs/dovecot.md)',
      ),
    )
    .addOption(new Option('-c', 'enable the credential cache'))
    .addOption(
      new Option(
        '-s <kb>',
        `cache size in KiB (with -c); default: ${cyrusEntries(undefined)} entries, Cyrus's default table`,
      ).argParser(positiveInt('-s', 1)),
    )
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
        '--max-connections <n>',
        'open connections at most; past it new clients wait in the kernel backlog (also capped by the descriptor limit)',
      )
        .argParser(positiveInt('--max-connections', 1))
        .default(DEFAULT_MAX_CONNECTIONS),
    )
    .addOption(
      new Option('--pam-threads <n>', 'PAM checks run at once (1 runs PAM modules one at a time, as a -n 1 Cyrus would)')
        .argParser(positiveInt('--pam-threads', 1))
        .default(8),
    )
    .addOption(
      new Option('--throttle <mode>', 'on: known-good priority, per-login penalties and load shedding; off: Cyrus behaviour')
        .choices(['on', 'off'])
        .default('on'),
    )
    .addOption(
      new Option('--throttle-window <seconds>', 'failures are counted within this long of the last attempt')
        .argParser(positiveInt('--throttle-window', 1))
        .default(DEFAULT_THROTTLE.windowMs / 1000),
    )
    .addOption(
      new Option('--throttle-free <n>', 'wrong passwords of a login in the window answered without delay')
        .argParser(positiveInt('--throttle-free', 1))
        .default(DEFAULT_THROTTLE.freeFailures),
    )
    .addOption(
      new Option('--throttle-refuse <n>', 'wrong passwords past which attempts are refused without asking the mechanism')
        .argParser(positiveInt('--throttle-refuse', 2))
        .default(DEFAULT_THROTTLE.refuseAfter),
    )
    .addOption(
      new Option('--throttle-delay <ms>', 'delay of the first refusal past --throttle-free; doubles with each further one')
        .argParser(positiveInt('--throttle-delay', 1))
        .default(DEFAULT_THROTTLE.delayMs),
    )
    .addOption(
      new Option('--throttle-max-delay <ms>', 'the longest delay before a refusal')
        .argParser(positiveInt('--throttle-max-delay', 1))
        .default(DEFAULT_THROTTLE.maxDelayMs),
    )
    .addOption(
      new Option('--throttle-cooloff <seconds>', 'how long attempts are refused once --throttle-refuse is passed')
        .argParser(positiveInt('--throttle-cooloff', 1))
        .default(DEFAULT_THROTTLE.cooloffMs / 1000),
    )
    .addOption(
      new Option('--throttle-tracked <n>', 'logins and addresses tracked at most (least recent forgotten first)')
        .argParser(positiveInt('--throttle-tracked', 1))
        .default(100_000),
    )
    .addOption(
      new Option('--known-good-ttl <seconds>', 'how long credentials stay known-good after their last success')
        .argParser(positiveInt('--known-good-ttl', 1))
        .default(7 * 86_400),
    )
    .addOption(
      new Option('--known-good-max <n>', 'known-good credentials remembered at most (least recent forgotten first)')
        .argParser(positiveInt('--known-good-max', 1))
        .default(100_000),
    )
    .addOption(
      new Option('--shed-after <ms>', 'work not known-good that waits longer than this in a queue is refused unrun (0: never)')
        .argParser(positiveInt('--shed-after', 0))
        .default(DEFAULT_THROTTLE.shedAfterMs),
    )
    .addOption(
      new Option('--shed-delay <ms>', 'delay before the refusal of shed work')
        .argParser(positiveInt('--shed-delay', 0))
        .default(DEFAULT_THROTTLE.shedDelayMs),
    )
    .addOption(
      new Option(
        '--state <uri>',
        "share the throttle's state with the other mail hosts through Redis or Valkey: redis://[user:password@]host[:port][/db], " +
          'rediss://... (TLS), unix:///path/redis.sock[?db=N] or a socket path (docs/fleet.md); needs --state-key',
      ),
    )
    .addOption(
      new Option(
        '--state-key <file>',
        'the secret every host of the fleet shares (root, mode 0600, at least 32 bytes): the fingerprints and the shared key names are HMACs under it',
      ),
    )
    .addOption(
      new Option('--state-prefix <prefix>', 'prefix of every key this daemon writes in the shared store').default(
        DEFAULT_STATE_PREFIX,
      ),
    )
    .addOption(
      new Option('--state-timeout <ms>', 'deadline of each shared-store operation; past it this host decides from its own state')
        .argParser(positiveInt('--state-timeout', 1))
        .default(DEFAULT_STATE_TIMEOUT_MS),
    )
    .addOption(new Option('--state-tls-ca <file>', "rediss://: CA certificates (PEM) to trust instead of the system's"))
    .addOption(new Option('--state-tls-cert <file>', 'rediss://: client certificate (PEM), for a server that requires one'))
    .addOption(new Option('--state-tls-key <file>', "rediss://: the client certificate's private key (PEM)"))
    .addOption(
      new Option(
        '--state-cache',
        'with -c, share the cache entries too: whoever reads the store and holds the key file can then test password guesses fast (docs/fleet.md)',
      ),
    )
    .addOption(
      new Option(
        '--log-format <format>',
        "text: Cyrus's line shapes (for people, logwatch, fail2ban); json: one object per event (for pipelines)",
      )
        .choices(['text', 'json'])
        .default('text'),
    )
    .addOption(
      new Option('--log-failures-per-login <n>', 'failure lines per login and minute before they are summarised')
        .argParser(positiveInt('--log-failures-per-login', 0))
        .default(5),
    )
    .addOption(
      new Option('--log-failures-per-second <n>', 'failure lines per second for the whole daemon before they are summarised')
        .argParser(positiveInt('--log-failures-per-second', 1))
        .default(50),
    )
    .addOption(
      new Option(
        '--metrics <addr>',
        'serve Prometheus metrics at /metrics: a port (on 127.0.0.1), host:port (an IP address; anything but loopback ' +
          'is reachable from the network), or an absolute UNIX socket path (mode 0660, group of its directory); off unless given',
      ),
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

/**
 * -a a,b: the chain's own rules (the mechanisms themselves are checked when
 * the daemon starts). Undefined when fine, else the message.
 */
export function checkChain(mech: string, hasOption: boolean): string | undefined {
  const names = mech.split(',');
  if (names.length === 1) return undefined;
  if (names.some((n) => n === '')) return `-a ${mech}: an empty mechanism in the chain; write e.g. -a shadow,ldap`;
  const dup = names.find((n, i) => names.indexOf(n) !== i);
  if (dup !== undefined) return `-a ${mech}: ${dup} is twice in the chain; for two ${dup} configurations use --routes`;
  const takers = names.filter((n) => TAKES_OPTION.has(n));
  if (takers.length > 1) {
    return `-a ${mech}: ${takers.join(' and ')} both take an option and -O can give only one; use --routes (docs/routes.md)`;
  }
  const stop = names.slice(0, -1).find((n) => !TELLS_UNKNOWN_USER.has(n) && (MECHANISMS as readonly string[]).includes(n));
  if (stop !== undefined) {
    return `-a ${mech}: the mechanisms after ${stop} can never be asked: ${stop} cannot tell an unknown login from a wrong password`;
  }
  if (hasOption && takers.length === 0) return `-a ${mech}: -O given, but no mechanism in the chain takes an option`;
  return undefined;
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

  const routesFile = o.routes === undefined ? undefined : String(o.routes);
  if (routesFile !== undefined && o.a !== undefined) {
    return fail(
      `--routes and -a cannot be used together: ${routesFile} names the mechanisms of every realm; remove -a ${String(o.a)}`,
    );
  }
  if (routesFile !== undefined && o.O !== undefined) {
    return fail(`--routes and -O cannot be used together: give each mechanism its option in ${routesFile} (ldap:FILE)`);
  }
  if (routesFile === undefined && o.a === undefined) return fail('no authentication mechanism specified (-a); try -h');
  const mech = routesFile !== undefined ? 'routes' : String(o.a).toLowerCase();
  if (routesFile === undefined) {
    const chainError = checkChain(mech, o.O !== undefined);
    if (chainError !== undefined) return fail(chainError);
  }
  const runDir = String(o.m);
  if (!path.isAbsolute(runDir)) return fail('-m requires an absolute pathname');
  const dovecotSocket = o.dovecotSocket === undefined ? undefined : String(o.dovecotSocket);
  if (dovecotSocket !== undefined && !path.isAbsolute(dovecotSocket)) {
    return fail(`--dovecot-socket ${dovecotSocket}: needs an absolute path, as /var/spool/postfix/private/saslauthd-ts`);
  }
  if (dovecotSocket !== undefined && path.resolve(dovecotSocket) === path.join(path.resolve(runDir), 'mux')) {
    return fail(`--dovecot-socket ${dovecotSocket}: is the mux socket of -m ${runDir}; choose another path`);
  }
  const free = Number(o.throttleFree);
  const refuse = Number(o.throttleRefuse);
  if (refuse <= free) return fail(`--throttle-refuse (${refuse}) must be above --throttle-free (${free})`);
  if (Number(o.throttleMaxDelay) < Number(o.throttleDelay)) {
    return fail(
      `--throttle-max-delay (${String(o.throttleMaxDelay)}) must be at least --throttle-delay (${String(o.throttleDelay)})`,
    );
  }
  let metrics: MetricsAddress | undefined;
  if (o.metrics !== undefined) {
    const m = parseMetricsAddress(String(o.metrics));
    if (typeof m === 'string') return fail(`--metrics '${String(o.metrics)}' ${m}`);
    metrics = m;
  }
  const throttle: ThrottleSettings | undefined =
    o.throttle === 'off'
      ? undefined
      : {
          windowMs: Number(o.throttleWindow) * 1000,
          freeFailures: free,
          refuseAfter: refuse,
          delayMs: Number(o.throttleDelay),
          maxDelayMs: Number(o.throttleMaxDelay),
          cooloffMs: Number(o.throttleCooloff) * 1000,
          shedAfterMs: Number(o.shedAfter),
          shedDelayMs: Number(o.shedDelay),
          knownGoodTtlMs: Number(o.knownGoodTtl) * 1000,
          knownGoodMax: Number(o.knownGoodMax),
          trackedMax: Number(o.throttleTracked),
        };

  let state: StateSettings | undefined;
  const tlsFlags = (['stateTlsCa', 'stateTlsCert', 'stateTlsKey'] as const).filter((k) => o[k] !== undefined);
  const flagName = (k: string): string => `--${k.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}`;
  if (o.state !== undefined) {
    let target: StateTarget;
    try {
      target = parseStateUri(String(o.state));
    } catch (err) {
      if (err instanceof StateUriError) return fail(err.message);
      throw err;
    }
    if (o.stateKey === undefined) {
      return fail(
        `--state needs --state-key FILE: the secret every host of the fleet shares, so that they recognise each other's fingerprints; ` +
          `create it once with (umask 077; head -c 32 /dev/urandom > /etc/saslauthd-ts/state.key) and copy it to every host`,
      );
    }
    if (throttle === undefined && o.stateCache !== true) {
      return fail("--state shares the throttle's state, and --throttle off leaves none: remove --state, or --throttle off");
    }
    if (tlsFlags.length > 0 && target.kind !== 'tls') {
      return fail(`${tlsFlags.map(flagName).join(', ')}: only for a rediss:// (TLS) store; --state is ${target.display}`);
    }
    if ((o.stateTlsCert === undefined) !== (o.stateTlsKey === undefined)) {
      return fail('--state-tls-cert and --state-tls-key go together: a client certificate needs its key');
    }
    const prefix = String(o.statePrefix);
    if (!/^[A-Za-z0-9:_.{}-]{1,64}$/.test(prefix)) {
      return fail(`--state-prefix '${prefix}': use 1 to 64 letters, digits and : _ . - { } (as in saslauthd-ts:)`);
    }
    if (o.stateCache === true && o.c !== true) return fail('--state-cache shares the credential cache: it needs -c');
    state = {
      target,
      prefix,
      timeoutMs: Number(o.stateTimeout),
      tls: {
        ...(o.stateTlsCa !== undefined ? { caFile: String(o.stateTlsCa) } : {}),
        ...(o.stateTlsCert !== undefined ? { certFile: String(o.stateTlsCert) } : {}),
        ...(o.stateTlsKey !== undefined ? { keyFile: String(o.stateTlsKey) } : {}),
      },
      shareCache: o.stateCache === true,
    };
  } else {
    const orphans = [
      ...(o.stateKey !== undefined ? ['--state-key'] : []),
      ...tlsFlags.map(flagName),
      ...(o.stateCache === true ? ['--state-cache'] : []),
    ];
    if (orphans.length > 0) return fail(`${orphans.join(', ')}: only with --state`);
  }

  return {
    kind: 'run',
    options: {
      mech,
      mechOption: o.O === undefined ? undefined : String(o.O),
      routesFile,
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
      dovecotSocket,
      maxConnections: Number(o.maxConnections),
      pamThreads: Number(o.pamThreads),
      throttle,
      logFormat: o.logFormat === 'json' ? 'json' : 'text',
      failureLinesPerLogin: Number(o.logFailuresPerLogin),
      failureLinesPerSecond: Number(o.logFailuresPerSecond),
      metrics,
      state,
      stateKeyFile: o.stateKey === undefined ? undefined : String(o.stateKey),
      check: o.check === true,
      defaultsFile: o.defaultsFile === undefined ? undefined : String(o.defaultsFile),
    },
  };
}
