// saslauthd-ts: the daemon's entry point. Parses Cyrus-style flags, starts the
// mechanism, listens on <run dir>/mux, and either stays in the foreground
// (-d/-f, systemd) or detaches like Cyrus, exiting 0 only once the detached
// daemon is actually listening.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { type DaemonOptions } from '../config/options';
import { parseArgsWithDefaults } from '../config/defaults-file';
import { runCheckWithState } from '../config/check';
import { createLogger, type DaemonLogger } from '../log/logger';
import { maskCredentials } from '../log/redact';
import { BACKENDS, CYRUS_ONLY } from '../backends';
import type { Backend } from '../backends/backend';
import { Router } from '../backends/router';
import crypto from 'node:crypto';
import { Authenticator } from '../auth/authenticator';
import { CredentialCache, type CacheOp } from '../auth/cache';
import { CACHE_SCRIPTS, RedisCacheShare } from '../auth/redis-cache';
import { MemoryStore, type ThrottleStore } from '../auth/throttle/store';
import { ReplicatedStore, type ThrottleOp } from '../auth/throttle/replicated';
import { RedisStore, THROTTLE_SCRIPTS } from '../auth/throttle/redis-store';
import { SharedState, type TlsFiles } from '../state/redis';
import { deriveKeys, KeyFileError, readKeyFile } from '../state/key-file';
import { Throttle } from '../auth/throttle/throttle';
import { FailureLines } from '../log/failure-lines';
import { SaslauthdServer, SOCKET_NAME, StartupError } from '../server/server';
import { DovecotServer } from '../server/dovecot/listener';
import { removeSocket } from '../server/dovecot/socket-file';
import { native } from '../native/binding';
import { notifyReady, notifyStatus, notifyStopping } from '../server/systemd';
import type { MetricsAddress } from '../metrics/address';
import { describeAddress } from '../metrics/address';
import { MetricsServer } from '../metrics/http';
import { registerProcessMetrics, type ProcessMetrics } from '../metrics/process';
import { merge, Registry, render, type Snapshot } from '../metrics/registry';
import { type Labelling, ServiceMetrics } from '../metrics/service';
import { StatusLine } from '../metrics/status';
import { ensureRunDir } from '../server/run-dir';
import {
  isWorker,
  Primary,
  sendToPrimary,
  StartupFailure,
  waitForInit,
  WORKER_LISTEN_FD,
  workerCount,
  type ToWorker,
  type WorkerState,
} from '../server/cluster';

const CHILD_ENV = 'SASLAUTHD_TS_DETACHED';
/** Descriptors never used for client connections: kept for the mechanism (NSS files, LDAP, IMAP, logs). */
const FD_RESERVE = 64;
const STATUS_FD = 3;

class ExitError extends Error {
  constructor(
    message: string,
    readonly exitCode: number,
  ) {
    super(message);
  }
}

export async function main(argv: string[]): Promise<void> {
  if (argv.includes('--check')) {
    process.exitCode = await runCheckWithState(argv);
    return;
  }
  const parsed = parseArgsWithDefaults(argv);
  if (parsed.kind === 'exit') {
    if (parsed.stdout) process.stdout.write(parsed.stdout);
    if (parsed.stderr) process.stderr.write(parsed.stderr);
    process.exitCode = parsed.code;
    return;
  }
  const opts = parsed.options;
  const detachedChild = process.env[CHILD_ENV] === '1';
  if (!opts.foreground && !detachedChild && !isWorker()) {
    process.exitCode = await detach(argv);
    return;
  }
  const logger = createLogger({
    level: opts.verbose ? 'debug' : 'info',
    destination: detachedChild ? 'syslog' : 'stderr',
    format: opts.logFormat,
  });
  try {
    await runDaemon(opts, logger, detachedChild);
  } catch (err) {
    const e = err instanceof ExitError ? err : new ExitError((err as Error).message, 1);
    // Startup errors quote -O values and config lines: a URI there may hold a password.
    const message = maskCredentials(e.message);
    logger.log.fatal(message);
    logger.flush();
    // A cluster worker's fd 3 is its IPC channel, not the status pipe.
    if (detachedChild && !isWorker()) reportStatus(`ERR ${e.exitCode} ${message}`);
    else process.stderr.write(`saslauthd-ts: ${message}\n`);
    process.exitCode = e.exitCode;
  }
}

