// The authenticator: what Cyrus's do_auth does between reading a request and
// writing the reply, plus what Cyrus lacks. For each request the listener
// hands over (already decoded and past Cyrus's NULL checks): the -r realm
// join, the credential cache, the throttle, the mechanism under a deadline,
// one result line, and the answer, held back when the throttle says so.
// Never throws; every request gets exactly one answer.
import type pino from 'pino';
import type { AuthRequest, Backend, Outcome } from '../backends/backend';
import { timedOut, unavailable } from '../backends/backend';
import type { Exchange } from '../server/exchange';
import { shown } from '../log/display';
import type { FailureLines } from '../log/failure-lines';
import type { ServiceMetrics } from '../metrics/service';
import { CredentialCache } from './cache';
import type { Admission, Attempt, Settled, Throttle } from './throttle/throttle';

export { TIMEOUT_REPLY } from '../backends/backend';

export interface AuthenticatorOptions {
  backend: Backend;
  /** -r: login becomes login@realm when the realm is non-empty. */
  concatRealm: boolean;
  /** A backend that has not answered by then is answered NO. */
  timeoutMs: number;
  log: pino.Logger;
  /** Where the per-attempt result lines go (default: log). */
  resultLog?: pino.Logger | undefined;
  /** -c: the credential cache, if enabled. */
  cache?: CredentialCache | undefined;
  /** The brute-force throttle; undefined with --throttle off. */
  throttle?: Throttle | undefined;
  /** Bounds the failure lines under a flood; undefined logs every one. */
  failureLines?: FailureLines | undefined;
  /** Counts each request's result once (undefined: metrics and status line off). */
  metrics?: ServiceMetrics | undefined;
}

/** What the result line says about a request. */
export interface LogSubject {
  login: string;
  service: string;
  realm: string;
  clientAddr?: string | undefined;
}

/** Cyrus's "[user=...] [service=...] [realm=...]", with master's "[remote=...]" when the client sent one. */
function where(req: LogSubject): string {
  const remote = req.clientAddr !== undefined ? ` [remote=${shown(req.clientAddr)}]` : '';
  return `[user=${shown(req.login)}] [service=${shown(req.service)}] [realm=${shown(req.realm)}]${remote}`;
}

/** "a.b.c.d;port" (Cyrus master), "[v6]:port"... -> the host, for the per-address throttle. */
export function addressHost(addr: string | undefined): string | undefined {
  if (addr === undefined) return undefined;
  const host = addr.split(';')[0]?.trim() ?? '';
  return host === '' ? undefined : host;
}

const NO_PASSWORD = Buffer.alloc(0);
const NEVER_ABORTED = new AbortController().signal;

/** Answers held back by the throttle; released at once when the daemon stops. */
class Holds {
  private readonly pending = new Map<NodeJS.Timeout, () => void>();

  wait(ms: number): Promise<void> {
    if (ms <= 0) return Promise.resolve();
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.pending.delete(timer);
        resolve();
      }, ms);
      this.pending.set(timer, () => {
        clearTimeout(timer);
        resolve();
      });
    });
  }

  get size(): number {
    return this.pending.size;
  }

  releaseAll(): void {
    for (const release of this.pending.values()) release();
    this.pending.clear();
  }
}

export class Authenticator {
  private readonly backend: Backend;
  private readonly concatRealm: boolean;
  private readonly timeoutMs: number;
  private readonly log: pino.Logger;
  private readonly resultLog: pino.Logger;
  private readonly cache: CredentialCache | undefined;
  private readonly throttle: Throttle | undefined;
  private readonly failureLines: FailureLines | undefined;
  private readonly metrics: ServiceMetrics | undefined;
  private readonly inflight = new Map<string, Promise<Outcome>>();
  private readonly holds = new Holds();
  private active = 0;

