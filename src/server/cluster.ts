// More cores for the socket work: with --workers N > 1 the daemon runs
// min(N, cores) worker processes that accept on one shared listening socket
// (the primary binds it and hands the descriptor to each worker as fd 4; the
// kernel gives each connection to whichever worker accepts first, as
// node:cluster's SCHED_NONE would; round-robin through the primary halved
// throughput). The Dovecot door's socket (--dovecot-socket) the primary binds
// too, and node:cluster's round-robin hands its connections to the workers:
// they are few and long-lived (one per smtpd process), so accepting them in
// the primary costs nothing.
// Opt-in: hashing and PAM already use every core through their threads, and
// on a 2-core machine shared with its clients a second process measured no
// faster while doubling memory. The primary owns the socket file, the pid
// file and readiness, forwards signals, restarts a worker that dies, and
// relays credential-cache and throttle changes so every worker sees every
// success and every counted failure.
import cluster, { type Worker } from 'node:cluster';
import crypto from 'node:crypto';
import os from 'node:os';
import type pino from 'pino';
import type { CacheOp } from '../auth/cache';
import type { ThrottleOp } from '../auth/throttle/replicated';
import type { MemoryState } from '../auth/throttle/store';
import { countersOf, merge, type Snapshot } from '../metrics/registry';

export type ToPrimary =
  | { type: 'listening' }
  | { type: 'fatal'; message: string; exitCode: number }
  | { type: 'cache'; op: CacheOp }
  | { type: 'throttle'; op: ThrottleOp }
  | { type: 'metrics'; id: number; snapshot: Snapshot }
  /** The answer to dump. */
  | { type: 'state'; id: number; state: WorkerState };

/**
 * What a worker holds that the others also hold: the credential cache and
 * the throttle's tables. A worker the primary restarts after a crash takes it
 * over from a live one instead of starting empty.
 */
export interface WorkerState {
  cache?: CacheOp[] | undefined;
  throttle?: MemoryState | undefined;
}

export type ToWorker =
  | { type: 'init'; key: string; dovecotFd?: number | undefined }
  | { type: 'shutdown' }
  | { type: 'reload' }
  | { type: 'cache'; op: CacheOp }
  | { type: 'throttle'; op: ThrottleOp }
  /** Send your metrics (scrape: the process ones too). */
  | { type: 'metrics'; id: number; scrape: boolean }
  /** Send your state (for a worker restarted after a crash). */
  | { type: 'dump'; id: number }
  /** Take this state over (you were restarted after a crash). */
  | { type: 'state'; state: WorkerState };

/** Where a worker finds the listening socket the primary bound. */
export const WORKER_LISTEN_FD = 4;

/** --workers N on this machine: never more than its cores. */
export function workerCount(requested: number, cpus = os.availableParallelism()): number {
  return Math.max(1, Math.min(requested, cpus));
}

export const isWorker = (): boolean => cluster.isWorker;

export function sendToPrimary(msg: ToPrimary): void {
  process.send?.(msg);
}

/**
 * In a worker: resolves with the init message: the fingerprint key every
 * worker shares, and the primary's descriptor of the Dovecot door's socket
 * (a worker listens on it through node:cluster, which the primary serves).
 */
export function waitForInit(): Promise<{ key: Buffer; dovecotFd: number | undefined }> {
  return new Promise((resolve) => {
    const onMessage = (msg: ToWorker): void => {
      if (msg.type !== 'init') return;
      process.off('message', onMessage);
      resolve({ key: Buffer.from(msg.key, 'base64'), dovecotFd: msg.dovecotFd });
    };
    process.on('message', onMessage);
  });
}

export class StartupFailure extends Error {
  constructor(
    message: string,
    readonly exitCode: number,
  ) {
    super(message);
  }
}

export interface PrimaryOptions {
  workers: number;
  log: pino.Logger;
  /** How long workers get to answer in-flight requests on shutdown. */
  shutdownGraceMs: number;
  /** The listening socket, passed to every worker as WORKER_LISTEN_FD. */
  listenFd: number;
  /** The Dovecot door's listening socket, which the workers listen on through node:cluster. */
  dovecotFd?: number | undefined;
}

/** How long a scrape waits for the workers' figures; a late worker counts with its last ones. */
const GATHER_TIMEOUT_MS = 2000;

interface Gathering {
  pending: Set<Worker>;
  done: () => void;
}

const RESTART_WINDOW_MS = 60_000;
/** How long a live worker has to send its state to a restarted one. */
const DUMP_TIMEOUT_MS = 10_000;
const MAX_RESTARTS = 5;

export class Primary {
  /** The fingerprint key every worker uses, so cache entries replicate between them. */
  private readonly key = crypto.randomBytes(32).toString('base64');
  private readonly workers = new Set<Worker>();
  private listening = new Set<Worker>();
  private stopping = false;
  private restarts: number[] = [];
  private exitWaiters: Array<() => void> = [];
  private gatherSeq = 0;
  private readonly gatherings = new Map<number, Gathering>();
  private dumpSeq = 0;
  /** Dumps asked of a live worker, by id: the restarted worker each is for. */
  private readonly dumps = new Map<number, Worker>();
  /** Each worker's latest metrics. */
  private readonly lastMetrics = new Map<Worker, Snapshot>();
  /** What workers that have exited counted: kept, so the daemon's totals never go back when one is restarted. */
  private retired: Snapshot = [];

  constructor(private readonly opts: PrimaryOptions) {
    cluster.setupPrimary({ stdio: ['inherit', 'inherit', 'inherit', 'ipc', opts.listenFd] });
  }