async function createBackend(opts: DaemonOptions, logger: DaemonLogger): Promise<Backend> {
  const routerOpts = { factories: BACKENDS, log: logger.log, concatRealm: opts.concatRealm };
  if (opts.routesFile !== undefined) {
    try {
      const router = await Router.fromFile(opts.routesFile, routerOpts);
      logger.log.info({ routes: router.describe() }, `routes: ${router.describe().join('; ')}`);
      return router;
    } catch (err) {
      throw new ExitError(`--routes ${opts.routesFile}: ${(err as Error).message}`, 1);
    }
  }
  if (opts.mech.includes(',')) {
    const names = opts.mech.split(',');
    const unknown = names.find((n) => BACKENDS[n] === undefined);
    if (unknown !== undefined) {
      throw new ExitError(`unknown authentication mechanism: ${unknown} (available: ${Object.keys(BACKENDS).join(', ')})`, 1);
    }
    try {
      // The chain's login is joined by the authenticator (-r), as for one mechanism.
      return await Router.chain(names, opts.mechOption, { ...routerOpts, concatRealm: false });
    } catch (err) {
      throw new ExitError(`failed to initialize mechanism chain ${opts.mech}: ${(err as Error).message}`, 1);
    }
  }
  const factory = BACKENDS[opts.mech];
  if (factory === undefined) {
    if (CYRUS_ONLY.includes(opts.mech)) {
      throw new ExitError(
        `authentication mechanism ${opts.mech} is a Cyrus mechanism that saslauthd-ts does not implement ` +
          `(available: ${Object.keys(BACKENDS).join(', ')})`,
        1,
      );
    }
    throw new ExitError(`unknown authentication mechanism: ${opts.mech} (available: ${Object.keys(BACKENDS).join(', ')})`, 1);
  }
  try {
    return await factory({ mechOption: opts.mechOption, log: logger.log.child({ mech: opts.mech }) });
  } catch (err) {
    throw new ExitError(`failed to initialize mechanism ${opts.mech}: ${(err as Error).message}`, 1);
  }
}

/** Cyrus's exit status: 2 when another daemon owns the socket, else 1. */
function startupExit(err: unknown): unknown {
  if (err instanceof StartupError) return new ExitError(err.message, err.code === 'EADDRINUSE' ? 2 : 1);
  return err;
}

interface Service {
  server: SaslauthdServer;
  /** --dovecot-socket: the second door. */
  dovecot: DovecotServer | undefined;
  auth: Authenticator;
  backend: Backend;
  cache: CredentialCache | undefined;
  throttle: Throttle | undefined;
  /** In a worker: the throttle's store, to apply the other workers' changes. */
  sharedThrottle: ReplicatedStore | undefined;
  /** --state: the connection to the fleet's store; its stats() are Redis latency, errors and fallbacks. */
  sharedState: SharedState | undefined;
  failureLines: FailureLines;
  /** The request counters; undefined when nothing reads them (no --metrics, not under systemd). */
  metrics: ServiceMetrics | undefined;
  processMetrics: ProcessMetrics | undefined;
}

/**
 * Requests are counted only when something reads the counts: the --metrics
 * endpoint, or systemd's status line (NOTIFY_SOCKET). Otherwise the request
 * path is exactly what it was without them.
 */
function countRequests(opts: DaemonOptions): boolean {
  return opts.metrics !== undefined || (process.env.NOTIFY_SOCKET ?? '') !== '';
}

/** One mechanism counts under its name; chains and routes under the mechanism that answered (and the route). */
function metricsLabelling(opts: DaemonOptions): Labelling {
  if (opts.routesFile !== undefined) return 'routes';
  return opts.mech.includes(',') ? 'chain' : 'one';
}

/** Listen on --metrics; an error there stops the start, naming the flag. */
async function startMetricsEndpoint(
  address: MetricsAddress,
  renderText: () => Promise<string>,
  log: DaemonLogger['log'],
): Promise<MetricsServer> {
  const endpoint = new MetricsServer({
    address,
    render: renderText,
    onError: (err) => log.error(`metrics: cannot collect: ${err.message}`),
  });
  try {
    await endpoint.listen();
  } catch (err) {
    throw new ExitError((err as Error).message, 1);
  }
  const shown = describeAddress(address);
  if (address.kind === 'tcp' && !address.loopback) {
    log.warn(`metrics at http://${shown}/metrics are reachable from the network (--metrics ${shown} is not a loopback address)`);
  } else {
    log.info(address.kind === 'tcp' ? `metrics at http://${shown}/metrics` : `metrics at /metrics on socket ${shown}`);
  }
  return endpoint;
}

