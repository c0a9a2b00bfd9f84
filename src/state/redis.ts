// The connection to the fleet's shared store (--state), and the rule that
// keeps it off the critical path to a wrong answer: every operation has a
// deadline (--state-timeout), and a store that errs or is late is taken out
// of use at once. Until a probe finds it answering again, reads return
// nothing (the caller decides from its local state) without waiting, and
// writes wait in a bounded backlog, replayed in order when it returns;
// beyond the bound they are dropped and counted. One line is logged when the
// store goes away and one when it comes back, never one per request.
//
// ioredis does the protocol, TLS, UNIX sockets, Lua scripts (EVALSHA with an
// EVAL fallback) and reconnects (with our back-off); its offline queue is
// off, so nothing queues without bound inside it either.
import Redis, { type RedisOptions } from 'ioredis';
import net from 'node:net';
import type pino from 'pino';
import type { StateTarget } from './uri';

export interface TlsFiles {
  ca?: Buffer;
  cert?: Buffer;
  key?: Buffer;
}

export interface Script {
  lua: string;
}

export interface SharedStateOptions {
  target: StateTarget;
  tls?: TlsFiles | undefined;
  /** Deadline of each operation. */
  timeoutMs: number;
  /** Writes held while the store is unavailable, at most. */
  backlogMax: number;
  log: pino.Logger;
  /** Lua scripts, callable by name through script(). */
  scripts: Record<string, Script>;
  /** Reconnect and probe back-off bounds. */
  retryMinMs?: number;
  retryMaxMs?: number;
}

/** Upper bounds (ms) of the latency histogram's buckets; the last bucket is everything above. */
export const LATENCY_BUCKETS_MS = [0.25, 0.5, 1, 2, 5, 10, 25, 50, 100, 250, 1000] as const;

/**
 * Counters for the metrics endpoint (and tests): monotonic except the
 * gauges `up` and `backlog`.
 */
export interface SharedStateStats {
  /** Sharing now (the store answered the last probe and nothing has failed since). */
  up: boolean;
  /** Times the store went out of use. */
  outages: number;
  /** Operations answered. */
  ops: number;
  /** Operations that failed (an error reply, a closed connection). */
  errors: number;
  /** Operations not answered within the deadline. */
  timeouts: number;
  /** Reads answered from local state instead (store unavailable, late or failing). */
  fallbacks: number;
  /** Writes waiting for the store to return. */
  backlog: number;
  /** Writes replayed after an outage. */
  replayed: number;
  /** Writes dropped because the backlog was full. */
  dropped: number;
  /** Round-trip times of answered operations: counts per LATENCY_BUCKETS_MS bucket (one more for above), sum and count. */
  latency: { bucketsMs: readonly number[]; counts: number[]; sumMs: number; count: number };
}

/** Operations sent and not answered, at most: past it the store counts as stalled. */
const MAX_INFLIGHT = 10_000;

type Mode = 'starting' | 'up' | 'down' | 'closed';

type ScriptFn = (numKeys: number, ...args: Array<string | number>) => Promise<unknown>;

export interface Write {
  send: (r: StateClient) => Promise<unknown>;
  onReply?: (reply: unknown) => void;
}

/** What operations may use: the client's commands and the scripts. */
export interface StateClient {
  redis: Redis;
  script(name: string, keys: readonly string[], args: ReadonlyArray<string | number>): Promise<unknown>;
}

export function redisOptions(target: StateTarget, tls: TlsFiles | undefined, extra: RedisOptions = {}): RedisOptions {
  const o: RedisOptions = { db: target.db, ...extra };
  if (target.username !== undefined) o.username = target.username;
  if (target.password !== undefined) o.password = target.password;
  if (target.kind === 'unix') o.path = target.path ?? '';
  else {
    o.host = target.host ?? '';
    o.port = target.port ?? 6379;
  }
  if (target.kind === 'tls') {
    const host = target.host ?? '';
    o.tls = {
      ...(tls?.ca !== undefined ? { ca: tls.ca } : {}),
      ...(tls?.cert !== undefined ? { cert: tls.cert } : {}),
      ...(tls?.key !== undefined ? { key: tls.key } : {}),
      // SNI takes names only; an address is still checked against the certificate's SAN.
      ...(net.isIP(host) === 0 ? { servername: host } : {}),
    };
  }
  return o;
}

