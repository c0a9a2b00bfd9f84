// The daemon's own metrics (docs/metrics.md lists and explains each): what
// every request ended as, how long it took, and, read only when scraped,
// the state of the listener, the hashing and PAM queues, the cache, the
// throttle and the mechanism's servers. No label ever holds a login, a
// password or a client address; the label sets are fixed and small.
import type { CredentialCache } from '../auth/cache';
import type { Throttle } from '../auth/throttle/throttle';
import type { Backend } from '../backends/backend';
import type { PoolStats } from '../native/binding';
import type { SharedStateStats } from '../state/redis';
import { VERSION } from '../config/options';
import { type Counter, type CounterChild, type Histogram, type HistogramChild, Registry } from './registry';

/** What a request ended as: a backend outcome, a throttle decision, or a broken frame. */
export const RESULTS = ['ok', 'denied', 'unavailable', 'timeout', 'shed', 'refused', 'protocol_error'] as const;
export type Result = (typeof RESULTS)[number];

/** Why a frame never became a request (these add up to result="protocol_error"). */
export const PROTOCOL_ERRORS = ['null_login', 'null_password', 'oversize', 'incomplete', 'read_timeout'] as const;
export type ProtocolError = (typeof PROTOCOL_ERRORS)[number];

/** Latency buckets (seconds): a cache hit (well under 1 ms) to a timed-out mechanism (--auth-timeout, 15 s). */
export const DURATION_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];

/** Where the scraped gauges come from; each is read only at scrape time. */
export interface ServiceSources {
  /** Open connections, and requests received but not yet answered. */
  listener(): { connections: number; inFlight: number };
  pool(name: 'hash' | 'pam'): PoolStats;
  cache?: CredentialCache | undefined;
  throttle?: Throttle | undefined;
  backend: Backend;
  /** Log lines dropped because the journal or syslog did not keep up. */
  logLinesDropped?(): number;
  /** --state: the fleet's shared store (Redis). */
  sharedState?: { stats(): SharedStateStats } | undefined;
}

interface PerResult {
  count: CounterChild;
  seconds: HistogramChild | undefined;
}

/**
 * How requests are labelled. one: by the daemon's one mechanism (-a NAME).
 * chain (-a a,b) and routes (--routes): by the mechanism that answered,
 * "none" when none was asked (a cache hit, a throttle refusal, a realm with
 * no route), and with routes also by the route taken.
 */
export type Labelling = 'one' | 'chain' | 'routes';

/** The mech label of a request no mechanism answered (chains and routes). */
export const NO_MECH = 'none';

export class ServiceMetrics {
  readonly registry: Registry;
  /** One mechanism: its children, made at start (at 0). */
  private readonly byResult: Record<Result, PerResult> | undefined;
  private readonly protocolErrors: CounterChild;
  /** chain, routes: the children of each (route, answering mechanism), made on first use. */
  private readonly byAnswerer = new Map<string, Record<Result, PerResult>>();
  private readonly requests: Counter;
  private readonly duration: Histogram;
  private readonly protocol: Record<ProtocolError, CounterChild>;
  private readonly hits: CounterChild | undefined;
  private readonly misses: CounterChild | undefined;
  private readonly stale: CounterChild | undefined;

  constructor(
    readonly mech: string,
    /** -c: the cache's counters exist only with the cache. */
    cache: boolean,
    registry = new Registry(),
    readonly labelling: Labelling = 'one',
  ) {
    this.registry = registry;
    const split = labelling !== 'one';
    const r = registry;
    const by = split ? ', by the mechanism that answered (none: a cache hit, a refusal, no route)' : ' and by mechanism';
    const route = labelling === 'routes' ? ' and route' : '';
    const requests = r.counter(
      'saslauthd_requests_total',
      `Requests answered${by}${route}, and by result: ok, denied, unavailable, timeout, shed, refused (throttle), protocol_error.`,
    );
    const duration = r.histogram(
      'saslauthd_request_duration_seconds',
      `Time from a whole request to its outcome${by}${route}, and by result (throttle hold-back delays excluded).`,
      DURATION_BUCKETS,
    );
    this.requests = requests;
    this.duration = duration;
    // One mechanism: its children exist from the start, at 0. Chains and
    // routes: a broken frame has no mechanism and no route; the rest are
    // made in byAnswerer as they come.
    this.byResult = split ? undefined : this.perResult({ mech });
    this.protocolErrors = this.byResult?.protocol_error.count ?? requests.child({ mech: NO_MECH, result: 'protocol_error' });
    const protocol = r.counter('saslauthd_protocol_errors_total', 'Frames that never became a request, by reason.');
    this.protocol = Object.fromEntries(PROTOCOL_ERRORS.map((reason) => [reason, protocol.child({ reason })])) as Record<
      ProtocolError,
      CounterChild
    >;
    if (cache) {
      this.hits = r.counter('saslauthd_cache_hits_total', 'Requests answered OK from the credential cache (-c).').child();
      this.misses = r
        .counter('saslauthd_cache_misses_total', 'Cache look-ups that found no valid entry for the credentials.')
        .child();
      this.stale = r
        .counter(
          'saslauthd_cache_outage_answers_total',
          'Of the cache hits, those answered while the mechanism was unavailable or timed out (--cache-mode outage).',
        )
        .child();
    }
    r.gauge('saslauthd_build_info', 'Always 1; the labels say which version runs which mechanism.', 'max')
      .child({ version: VERSION, mech })
      .set(1);
  }