/** Under systemd: the status line, from the service counters, once a second at most. */
function startStatusLine(mech: string, read: () => Promise<Snapshot>, log: DaemonLogger['log']): StatusLine | undefined {
  if ((process.env.NOTIFY_SOCKET ?? '') === '') return undefined;
  const status = new StatusLine({
    mech,
    read,
    send: (line) => notifyStatus(line, { timeoutMs: 5000 }),
    onError: (detail) => log.warn(`cannot update the systemd status line: ${detail}`),
  });
  status.start();
  return status;
}

/**
 * The listener's backstop for a request the daemon never answers (a bug:
 * every wait on the way has its own deadline). The longest a request can
 * legitimately take is the sum of those waits: the shared store's lookups,
 * the throttle's longest hold, a wait in a hashing queue until it is shed and
 * the shed delay, and --auth-timeout; 30 s more for a loaded machine.
 */
export function decideBackstopMs(opts: DaemonOptions): number {
  const t = opts.throttle;
  const holds = t === undefined ? 0 : t.maxDelayMs + t.shedAfterMs + t.shedDelayMs;
  const store = opts.state === undefined ? 0 : 4 * opts.state.timeoutMs;
  return opts.authTimeoutMs + holds + store + 30_000;
}

/** The keys derived from --state-key, read and checked (errors name the file and the fix). */
function fleetKeys(opts: DaemonOptions): { fingerprint: Buffer; names: Buffer } | undefined {
  if (opts.stateKeyFile === undefined) return undefined;
  try {
    const secret = readKeyFile(opts.stateKeyFile);
    const keys = deriveKeys(secret);
    secret.fill(0);
    return keys;
  } catch (err) {
    if (err instanceof KeyFileError) throw new ExitError(err.message, 1);
    throw err;
  }
}

/** The --state-tls-* files, read now: a missing one stops the start, naming the flag. */
function tlsFiles(opts: DaemonOptions): TlsFiles | undefined {
  const t = opts.state?.tls;
  if (t === undefined) return undefined;
  const read = (flag: string, file: string | undefined): Buffer | undefined => {
    if (file === undefined) return undefined;
    try {
      return fs.readFileSync(file);
    } catch (err) {
      throw new ExitError(`${flag} ${file}: cannot read: ${(err as Error).message}`, 1);
    }
  };
  const out: TlsFiles = {};
  const ca = read('--state-tls-ca', t.caFile);
  const cert = read('--state-tls-cert', t.certFile);
  const key = read('--state-tls-key', t.keyFile);
  if (ca !== undefined) out.ca = ca;
  if (cert !== undefined) out.cert = cert;
  if (key !== undefined) out.key = key;
  return out;
}

/** Backlog of writes held while the shared store is away (each a few hundred bytes at most). */
const STATE_BACKLOG = 10_000;

function createSharedState(opts: DaemonOptions, log: DaemonLogger['log']): SharedState | undefined {
  const st = opts.state;
  if (st === undefined) return undefined;
  return new SharedState({
    target: st.target,
    tls: tlsFiles(opts),
    timeoutMs: st.timeoutMs,
    backlogMax: STATE_BACKLOG,
    log,
    scripts: { ...THROTTLE_SCRIPTS, ...CACHE_SCRIPTS },
  });
}