/** A hint for the errors an admin can fix, after the server's own text. */
export function errorHint(message: string): string {
  if (/WRONGPASS|invalid password|invalid username-password/i.test(message)) return ' (check the user and password in --state)';
  if (/NOAUTH|Authentication required/i.test(message))
    return ' (the server requires a password: --state redis://:PASSWORD@host:port/db)';
  if (/^OOM/.test(message)) return ' (Redis is at its maxmemory: raise it, or use maxmemory-policy volatile-ttl)';
  if (/NOPERM/i.test(message))
    return " (the ACL user lacks a permission: it needs +@read +@write +@scripting +ping +info on the prefix's keys)";
  if (/ECONNREFUSED/.test(message)) return ' (nothing listens there)';
  if (/self.signed|unable to verify|UNABLE_TO_GET_ISSUER|CERT_/i.test(message))
    return ' (the server certificate is not trusted: --state-tls-ca)';
  return '';
}

export class SharedState {
  private readonly client: Redis;
  private readonly api: StateClient;
  private mode: Mode = 'starting';
  private downSince = 0;
  private fallbacksAtDown = 0;
  private readonly backlog: Write[] = [];
  private inflight = 0;
  private probeTimer: NodeJS.Timeout | undefined;
  private probing = false;
  private backoffMs: number;
  private lastError = '';
  private replyErrors = 0;
  private replyErrorLoggedAt = 0;
  private readonly s: Omit<SharedStateStats, 'up' | 'backlog'> = {
    outages: 0,
    ops: 0,
    errors: 0,
    timeouts: 0,
    fallbacks: 0,
    replayed: 0,
    dropped: 0,
    latency: {
      bucketsMs: LATENCY_BUCKETS_MS,
      counts: new Array<number>(LATENCY_BUCKETS_MS.length + 1).fill(0),
      sumMs: 0,
      count: 0,
    },
  };
  /** The server's version, once connected. */
  version: string | undefined;

  constructor(private readonly opts: SharedStateOptions) {
    const min = opts.retryMinMs ?? 100;
    const max = opts.retryMaxMs ?? 2_000;
    this.backoffMs = min;
    const scripts: RedisOptions['scripts'] = {};
    for (const [name, s] of Object.entries(opts.scripts)) scripts[name] = { lua: s.lua };
    this.client = new Redis(
      redisOptions(opts.target, opts.tls, {
        lazyConnect: true,
        // Nothing waits inside ioredis: a command sent while disconnected fails at once.
        enableOfflineQueue: false,
        autoResendUnfulfilledCommands: false,
        maxRetriesPerRequest: 0,
        // No auto-pipelining: ioredis then writes each script as a full EVAL
        // (it tracks loaded scripts per socket, and a pipeline is not one),
        // which costs both sides more than a write per command.
        enableAutoPipelining: false,
        connectTimeout: Math.max(1_000, opts.timeoutMs * 20),
        retryStrategy: (times) => Math.min(max, min * 2 ** Math.min(10, times - 1)),
        // RESP2: every Redis and Valkey since 2.6 speaks it; we need nothing of RESP3.
        protocol: 2,
        // CLIENT SETINFO exists from Redis 7.2 only; older ones would answer an error on every connect.
        disableClientInfo: true,
        connectionName: 'saslauthd-ts',
        keepAlive: 10_000,
        scripts,
      }),
    );
    const fns = this.client as unknown as Record<string, ScriptFn>;
    this.api = {
      redis: this.client,
      script: (name, keys, args) => {
        const fn = fns[name];
        if (fn === undefined) return Promise.reject(new Error(`no script ${name}`));
        return fn.call(this.client, keys.length, ...keys, ...args);
      },
    };
    this.client.on('error', (err: Error) => {
      this.lastError = err.message;
      this.trip(err.message);
    });
    this.client.on('close', () =>
      this.trip(this.lastError !== '' ? `connection closed (${this.lastError})` : 'connection closed'),
    );
    this.client.on('ready', () => this.probeSoon(0));
  }