  constructor(opts: AuthenticatorOptions) {
    this.cache = opts.cache;
    this.backend = opts.backend;
    this.concatRealm = opts.concatRealm;
    this.timeoutMs = opts.timeoutMs;
    this.log = opts.log;
    this.resultLog = opts.resultLog ?? opts.log;
    this.throttle = opts.throttle;
    this.failureLines = opts.failureLines;
    this.metrics = opts.metrics;
  }

  get mech(): string {
    return this.backend.name;
  }

  /** Requests being decided or held back. */
  get pending(): number {
    return this.active;
  }

  /** Stopping: send the answers the throttle holds back now. */
  releaseHolds(): void {
    this.holds.releaseAll();
  }

  handle(x: Exchange): void {
    const login = this.concatRealm && x.realm.length > 0 ? `${x.login}@${x.realm}` : x.login;
    const cache = this.cache;
    const cacheId = cache !== undefined ? CredentialCache.id(login, x.realm, x.service) : '';
    // A cache hit is answered here, synchronously: the hottest path of all
    // needs no promise, no throttle and no mechanism.
    if (cache !== undefined && cache.mode === 'normal' && cache.lookup(cacheId, x.fingerprint)) {
      x.answer('OK', 'ok');
      if (this.metrics !== undefined) {
        // Answered within this call, in well under a microsecond: counted as
        // 0 s rather than paying two clock reads, the bulk of counting's cost.
        this.metrics.cacheHit();
        this.metrics.request('ok', 0, undefined, this.backend.routeOf?.(x.realm));
      }
      if (this.resultLog.isLevelEnabled('debug')) {
        this.logCached({ login, service: x.service, realm: x.realm, clientAddr: x.clientAddr }, 'auth success (cached)', 'debug');
      }
      return;
    }
    this.active++;
    this.run(x, login, cacheId)
      .catch((err: unknown) => {
        this.log.error({ err }, 'internal error while authenticating');
        this.metrics?.request('unavailable', 0, undefined, this.backend.routeOf?.(x.realm));
        x.answer('NO internal mechanism failure', 'unavailable');
      })
      .finally(() => this.active--);
  }

