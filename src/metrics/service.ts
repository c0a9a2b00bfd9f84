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
import { type CounterChild, type HistogramChild, Registry } from './registry';

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

export class ServiceMetrics {
  readonly registry: Registry;
  private readonly byResult: Record<Result, PerResult>;
  private readonly protocol: Record<ProtocolError, CounterChild>;
  private readonly hits: CounterChild | undefined;
  private readonly misses: CounterChild | undefined;
  private readonly stale: CounterChild | undefined;

  constructor(
    readonly mech: string,
    /** -c: the cache's counters exist only with the cache. */
    cache: boolean,
    registry = new Registry(),
  ) {
    this.registry = registry;
    const r = registry;
    const requests = r.counter(
      'saslauthd_requests_total',
      'Requests answered, by mechanism and result: ok, denied, unavailable, timeout, shed, refused (throttle), protocol_error.',
    );
    const duration = r.histogram(
      'saslauthd_request_duration_seconds',
      'Time from a whole request to its outcome, by mechanism and result (throttle hold-back delays excluded).',
      DURATION_BUCKETS,
    );
    const entries = RESULTS.map((result): [Result, PerResult] => [
      result,
      {
        count: requests.child({ mech, result }),
        seconds: result === 'protocol_error' ? undefined : duration.child({ mech, result }),
      },
    ]);
    this.byResult = Object.fromEntries(entries) as Record<Result, PerResult>;
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

  /** One request's end: counted once, with its duration. The hot path: two field updates. */
  request(result: Result, durationMs: number): void {
    const e = this.byResult[result];
    e.count.inc();
    e.seconds?.observe(durationMs / 1000);
  }

  protocolError(reason: ProtocolError): void {
    this.protocol[reason].inc();
    this.byResult.protocol_error.count.inc();
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
    return Object.fromEntries(RESULTS.map((r) => [r, this.byResult[r].count.value])) as Record<Result, number>;
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
      r.onCollect(() => {
        // The list can change on SIGHUP: rebuilt at each scrape (a few servers at most).
        up.clear();
        for (const s of servers()) up.child({ mech, server: s.name }).set(s.up ? 1 : 0);
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