  /** Starts connecting; never waits for the store. */
  start(): void {
    this.client.connect().catch((err: Error) => this.trip(err.message));
    this.probeSoon(this.opts.timeoutMs * 20);
  }

  close(): void {
    this.mode = 'closed';
    clearTimeout(this.probeTimer);
    this.client.disconnect();
  }

  get up(): boolean {
    return this.mode === 'up';
  }

  stats(): SharedStateStats {
    return {
      ...this.s,
      latency: { ...this.s.latency, counts: [...this.s.latency.counts] },
      up: this.mode === 'up',
      backlog: this.backlog.length,
    };
  }

  /**
   * One read under the deadline. undefined when the store is out of use,
   * fails or is late: the caller decides from its local state (and this
   * counts as a fallback).
   */
  read(send: (c: StateClient) => Promise<unknown>): Promise<unknown> {
    if (this.mode !== 'up' || this.inflight >= MAX_INFLIGHT) {
      if (this.mode === 'up') this.trip(`${this.inflight} operations unanswered`);
      this.s.fallbacks++;
      return Promise.resolve(undefined);
    }
    return new Promise((resolve) => {
      let settled = false;
      const t0 = performance.now();
      // Timers run before the loop reads sockets: after a busy stretch of
      // the loop, the answer may be waiting unread when the timer fires.
      // setImmediate lets the loop read it first; only then is it late.
      const timer = setTimeout(
        () =>
          setImmediate(() => {
            if (settled) return;
            settled = true;
            this.s.timeouts++;
            this.s.fallbacks++;
            this.trip(`no answer within ${this.opts.timeoutMs} ms (--state-timeout)`);
            resolve(undefined);
          }),
        this.opts.timeoutMs,
      );
      this.inflight++;
      send(this.api).then(
        (reply) => {
          this.answered(t0);
          if (settled) return;
          settled = true;
          clearTimeout(timer);
          resolve(reply);
        },
        (err: Error) => {
          this.inflight--;
          if (settled) return;
          settled = true;
          clearTimeout(timer);
          this.s.fallbacks++;
          this.failed(err);
          resolve(undefined);
        },
      );
    });
  }

  /** A write: sent now, or held (bounded) while the store is out of use. Never awaited by a request. */
  write(w: Write): void {
    if (this.mode === 'closed') return;
    if (this.mode !== 'up') {
      this.hold(w);
      return;
    }
    if (this.inflight >= MAX_INFLIGHT) {
      this.trip(`${this.inflight} operations unanswered`);
      this.hold(w);
      return;
    }
    this.send(w);
  }

  private hold(w: Write): void {
    if (this.backlog.length >= this.opts.backlogMax) this.s.dropped++;
    else this.backlog.push(w);
  }

  private send(w: Write): void {
    const t0 = performance.now();
    this.inflight++;
    w.send(this.api).then(
      (reply) => {
        this.answered(t0);
        w.onReply?.(reply);
      },
      (err: Error) => {
        this.inflight--;
        this.failed(err);
      },
    );
  }

  /**
   * An operation failed. An error *reply* (OOM under maxmemory, NOPERM)
   * means Redis is there and refuses this one: counted, logged at most once
   * a minute, and not an outage. Anything else (a closed connection) is.
   */
  private failed(err: Error): void {
    this.s.errors++;
    if (err.name !== 'ReplyError') {
      this.trip(err.message);
      return;
    }
    this.replyErrors++;
    const now = Date.now();
    if (now - this.replyErrorLoggedAt < 60_000) return;
    this.replyErrorLoggedAt = now;
    const where = this.opts.target.display;
    this.opts.log.warn(
      { state: 'error', store: where, reason: err.message, errors: this.replyErrors },
      `shared state ${where}: Redis refused an operation: ${err.message}${errorHint(err.message)}; ` +
        `${this.replyErrors} such errors in the last minute, each decided from local state`,
    );
    this.replyErrors = 0;
  }

  private answered(t0: number): void {
    this.inflight--;
    this.s.ops++;
    const ms = performance.now() - t0;
    const l = this.s.latency;
    let i = 0;
    while (i < LATENCY_BUCKETS_MS.length && ms > (LATENCY_BUCKETS_MS[i] ?? Infinity)) i++;
    l.counts[i] = (l.counts[i] ?? 0) + 1;
    l.sumMs += ms;
    l.count++;
  }