/** The throttle for these options (undefined with --throttle off); in a worker, its state is shared with the others. */
function createThrottle(
  opts: DaemonOptions,
  log: DaemonLogger['log'],
  share: ((op: ThrottleOp) => void) | undefined,
  fleet: { state: SharedState; namesKey: Buffer } | undefined,
): { throttle: Throttle; replicated: ReplicatedStore | undefined } | undefined {
  const t = opts.throttle;
  if (t === undefined) return undefined;
  const memory = new MemoryStore({
    windowMs: t.windowMs,
    knownGoodTtlMs: t.knownGoodTtlMs,
    knownGoodMax: t.knownGoodMax,
    trackedMax: t.trackedMax,
    penaltyAfter: t.freeFailures,
  });
  // With a fleet store, workers share through it too: replicating through
  // the primary as well would send every change to Redis once per worker.
  const replicated = share !== undefined && fleet === undefined ? new ReplicatedStore(memory, share) : undefined;
  const store: ThrottleStore =
    fleet !== undefined
      ? new RedisStore(memory, fleet.state, {
          prefix: opts.state?.prefix ?? '',
          namesKey: fleet.namesKey,
          windowMs: t.windowMs,
          knownGoodTtlMs: t.knownGoodTtlMs,
        })
      : (replicated ?? memory);
  // Work of these credentials already queued goes first from now on.
  const promote = (fp: number): void => {
    native.poolPromote('hash', fp);
    if (opts.mech.split(',').includes('pam') || opts.routesFile !== undefined) native.poolPromote('pam', fp);
  };
  return { throttle: new Throttle(t, store, log, promote), replicated };
}

/** Backend, cache, authenticator and listener: everything a serving process runs. */
async function serve(
  opts: DaemonOptions,
  logger: DaemonLogger,
  worker?: {
    key: Buffer;
    /** The primary's descriptor of the Dovecot door's socket. */
    dovecotFd: number | undefined;
    onCacheChange: (op: CacheOp) => void;
    onThrottleChange: (op: ThrottleOp) => void;
  },
): Promise<Service> {
  const { log } = logger;
  // The fingerprints' key: the fleet's (--state-key), else random, in memory
  // only (workers share their primary's).
  const keys = fleetKeys(opts);
  // The Dovecot door fingerprints in JavaScript with the same key.
  const fingerprintKey = keys?.fingerprint ?? worker?.key ?? crypto.randomBytes(32);
  native.setFingerprintKey(fingerprintKey);
  native.setPamThreads(opts.pamThreads);
  const backend = await createBackend(opts, logger);
  const sharedState = createSharedState(opts, log);
  const cache = opts.cache
    ? new CredentialCache({
        ttlMs: opts.cacheTimeoutSec * 1000,
        sizeKb: opts.cacheSizeKb,
        mode: opts.cacheMode,
        onChange: worker?.onCacheChange,
        share:
          opts.state?.shareCache === true && sharedState !== undefined && keys !== undefined
            ? new RedisCacheShare(sharedState, {
                prefix: opts.state.prefix,
                namesKey: keys.names,
                ttlMs: opts.cacheTimeoutSec * 1000,
              })
            : undefined,
      })
    : undefined;
  const fdLimit = native.raiseFdLimit();
  // Before the hashing threads exist, so they inherit it (see pool.cc).
  const schedPolicy = native.preferBatchScheduling();
  const mechOption = opts.mechOption === undefined ? undefined : maskCredentials(opts.mechOption);
  log.debug({ fdLimit, schedPolicy, runDir: opts.runDir, mech: opts.mech, mechOption }, 'starting');

  const made = createThrottle(
    opts,
    log,
    worker?.onThrottleChange,
    sharedState !== undefined && keys !== undefined ? { state: sharedState, namesKey: keys.names } : undefined,
  );
  sharedState?.start();
  const throttle = made?.throttle;
  throttle?.start();
  const metrics = countRequests(opts) ? new ServiceMetrics(opts.mech, opts.cache, undefined, metricsLabelling(opts)) : undefined;
  const failureLines = new FailureLines(logger.resultLog, {
    perLogin: opts.failureLinesPerLogin,
    perSecond: opts.failureLinesPerSecond,
    intervalMs: 60_000,
    maxLogins: 10_000,
  });
  failureLines.start();
  const auth = new Authenticator({
    backend,
    // With --routes each route decides the join (+r/-r, else -r): the router does it.
    concatRealm: opts.concatRealm && opts.routesFile === undefined,
    timeoutMs: opts.authTimeoutMs,
    log,
    resultLog: logger.resultLog,
    cache,
    throttle,
    failureLines,
    metrics,
  });
  const server = new SaslauthdServer({
    socketPath: path.join(opts.runDir, SOCKET_NAME),
    readTimeoutMs: opts.readTimeoutMs,
    drainTimeoutMs: opts.drainTimeoutMs,
    decideTimeoutMs: decideBackstopMs(opts),
    // Never more than the descriptors allow, less those kept for the mechanism.
    maxConnections: Math.max(16, Math.min(opts.maxConnections, fdLimit - FD_RESERVE)),
    handle: (x) => auth.handle(x),
    pending: () => auth.pending,
    release: () => auth.releaseHolds(),
    log,
    onProtocolError: metrics !== undefined ? (reason) => metrics.protocolError(reason) : undefined,
  });
  const dovecot =
    opts.dovecotSocket === undefined
      ? undefined
      : new DovecotServer({
          socketPath: opts.dovecotSocket,
          readTimeoutMs: opts.readTimeoutMs,
          maxConnections: Math.max(16, Math.min(opts.maxConnections, fdLimit - FD_RESERVE)),
          fingerprintKey,
          handle: (x) => auth.handle(x),
          log,
          onProtocolError: metrics !== undefined ? (reason) => metrics.protocolError(reason) : undefined,
        });
  metrics?.attach({
    // Both doors: connections open and requests in flight, whichever socket they came through.
    listener: () => ({
      connections: server.connectionCount + (dovecot?.connectionCount ?? 0),
      inFlight: server.inFlight + (dovecot?.inFlight ?? 0),
    }),
    pool: (name) => native.poolStats(name),
    cache,
    throttle,
    backend,
    logLinesDropped: () => logger.dropped,
    sharedState,
  });
  // The process figures are for scrapes only (the status line needs none).
  const processMetrics =
    metrics !== undefined && opts.metrics !== undefined ? registerProcessMetrics(metrics.registry) : undefined;
  try {
    await server.listen(worker !== undefined ? WORKER_LISTEN_FD : undefined);
    try {
      await dovecot?.listen(worker?.dovecotFd);
    } catch (err) {
      await server.close(0);
      throw err;
    }
  } catch (err) {
    await dovecot?.close(0);
    await backend.close?.();
    processMetrics?.stop();
    sharedState?.close();
    throw startupExit(err);
  }
  return {
    server,
    dovecot,
    auth,
    backend,
    cache,
    throttle,
    sharedThrottle: made?.replicated,
    sharedState,
    failureLines,
    metrics,
    processMetrics,
  };
}