  private async run(x: Exchange, login: string, cacheId: string): Promise<void> {
    const started = performance.now();
    const startedAt = Date.now();
    const subject: LogSubject = { login, service: x.service, realm: x.realm, clientAddr: x.clientAddr };
    const cache = this.cache;

    // --state-cache: a miss here may be a hit on another host of the fleet.
    if (cache?.share !== undefined && cache.mode === 'normal' && (await cache.lookupShared(cacheId, x.fingerprint))) {
      this.logCached(subject, 'auth success (cached by the fleet)', 'debug');
      x.answer('OK', 'ok');
      if (this.metrics !== undefined) {
        this.metrics.cacheHit();
        this.metrics.request('ok', performance.now() - started, undefined, this.backend.routeOf?.(x.realm));
      }
      return;
    }
    if (cache?.mode === 'normal') this.metrics?.cacheMiss();

    const attempt: Attempt = { login, realm: x.realm, fp: x.fp };
    const addr = addressHost(x.clientAddr);
    if (addr !== undefined) attempt.addr = addr;
    const adm: Admission | undefined = this.throttle ? await this.throttle.admit(attempt) : undefined;
    if (adm?.kind === 'refuse') {
      const outcome: Outcome = {
        ok: false,
        kind: 'denied',
        text: this.backend.refusalFor?.(x.realm) ?? this.backend.refusalText,
        reason: `refused without asking the mechanism: ${adm.reason}`,
      };
      const ms = performance.now() - started;
      this.metrics?.request('refused', ms, undefined, this.backend.routeOf?.(x.realm));
      this.logOutcome(subject, outcome, ms, 'refused');
      await this.holds.wait(adm.delayMs);
      x.answer(outcome.text, outcome.kind);
      return;
    }

    const needsPassword = this.backend.needsPassword !== false;
    const req: AuthRequest = {
      login,
      password: needsPassword ? (x.password() ?? NO_PASSWORD) : NO_PASSWORD,
      service: x.service,
      realm: x.realm,
      deadline: performance.now() + this.timeoutMs,
      timeoutMs: this.timeoutMs,
      queue: { high: adm?.knownGood ?? false, fp: x.fp, shedAfterMs: adm?.shedAfterMs ?? 0 },
      holdFailure: adm?.holdFailure ?? false,
      holdSuccess: cache !== undefined,
      exchange: x,
    };
    if (x.clientAddr !== undefined) req.clientAddr = x.clientAddr;

    let outcome: Outcome;
    try {
      outcome =
        cache !== undefined
          ? await this.coalesced(`${cacheId}\0${x.fingerprint.toString('base64')}`, req)
          : await this.runBackend(req);
    } finally {
      req.password.fill(0);
    }

    let holdMs = 0;
    if (adm?.kind === 'run' && this.throttle !== undefined) {
      holdMs = await this.throttle.settle(attempt, adm, settledAs(outcome), startedAt);
      if (!outcome.ok && outcome.kind === 'shed')
        holdMs = Math.max(holdMs, this.throttle.cfg.shedDelayMs - (Date.now() - startedAt));
    }

    if (cache !== undefined) {
      if (outcome.ok) {
        cache.commit(cacheId, x.fingerprint);
      } else if (
        cache.mode === 'outage' &&
        (cache.lookup(cacheId, x.fingerprint) ||
          ((outcome.kind === 'unavailable' || outcome.kind === 'timeout') && (await cache.lookupShared(cacheId, x.fingerprint))))
      ) {
        if (outcome.kind === 'unavailable' || outcome.kind === 'timeout') {
          // Stale-on-error: the backend cannot decide, these credentials
          // succeeded within the TTL, so keep mail flowing. Unlike a plain
          // success, worth seeing without -V: the mechanism is down.
          const ms = performance.now() - started;
          // The client is told OK: counted as ok (and as an outage answer), not as the outage.
          if (this.metrics !== undefined) {
            this.metrics.cacheHit(true);
            this.metrics.request('ok', ms, undefined, outcome.route ?? this.backend.routeOf?.(x.realm));
          }
          this.logOutcome(subject, outcome, ms);
          this.logCached(subject, 'auth success (cached, mechanism unavailable)', 'info');
          if (!outcome.answered) x.answer('OK', 'ok');
          return;
        }
        if (outcome.kind === 'denied') cache.forget(cacheId); // the password was changed or revoked
      } else if (cache.mode === 'outage' && (outcome.kind === 'unavailable' || outcome.kind === 'timeout')) {
        this.metrics?.cacheMiss(); // an outage the cache could not cover
      }
    }

    const ms = performance.now() - started;
    this.metrics?.request(outcome.ok ? 'ok' : outcome.kind, ms, outcome.mech, outcome.route ?? this.backend.routeOf?.(x.realm));
    this.logOutcome(subject, outcome, ms);
    if (outcome.answered) return;
    await this.holds.wait(holdMs);
    x.answer(outcome.text, outcome.ok ? 'ok' : outcome.kind);
  }

  /**
   * With the cache on, identical credentials already being checked share that
   * check: a burst of the same login (a client reconnecting, a cold cache
   * under load) costs the mechanism one verification, not one per request,
   * exactly as if the first had finished and filled the cache. Only the
   * first request's own connection may have been answered by the mechanism.
   */
  private async coalesced(key: string, req: AuthRequest): Promise<Outcome> {
    const pending = this.inflight.get(key);
    if (pending !== undefined) {
      const shared = await pending;
      return { ...shared, answered: false };
    }
    const mine = this.runBackend(req).finally(() => this.inflight.delete(key));
    this.inflight.set(key, mine);
    return mine;
  }