  private perResult(labels: Record<string, string>): Record<Result, PerResult> {
    // Chains and routes count every broken frame in one child (no mechanism, no route).
    const shared = this.protocolErrors as CounterChild | undefined;
    const entries = RESULTS.map((result): [Result, PerResult] => [
      result,
      {
        count: result === 'protocol_error' && shared !== undefined ? shared : this.requests.child({ ...labels, result }),
        seconds: result === 'protocol_error' ? undefined : this.duration.child({ ...labels, result }),
      },
    ]);
    return Object.fromEntries(entries) as Record<Result, PerResult>;
  }

  /**
   * One request's end: counted once, with its duration. The hot path: two
   * field updates (one mechanism), plus a map look-up with chains and routes.
   * mech: the mechanism that answered; route: the route taken (--routes).
   */
  request(result: Result, durationMs: number, mech?: string, route?: string): void {
    const e = (this.byResult ?? this.answerer(mech, route))[result];
    e.count.inc();
    e.seconds?.observe(durationMs / 1000);
  }

  private answerer(mech: string | undefined, route: string | undefined): Record<Result, PerResult> {
    const m = mech ?? NO_MECH;
    const r = this.labelling === 'routes' ? (route ?? '(none)') : undefined;
    const key = r === undefined ? m : `${r}\0${m}`;
    let e = this.byAnswerer.get(key);
    if (e === undefined) {
      e = this.perResult(r === undefined ? { mech: m } : { mech: m, route: r });
      this.byAnswerer.set(key, e);
    }
    return e;
  }

  protocolError(reason: ProtocolError): void {
    this.protocol[reason].inc();
    this.protocolErrors.inc();
  }

  cacheHit(duringOutage = false): void {
    this.hits?.inc();
    if (duringOutage) this.stale?.inc();
  }

  cacheMiss(): void {
    this.misses?.inc();
  }

  /** Requests by result so far (the status line). */
  totals(): Record<Result, number> {
    const sum = (r: Result): number => {
      let n = r === 'protocol_error' ? this.protocolErrors.value : (this.byResult?.[r].count.value ?? 0);
      for (const e of this.byAnswerer.values()) if (r !== 'protocol_error') n += e[r].count.value;
      return n;
    };
    return Object.fromEntries(RESULTS.map((r) => [r, sum(r)])) as Record<Result, number>;
  }

