// More cores for the socket work: with --workers N > 1 the daemon runs
// min(N, cores) worker processes that accept on one shared listening socket
// (the primary binds it and hands the descriptor to each worker as fd 4; the
// kernel gives each connection to whichever worker accepts first, as
// node:cluster's SCHED_NONE would; round-robin through the primary halved
// throughput).
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

export type ToPrimary =
  | { type: 'listening' }
  | { type: 'fatal'; message: string; exitCode: number }
  | { type: 'cache'; op: CacheOp }
  | { type: 'throttle'; op: ThrottleOp };

export type ToWorker =
  | { type: 'init'; key: string }
  | { type: 'shutdown' }
  | { type: 'reload' }
  | { type: 'cache'; op: CacheOp }
  | { type: 'throttle'; op: ThrottleOp };

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

/** In a worker: resolves with the init message (the fingerprint key every worker shares). */
export function waitForInit(): Promise<{ key: Buffer }> {
  return new Promise((resolve) => {
    const onMessage = (msg: ToWorker): void => {
      if (msg.type !== 'init') return;
      process.off('message', onMessage);
      resolve({ key: Buffer.from(msg.key, 'base64') });
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
}

const RESTART_WINDOW_MS = 60_000;
const MAX_RESTARTS = 5;

export class Primary {
  /** The fingerprint key every worker uses, so cache entries replicate between them. */
  private readonly key = crypto.randomBytes(32).toString('base64');
  private readonly workers = new Set<Worker>();
  private listening = new Set<Worker>();
  private stopping = false;
  private restarts: number[] = [];
  private exitWaiters: Array<() => void> = [];

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

  private fork(onListening: () => void, onFatal: (message: string, exitCode: number) => void): void {
    const w = cluster.fork();
    this.workers.add(w);
    w.send({ type: 'init', key: this.key } satisfies ToWorker);
    let fatal: { message: string; exitCode: number } | undefined;
    w.on('message', (msg: ToPrimary) => {
      if (msg.type === 'listening') {
        this.listening.add(w);
        onListening();
      } else if (msg.type === 'fatal') {
        fatal = { message: msg.message, exitCode: msg.exitCode };
      } else if (msg.type === 'cache' || msg.type === 'throttle') {
        for (const other of this.workers) if (other !== w && other.isConnected()) other.send(msg);
      }
    });
    w.on('exit', (code, signal) => {
      this.workers.delete(w);
      const wasListening = this.listening.delete(w);
      if (this.stopping) {
        if (this.workers.size === 0) for (const done of this.exitWaiters.splice(0)) done();
        return;
      }
      if (!wasListening) {
        onFatal(fatal?.message ?? `worker ${w.process.pid} exited (${signal ?? code}) during startup`, fatal?.exitCode ?? 1);
        return;
      }
      this.opts.log.error({ pid: w.process.pid, code, signal }, `worker ${w.process.pid} died (${signal ?? code}); restarting it`);
      const now = Date.now();
      this.restarts = this.restarts.filter((t) => t > now - RESTART_WINDOW_MS);
      this.restarts.push(now);
      if (this.restarts.length > MAX_RESTARTS) {
        this.opts.log.fatal(`${MAX_RESTARTS} worker restarts within a minute; giving up`);
        void this.stop().then(() => process.exit(1));
        return;
      }
      this.fork(
        () => undefined,
        (message) => this.opts.log.error(`restarted worker failed: ${message}`),
      );
    });
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