  /** The backend under the deadline: one timer, one promise, no race. */
  private runBackend(req: AuthRequest): Promise<Outcome> {
    const check = (outcome: Outcome): Outcome => {
      if (outcome.text.startsWith('OK') || outcome.text.startsWith('NO')) return outcome;
      this.log.error({ mech: this.backend.name }, `mechanism returned unknown response: ${this.backend.name}`);
      return unavailable('NO internal mechanism failure');
    };
    // A mechanism that keeps the deadline itself is never aborted: it needs
    // no controller of its own (an AbortSignal is a costly object per request).
    if (this.backend.ownsDeadline) return this.backend.authenticate(req, NEVER_ABORTED).then(check);
    const ac = new AbortController();
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        ac.abort();
        // A refusal already decided and only waiting out a delay (PAM's fail
        // delay) is the answer: a timeout here would count as an outage.
        const cut = req.decided ?? timedOut(this.timeoutMs);
        // In a chain: under the mechanism that was being asked.
        resolve(req.asking !== undefined && cut.mech === undefined ? { ...cut, mech: req.asking } : cut);
      }, this.timeoutMs);
      this.backend.authenticate(req, ac.signal).then(
        (outcome) => {
          clearTimeout(timer);
          resolve(check(outcome));
        },
        (err: unknown) => {
          clearTimeout(timer);
          reject(err instanceof Error ? err : new Error(String(err)));
        },
      );
    });
  }

  private logCached(req: LogSubject, what: string, level: 'debug' | 'info'): void {
    if (!this.resultLog.isLevelEnabled(level)) return;
    // With --routes: the route the realm takes, as on every other result line.
    const route = this.backend.routeOf?.(req.realm);
    this.resultLog[level](
      {
        user: shown(req.login),
        service: shown(req.service),
        realm: shown(req.realm),
        ...(req.clientAddr !== undefined ? { remote: shown(req.clientAddr) } : {}),
        mech: this.backend.name,
        ...(route !== undefined ? { route } : {}),
        result: 'ok',
        cached: true,
      },
      `${what}: ${where(req)}${route !== undefined ? ` [route=${route}]` : ''}`,
    );
  }

  /** The one line per attempt. result overrides the outcome's kind in the log (a throttle refusal). */
  logOutcome(req: LogSubject, outcome: Outcome, durationMs: number, result?: 'refused'): void {
    // With chains and routes: the mechanism that answered, and the route taken.
    const mech = outcome.mech ?? this.backend.name;
    const route = outcome.route ?? this.backend.routeOf?.(req.realm);
    const at = `${where(req)} [mech=${mech}]${route !== undefined ? ` [route=${route}]` : ''}`;
    if (outcome.ok) {
      // As Cyrus: successes only with -V/-d (the MTA logs them anyway).
      if (!this.resultLog.isLevelEnabled('debug')) return;
      this.resultLog.debug(this.fields(req, 'ok', durationMs, mech, route), `auth success: ${at}`);
      return;
    }
    const level = outcome.kind === 'unavailable' || outcome.kind === 'timeout' ? 'warn' : 'info';
    const key = `${req.login}\0${req.realm}`;
    if (this.failureLines !== undefined && !this.failureLines.admit(key, at)) return;
    this.resultLog[level](
      { ...this.fields(req, result ?? outcome.kind, durationMs, mech, route), reason: outcome.reason },
      `auth failure: ${at} [reason=${outcome.reason}]`,
    );
  }

  private fields(
    req: LogSubject,
    result: string,
    durationMs: number,
    mech: string,
    route: string | undefined,
  ): Record<string, unknown> {
    return {
      user: shown(req.login),
      service: shown(req.service),
      realm: shown(req.realm),
      mech,
      ...(route !== undefined ? { route } : {}),
      ...(req.clientAddr !== undefined ? { remote: shown(req.clientAddr) } : {}),
      result,
      durationMs: Math.round(durationMs * 100) / 100,
    };
  }
}

function settledAs(o: Outcome): Settled {
  if (o.ok) return 'ok';
  return o.kind === 'denied' ? 'denied' : 'other';
}