  /** The gauges read at scrape time. */
  attach(src: ServiceSources): void {
    const r = this.registry;
    const mech = this.mech;
    const connections = r
      .gauge('saslauthd_connections_open', 'Open client connections, including those draining after their answer.')
      .child();
    const inFlight = r.gauge('saslauthd_requests_in_flight', 'Requests received whole and not answered yet.').child();
    const queue = r.gauge(
      'saslauthd_queue_depth',
      'Checks waiting for a thread, by pool (hash: crypt(3); pam) and priority (known_good first, then normal).',
    );
    const running = r.gauge('saslauthd_queue_running', 'Checks running on a pool thread now.');
    const threads = r.gauge('saslauthd_queue_threads', 'Threads of each pool.');
    const oldest = r.gauge(
      'saslauthd_queue_oldest_wait_seconds',
      'How long the oldest ordinary check in each pool has been waiting (shedding starts at --shed-after).',
      'max',
    );
    const pools = (['hash', 'pam'] as const).map((pool) => ({
      pool,
      high: queue.child({ pool, priority: 'known_good' }),
      normal: queue.child({ pool, priority: 'normal' }),
      running: running.child({ pool }),
      threads: threads.child({ pool }),
      oldest: oldest.child({ pool }),
    }));
    const dropped = src.logLinesDropped
      ? r.counter('saslauthd_log_lines_dropped_total', 'Log lines dropped because the journal or syslog did not keep up.').child()
      : undefined;
    r.onCollect(() => {
      const l = src.listener();
      connections.set(l.connections);
      inFlight.set(l.inFlight);
      for (const p of pools) {
        const s = src.pool(p.pool);
        p.high.set(s.queuedHigh);
        p.normal.set(s.queuedNormal);
        p.running.set(s.running);
        p.threads.set(s.threads);
        p.oldest.set(s.oldestNormalWaitMs / 1000);
      }
      if (dropped !== undefined && src.logLinesDropped) dropped.value = src.logLinesDropped();
    });

    const cache = src.cache;
    if (cache !== undefined) {
      const size = r
        .gauge(
          'saslauthd_cache_entries',
          'Credentials in the cache (with --workers, each process holds a copy: the largest).',
          'max',
        )
        .child();
      const capacity = r.gauge('saslauthd_cache_capacity', 'Entries the cache holds at most (-s).', 'max').child();
      r.onCollect(() => {
        size.set(cache.size);
        capacity.set(cache.maxEntries);
      });
    }

    const throttle = src.throttle;
    if (throttle !== undefined) {
      const tracked = r
        .gauge(
          'saslauthd_throttle_tracked',
          'Logins, addresses and (login, address) pairs the throttle holds failures for.',
          'max',
        )
        .child();
      const good = r
        .gauge('saslauthd_throttle_known_good', 'Known-good credentials remembered (--known-good-max).', 'max')
        .child();
      const penalties = r
        .counter('saslauthd_throttle_penalties_total', 'Times a login, address or pair entered a penalty (refusals delayed).')
        .child();
      const cooloffs = r
        .counter(
          'saslauthd_throttle_cooloffs_total',
          'Times a login, address or pair entered a cool-off (attempts refused unchecked).',
        )
        .child();
      r.onCollect(() => {
        const s = throttle.size;
        tracked.set(s.tracked);
        good.set(s.knownGood);
        penalties.value = throttle.entered.penalties;
        cooloffs.value = throttle.entered.cooloffs;
      });
    }

    const shared = src.sharedState;
    if (shared !== undefined) this.attachSharedState(shared);

    const backend = src.backend;
    if (backend.servers !== undefined) {
      const up = r.gauge(
        'saslauthd_backend_up',
        "1 if the mechanism's server answered when last tried (or was not tried yet), 0 if it failed; by server.",
        'min',
      );
      const servers = backend.servers.bind(backend);
      const seen = new Set<unknown>();
      r.onCollect(() => {
        // The list can change on SIGHUP: rebuilt at each scrape (a few servers at most).
        up.clear();
        for (const s of servers()) {
          // Two routes may name one server (two search bases): up only if up for both.
          const child = up.child({ mech: s.mech ?? mech, server: s.name });
          child.set(seen.has(child) ? Math.min(child.value, s.up ? 1 : 0) : s.up ? 1 : 0);
          seen.add(child);
        }
        seen.clear();
      });
    }
  }

  /** --state: whether the fleet's store is in use, how it answers, and what was done without it. */
  private attachSharedState(shared: { stats(): SharedStateStats }): void {
    const r = this.registry;
    const first = shared.stats();
    const up = r
      .gauge(
        'saslauthd_state_up',
        '1 while the throttle (and cache) are shared through the --state store, 0 while this host decides alone.',
        'min',
      )
      .child();
    const counter = (name: string, help: string): CounterChild => r.counter(name, help).child();
    const outages = counter(
      'saslauthd_state_outages_total',
      'Times the --state store went out of use (unreachable, failing or too slow).',
    );
    const ops = counter('saslauthd_state_operations_total', 'Operations the --state store answered.');
    const errors = counter('saslauthd_state_errors_total', 'Operations that failed (an error reply, a closed connection).');
    const timeouts = counter('saslauthd_state_timeouts_total', 'Operations not answered within --state-timeout.');
    const fallbacks = counter(
      'saslauthd_state_fallbacks_total',
      "Reads answered from this host's own state instead (store out of use, late or failing).",
    );
    const replayed = counter('saslauthd_state_replayed_total', 'Writes replayed to the store after an outage.');
    const dropped = counter('saslauthd_state_dropped_total', 'Writes dropped because the outage backlog was full.');
    const backlog = r.gauge('saslauthd_state_backlog', 'Writes waiting for the store to return.').child();
    const latency = r
      .histogram(
        'saslauthd_state_latency_seconds',
        'Round-trip time of the operations the --state store answered.',
        first.latency.bucketsMs.map((ms) => ms / 1000),
      )
      .child();
    r.onCollect(() => {
      const s = shared.stats();
      up.set(s.up ? 1 : 0);
      outages.value = s.outages;
      ops.value = s.ops;
      errors.value = s.errors;
      timeouts.value = s.timeouts;
      fallbacks.value = s.fallbacks;
      replayed.value = s.replayed;
      dropped.value = s.dropped;
      backlog.set(s.backlog);
      latency.load(s.latency.counts, s.latency.sumMs / 1000, s.latency.count);
    });
  }
}