/** Stop serving: in-flight requests answered (up to the deadline), timers stopped. */
async function stopService(svc: Service, deadlineMs: number): Promise<void> {
  await Promise.all([svc.server.close(deadlineMs), svc.dovecot?.close(deadlineMs, () => svc.auth.releaseHolds())]);
  await svc.backend.close?.();
  svc.throttle?.stop();
  svc.sharedState?.close();
  svc.failureLines.stop();
  svc.processMetrics?.stop();
}

/** SIGHUP: empty the cache and re-read the mechanism's configuration. */
function reload(svc: Service, log: DaemonLogger['log']): void {
  // An admin who resets a password and sends SIGHUP expects the old one gone.
  svc.cache?.clear();
  if (!svc.backend.reload) {
    log.info(`SIGHUP: mechanism ${svc.backend.name} has no configuration to re-read`);
    return;
  }
  svc.backend.reload().then(
    () => log.info('SIGHUP: configuration re-read'),
    (err: Error) => log.error(`SIGHUP: configuration not re-read, keeping the old one: ${err.message}`),
  );
}

function logCache(opts: DaemonOptions, log: DaemonLogger['log'], workers: number): void {
  if (!opts.cache) return;
  const probe = new CredentialCache({ ttlMs: 1, sizeKb: opts.cacheSizeKb, mode: opts.cacheMode });
  log.info(
    { entries: probe.maxEntries, ttlSec: opts.cacheTimeoutSec, mode: opts.cacheMode },
    `credential cache: ${probe.maxEntries} entries, ${opts.cacheTimeoutSec} s, mode ${opts.cacheMode}` +
      (workers > 1 ? `, shared by ${workers} workers` : ''),
  );
}