  /** The store failed or was late: out of use until a probe finds it answering. Logs once per outage. */
  private trip(reason: string): void {
    if (this.mode === 'closed' || this.mode === 'down') return;
    const first = this.mode === 'starting';
    this.mode = 'down';
    this.s.outages++;
    this.downSince = Date.now();
    this.fallbacksAtDown = this.s.fallbacks;
    const where = this.opts.target.display;
    this.opts.log.warn(
      { state: 'down', store: where, reason: reason + errorHint(reason) },
      first
        ? `shared state ${where}: cannot connect: ${reason}${errorHint(reason)}; deciding from local state, retrying`
        : `shared state ${where}: unavailable: ${reason}${errorHint(reason)}; deciding from local state until it answers again`,
    );
    this.probeSoon(this.backoffMs);
  }

  private probeSoon(ms: number): void {
    if (this.mode === 'closed' || this.mode === 'up') return;
    clearTimeout(this.probeTimer);
    this.probeTimer = setTimeout(() => void this.probe(), ms);
    this.probeTimer.unref();
  }

  /** PING under the deadline; back in use when it answers in time. */
  private async probe(): Promise<void> {
    if (this.probing || this.mode === 'closed' || this.mode === 'up') return;
    const max = this.opts.retryMaxMs ?? 2_000;
    this.backoffMs = Math.min(max, this.backoffMs * 2);
    if (this.client.status !== 'ready') {
      // ioredis is reconnecting (with the same back-off); 'ready' probes at once.
      this.probeSoon(this.backoffMs);
      return;
    }
    this.probing = true;
    let timer: NodeJS.Timeout | undefined;
    try {
      const late = new Promise<'late'>((r) => (timer = setTimeout(() => setImmediate(() => r('late')), this.opts.timeoutMs)));
      const reply = await Promise.race([this.client.ping().catch((err: Error) => err), late]);
      if (reply === 'PONG') {
        if (this.version === undefined) this.version = await this.serverVersion();
        this.resume();
        return;
      }
      if (reply === 'late') {
        // A stalled connection (a hung server, a half-open TCP): start afresh.
        this.lastError = `no answer within ${this.opts.timeoutMs} ms`;
        this.client.disconnect(true);
      }
    } finally {
      clearTimeout(timer);
      this.probing = false;
    }
    this.probeSoon(this.backoffMs);
  }

  private async serverVersion(): Promise<string | undefined> {
    try {
      const info = await Promise.race([
        this.client.info('server'),
        new Promise<string>((r) => setTimeout(() => r(''), this.opts.timeoutMs * 4).unref()),
      ]);
      return parseVersion(info);
    } catch {
      return undefined;
    }
  }

  private resume(): void {
    const was = this.mode;
    this.mode = 'up';
    this.backoffMs = this.opts.retryMinMs ?? 100;
    this.lastError = '';
    const where = this.opts.target.display;
    const held = this.backlog.splice(0);
    if (was === 'starting' || this.s.outages === 0) {
      this.opts.log.info(
        { state: 'up', store: where, version: this.version },
        `shared state ${where}: connected${this.version ? ` (Redis ${this.version})` : ''}`,
      );
    } else {
      const secs = ((Date.now() - this.downSince) / 1000).toFixed(1);
      const fallbacks = this.s.fallbacks - this.fallbacksAtDown;
      const dropped = this.s.dropped;
      this.opts.log.info(
        { state: 'up', store: where, downSeconds: Number(secs), fallbacks, replayed: held.length, droppedTotal: dropped },
        `shared state ${where}: available again after ${secs} s; ${fallbacks} reads were decided from local state; ` +
          `${held.length} writes replayed, ${dropped} dropped in all since start`,
      );
    }
    this.s.replayed += held.length;
    for (const w of held) this.send(w);
  }
}

/** redis_version (or valkey_version) out of INFO server. */
export function parseVersion(info: string): string | undefined {
  const m = /^(?:valkey|redis)_version:(\S+)/m.exec(info);
  return m?.[1];
}