  /** Fork the workers; resolves once every one of them is listening. */
  start(): Promise<void> {
    return new Promise((resolve, reject) => {
      let ready = false;
      const onFatal = (message: string, exitCode: number): void => {
        if (ready) return;
        ready = true; // settle once
        this.stopping = true;
        for (const w of this.workers) w.process.kill('SIGKILL');
        reject(new StartupFailure(message, exitCode));
      };
      const onListening = (): void => {
        if (!ready && this.listening.size === this.opts.workers) {
          ready = true;
          resolve();
        }
      };
      for (let i = 0; i < this.opts.workers; i++) this.fork(onListening, onFatal);
    });
  }

  /**
   * A restarted worker takes over a live one's cache and throttle state
   * (it keeps what comes before it is ready, see runWorker). Without a live
   * worker, or an answer within DUMP_TIMEOUT_MS, it starts empty.
   */
  private handOver(to: Worker): void {
    const from = [...this.listening].find((w) => w !== to && w.isConnected());
    if (from === undefined) return;
    const id = ++this.dumpSeq;
    this.dumps.set(id, to);
    setTimeout(() => this.dumps.delete(id), DUMP_TIMEOUT_MS).unref();
    from.send({ type: 'dump', id } satisfies ToWorker);
  }

  private fork(onListening: () => void, onFatal: (message: string, exitCode: number) => void): Worker {
    const w = cluster.fork();
    this.workers.add(w);
    w.send({ type: 'init', key: this.key, dovecotFd: this.opts.dovecotFd } satisfies ToWorker);
    let fatal: { message: string; exitCode: number } | undefined;
    w.on('message', (msg: ToPrimary) => {
      if (msg.type === 'listening') {
        this.listening.add(w);
        onListening();
      } else if (msg.type === 'fatal') {
        fatal = { message: msg.message, exitCode: msg.exitCode };
      } else if (msg.type === 'cache' || msg.type === 'throttle') {
        for (const other of this.workers) if (other !== w && other.isConnected()) other.send(msg);
      } else if (msg.type === 'state') {
        const to = this.dumps.get(msg.id);
        this.dumps.delete(msg.id);
        if (to !== undefined && to.isConnected()) to.send({ type: 'state', state: msg.state } satisfies ToWorker);
      } else if (msg.type === 'metrics') {
        this.lastMetrics.set(w, msg.snapshot);
        const g = this.gatherings.get(msg.id);
        if (g !== undefined && g.pending.delete(w) && g.pending.size === 0) g.done();
      }
    });
    w.on('exit', (code, signal) => {
      this.workers.delete(w);
      const last = this.lastMetrics.get(w);
      if (last !== undefined) this.retired = merge([this.retired, countersOf(last)]);
      this.lastMetrics.delete(w);
      for (const g of this.gatherings.values()) if (g.pending.delete(w) && g.pending.size === 0) g.done();
      const wasListening = this.listening.delete(w);
      if (this.stopping) {
        if (this.workers.size === 0) for (const done of this.exitWaiters.splice(0)) done();
        return;
      }
      if (!wasListening) {
        onFatal(fatal?.message ?? `worker ${w.process.pid} exited (${signal ?? code}) during startup`, fatal?.exitCode ?? 1);
        return;
      }
      this.opts.log.error(
        { pid: w.process.pid, code, signal },
        `worker ${w.process.pid} died (${signal ?? code}); restarting it`,
      );
      const now = Date.now();
      this.restarts = this.restarts.filter((t) => t > now - RESTART_WINDOW_MS);
      this.restarts.push(now);
      if (this.restarts.length > MAX_RESTARTS) {
        this.opts.log.fatal(`${MAX_RESTARTS} worker restarts within a minute; giving up`);
        void this.stop().then(() => process.exit(1));
        return;
      }
      const replacement = this.fork(
        () => undefined,
        (message) => this.opts.log.error(`restarted worker failed: ${message}`),
      );
      this.handOver(replacement);
    });
    return w;
  }

  /**
   * Every worker's metrics, fresh where a worker answers within the
   * deadline, else its last ones, plus what exited workers counted.
   */
  async gatherMetrics(scrape: boolean): Promise<Snapshot> {
    const id = ++this.gatherSeq;
    const pending = new Set([...this.listening].filter((w) => w.isConnected()));
    await new Promise<void>((resolve) => {
      if (pending.size === 0) {
        resolve();
        return;
      }
      const timer = setTimeout(resolve, GATHER_TIMEOUT_MS);
      this.gatherings.set(id, {
        pending,
        done: () => {
          clearTimeout(timer);
          resolve();
        },
      });
      for (const w of pending) w.send({ type: 'metrics', id, scrape } satisfies ToWorker);
    });
    this.gatherings.delete(id);
    return merge([this.retired, ...this.lastMetrics.values()]);
  }

  /** SIGHUP: every worker re-reads its configuration and empties its cache. */
  reload(): void {
    for (const w of this.workers) if (w.isConnected()) w.send({ type: 'reload' } satisfies ToWorker);
  }

  /** Ask every worker to finish what is in flight and exit; SIGKILL stragglers. */
  async stop(): Promise<void> {
    this.stopping = true;
    if (this.workers.size === 0) return;
    const allExited = new Promise<void>((resolve) => this.exitWaiters.push(resolve));
    for (const w of this.workers) if (w.isConnected()) w.send({ type: 'shutdown' } satisfies ToWorker);
    const timer = setTimeout(() => {
      for (const w of this.workers) w.process.kill('SIGKILL');
    }, this.opts.shutdownGraceMs + 2000);
    await allExited;
    clearTimeout(timer);
  }
}