/** Listening: pid file, detached parent, systemd. */
function announce(opts: DaemonOptions, log: DaemonLogger['log'], detachedChild: boolean, workers: number): string {
  const pidFile = path.join(opts.runDir, 'saslauthd.pid');
  if (detachedChild) {
    const old = process.umask(0o077);
    fs.writeFileSync(pidFile, `${process.pid}\n`);
    process.umask(old);
    reportStatus('OK');
  }
  log.info({ mech: opts.mech, workers }, `master pid is: ${process.pid}`);
  // Type=notify: tell systemd only now that the socket accepts connections.
  void notifyReady(`listening on ${path.join(opts.runDir, SOCKET_NAME)}, mechanism ${opts.mech}`).then((r) => {
    if (!r.sent && r.reason === 'failed') log.warn(`cannot notify systemd of readiness: ${r.detail ?? ''}`);
  });
  return pidFile;
}

async function runDaemon(opts: DaemonOptions, logger: DaemonLogger, detachedChild: boolean): Promise<void> {
  const workers = workerCount(opts.workers);
  if (isWorker()) return runWorker(opts, logger);
  if (workers < opts.workers) {
    logger.log.warn(`--workers ${opts.workers}: this machine has ${workers} CPUs, so ${workers} worker processes run`);
  }
  const runDir = ensureRunDir(opts.runDir);
  if (runDir.created) logger.log.info(`created run directory ${opts.runDir} (root:${runDir.group ?? 'root'} 0710)`);
  logCache(opts, logger.log, workers);
  // Checked here too, so that a bad key file stops the start before any worker runs.
  fleetKeys(opts);
  if (workers > 1) return runPrimary(opts, logger, detachedChild, workers);

  const { log } = logger;
  // The handlers go in before the socket listens: a client (or an init
  // script) may signal us as soon as it can connect, and a SIGTERM or SIGHUP
  // that came before them would kill the daemon, leaving its pid file behind.
  // One arriving during startup waits for it to finish.
  const serving = serve(opts, logger);
  const ready = serving.catch(() => undefined); // a startup failure is reported below
  // Started once the socket listens; a stop signal may come before.
  const later: { endpoint?: MetricsServer; status?: StatusLine | undefined } = {};
  onStopSignals(
    logger,
    async () => {
      await later.endpoint?.close();
      const svc = await ready;
      if (svc !== undefined) await stopService(svc, opts.authTimeoutMs);
      if (detachedChild) fs.rmSync(path.join(opts.runDir, 'saslauthd.pid'), { force: true });
    },
    () => later.status?.stop(),
  );
  process.on('SIGHUP', () => void ready.then((svc) => svc !== undefined && reload(svc, log)));
  const svc = await serving;
  const metrics = svc.metrics;
  if (opts.metrics !== undefined && metrics !== undefined) {
    try {
      later.endpoint = await startMetricsEndpoint(opts.metrics, async () => render(await metrics.registry.snapshot()), log);
    } catch (err) {
      await stopService(svc, 0);
      throw err;
    }
  }
  announce(opts, log, detachedChild, 1);
  if (metrics !== undefined) later.status = startStatusLine(opts.mech, () => metrics.registry.snapshot(false), log);
}

/**
 * SIGTERM/SIGINT: stop accepting, let shutdown() answer what is in flight
 * and clean up, then exit 0. A second signal changes nothing.
 */
function onStopSignals(logger: DaemonLogger, shutdown: () => Promise<void>, stopStatus?: () => Promise<void> | undefined): void {
  const { log } = logger;
  let stopping = false;
  const stop = (signal: string): void => {
    if (stopping) return;
    stopping = true;
    log.info({ signal }, 'shutting down: no new connections, answering those in flight');
    // A status line still on its way must not land after "stopping".
    void Promise.resolve(stopStatus?.()).then(() => notifyStopping(`stopping on ${signal}`));
    void shutdown().then(() => {
      log.info(`master exited: ${process.pid}`);
      logger.flush();
      process.exit(0);
    });
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
}

/** The cluster primary: owns the socket file, pid file and readiness; serves nothing itself. */
async function runPrimary(opts: DaemonOptions, logger: DaemonLogger, detachedChild: boolean, workers: number): Promise<void> {
  const { log } = logger;
  const socketPath = path.join(opts.runDir, SOCKET_NAME);
  let listenFd: number;
  try {
    await SaslauthdServer.claimSocket(socketPath);
    listenFd = SaslauthdServer.bind(socketPath);
  } catch (err) {
    throw startupExit(err);
  }
  // The Dovecot door's socket too: bound here, served by the workers.
  const dovecotPath = opts.dovecotSocket;
  let dovecot: Awaited<ReturnType<typeof DovecotServer.bind>> | undefined;
  try {
    if (dovecotPath !== undefined) dovecot = await DovecotServer.bind(dovecotPath);
  } catch (err) {
    native.closeFd(listenFd);
    fs.rmSync(socketPath, { force: true });
    throw startupExit(err);
  }
  const removeSockets = (): void => {
    fs.rmSync(socketPath, { force: true });
    if (dovecotPath !== undefined && dovecot !== undefined) removeSocket(dovecotPath, dovecot);
  };
  const primary = new Primary({ workers, log, shutdownGraceMs: opts.authTimeoutMs, listenFd, dovecotFd: dovecot?.fd });
  // The primary serves no request: its own figures are its process's; the rest are the workers'.
  const own = new Registry();
  const ownProcess = opts.metrics !== undefined ? registerProcessMetrics(own) : undefined;
  // Started once the workers listen; a stop signal may come before.
  const later: { endpoint?: MetricsServer; status?: StatusLine | undefined } = {};
  onStopSignals(
    logger,
    async () => {
      await later.endpoint?.close();
      ownProcess?.stop();
      await primary.stop();
      removeSockets();
      if (detachedChild) fs.rmSync(path.join(opts.runDir, 'saslauthd.pid'), { force: true });
    },
    () => later.status?.stop(),
  );
  process.on('SIGHUP', () => primary.reload());
  try {
    await primary.start();
  } catch (err) {
    native.closeFd(listenFd);
    if (dovecot !== undefined) native.closeFd(dovecot.fd);
    removeSockets();
    if (err instanceof StartupFailure) throw new ExitError(err.message, err.exitCode);
    throw err;
  }
  log.info({ workers }, `listening on socket: ${socketPath} (${workers} worker processes)`);
  if (dovecotPath !== undefined && dovecot !== undefined) {
    log.info({ workers }, `listening on dovecot socket: ${dovecotPath} (${dovecot.owner}, ${workers} worker processes)`);
  }
  if (opts.metrics !== undefined) {
    try {
      later.endpoint = await startMetricsEndpoint(
        opts.metrics,
        async () => render(merge([await own.snapshot(), await primary.gatherMetrics(true)])),
        log,
      );
    } catch (err) {
      ownProcess?.stop();
      await primary.stop();
      native.closeFd(listenFd);
      if (dovecot !== undefined) native.closeFd(dovecot.fd);
      removeSockets();
      throw err;
    }
  }
  announce(opts, log, detachedChild, workers);
  later.status = startStatusLine(opts.mech, () => primary.gatherMetrics(false), log);
}

/**
 * Messages a worker keeps while it is still starting: the other workers may
 * already be answering, and their cache and throttle changes must not be
 * lost (this one would start without the known-good credentials and the
 * failures they counted meanwhile). Bounded: past it, the oldest go.
 */
const EARLY_MESSAGES_MAX = 100_000;

/** A worker restarted after a crash: take over a live worker's cache and throttle state. */
function takeOver(svc: Service, state: WorkerState, log: DaemonLogger['log']): void {
  for (const op of state.cache ?? []) svc.cache?.apply(op);
  const throttled = state.throttle !== undefined && svc.sharedThrottle?.importState(state.throttle) === true;
  log.info(
    { cacheEntries: state.cache?.length ?? 0, throttle: throttled },
    `worker ${process.pid}: took over ${state.cache?.length ?? 0} cache entries${throttled ? " and the throttle's state" : ''} from a live worker`,
  );
}

/** A cluster worker: serves on the primary's socket until told to stop. */
async function runWorker(opts: DaemonOptions, logger: DaemonLogger): Promise<void> {
  const { log } = logger;
  // Listening from the first moment: the changes can come in the same read as init.
  const early: ToWorker[] = [];
  let droppedEarly = 0;
  let onMessage = (msg: ToWorker): void => {
    if (early.length >= EARLY_MESSAGES_MAX) {
      early.shift();
      droppedEarly++;
    }
    early.push(msg);
  };
  process.on('message', (msg: ToWorker) => onMessage(msg));
  const { key, dovecotFd } = await waitForInit();
  let svc: Service;
  try {
    svc = await serve(opts, logger, {
      key,
      dovecotFd,
      onCacheChange: (op) => sendToPrimary({ type: 'cache', op }),
      onThrottleChange: (op) => sendToPrimary({ type: 'throttle', op }),
    });
  } catch (err) {
    const e = err instanceof ExitError ? err : new ExitError((err as Error).message, 1);
    sendToPrimary({ type: 'fatal', message: maskCredentials(e.message), exitCode: e.exitCode });
    logger.flush();
    // Let the IPC message go out before exiting.
    setTimeout(() => process.exit(e.exitCode), 100);
    return;
  }
  sendToPrimary({ type: 'listening' });
  let stopping = false;
  const stop = (why: string): void => {
    if (stopping) return;
    stopping = true;
    log.debug({ why }, `worker ${process.pid} stopping`);
    void (async () => {
      await stopService(svc, opts.authTimeoutMs);
      logger.flush();
      process.exit(0);
    })();
  };
  onMessage = (msg: ToWorker): void => {
    if (msg.type === 'shutdown') stop('primary asked');
    else if (msg.type === 'init') return;
    else if (msg.type === 'reload') reload(svc, log);
    else if (msg.type === 'cache') svc.cache?.apply(msg.op);
    else if (msg.type === 'throttle') void svc.sharedThrottle?.apply(msg.op);
    else if (msg.type === 'dump') {
      const state: WorkerState = { cache: svc.cache?.exportEntries(), throttle: svc.sharedThrottle?.exportState() };
      sendToPrimary({ type: 'state', id: msg.id, state });
    } else if (msg.type === 'state') takeOver(svc, msg.state, log);
    else if (msg.type === 'metrics') {
      const id = msg.id;
      void (svc.metrics?.registry.snapshot(msg.scrape) ?? Promise.resolve([])).then(
        (snapshot) => sendToPrimary({ type: 'metrics', id, snapshot }),
        () => sendToPrimary({ type: 'metrics', id, snapshot: [] }),
      );
    }
  };
  // Still in the turn serve() ended in: applied before any request is read,
  // a live worker's state first (a restarted worker), then what changed since.
  const kept = early.splice(0);
  const states = kept.filter((m) => m.type === 'state');
  for (const msg of [...states.slice(-1), ...kept.filter((m) => m.type !== 'state')]) onMessage(msg);
  if (droppedEarly > 0) {
    log.warn(`worker ${process.pid}: ${droppedEarly} changes from the other workers were lost while it started`);
  }
  process.on('disconnect', () => stop('primary gone'));
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
  // The primary forwards reloads; a SIGHUP sent to the whole group must not kill us.
  process.on('SIGHUP', () => undefined);
}

/** In the detached child: tell the waiting parent how startup went. */
function reportStatus(line: string): void {
  try {
    fs.writeSync(STATUS_FD, `${line}\n`);
    fs.closeSync(STATUS_FD);
  } catch {
    // parent already gone
  }
}

/**
 * Cyrus's detach_tty: start the daemon in a new session with stdio on
 * /dev/null and exit with its startup status (0 listening, 1 error, 2
 * another daemon running), so init scripts can tell.
 */
function detach(argv: string[]): Promise<number> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [...process.execArgv, process.argv[1] ?? '', ...argv], {
      detached: true,
      stdio: ['ignore', 'ignore', 'ignore', 'pipe'],
      env: { ...process.env, [CHILD_ENV]: '1' },
    });
    let status = '';
    const pipe = child.stdio[STATUS_FD] as NodeJS.ReadableStream;
    pipe.setEncoding('utf8');
    pipe.on('data', (d: string) => (status += d));
    const finish = (): void => {
      const line = status.trim();
      if (line === 'OK') {
        child.unref();
        resolve(0);
        return;
      }
      const m = /^ERR (\d+) (.*)$/s.exec(line);
      process.stderr.write(`saslauthd-ts: ${m ? m[2] : 'daemon exited during startup'}\n`);
      resolve(m ? Number(m[1]) : 1);
    };
    pipe.on('end', finish);
    child.on('error', (err) => {
      process.stderr.write(`saslauthd-ts: cannot start daemon: ${err.message}\n`);
      resolve(1);
    });
  });
}
