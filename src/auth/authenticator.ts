// The authenticator: what Cyrus's do_request/do_auth do between reading a
// request and writing the reply. Validates the fields, applies the -r realm
// join, runs the backend under a deadline, logs one line per attempt and
// returns the wire text. Never throws.
import type pino from 'pino';
import type { RawRequest } from '../protocol/decoder';
import type { AuthRequest, Backend, Outcome } from '../backends/backend';
import { unavailable } from '../backends/backend';
import type { CredentialCache } from './cache';

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
}

/** What the result line says about a request. */
export type LogSubject = Pick<AuthRequest, 'login' | 'service' | 'realm' | 'clientAddr'>;

/** Cyrus's "[user=...] [service=...] [realm=...]", with master's "[remote=...]" when the client sent one. */
function where(req: LogSubject): string {
  const remote = req.clientAddr !== undefined ? ` [remote=${req.clientAddr}]` : '';
  return `[user=${req.login}] [service=${req.service}] [realm=${req.realm}]${remote}`;
}

export const TIMEOUT_REPLY = 'NO [ALERT] authentication backend timed out';

export class Authenticator {
  private backend: Backend;
  private readonly concatRealm: boolean;
  private readonly timeoutMs: number;
  private readonly log: pino.Logger;
  private readonly resultLog: pino.Logger;
  private readonly cache: CredentialCache | undefined;
  private readonly inflight = new Map<string, Promise<Outcome>>();

  constructor(opts: AuthenticatorOptions) {
    this.cache = opts.cache;
    this.backend = opts.backend;
    this.concatRealm = opts.concatRealm;
    this.timeoutMs = opts.timeoutMs;
    this.log = opts.log;
    this.resultLog = opts.resultLog ?? opts.log;
  }

  get mech(): string {
    return this.backend.name;
  }

  async handle(raw: RawRequest): Promise<string> {
    try {
      if (raw.login.length === 0) {
        this.log.error('NULL login received');
        return 'NO NULL login received';
      }
      if (raw.password.length === 0) {
        this.log.error('NULL password received');
        return 'NO NULL password received';
      }
      const realm = raw.realm.toString('utf8');
      const login = raw.login.toString('utf8');
      const req: AuthRequest = {
        login: this.concatRealm && realm.length > 0 ? `${login}@${realm}` : login,
        password: raw.password,
        service: raw.service.toString('utf8'),
        realm,
      };
      if (raw.clientAddr !== undefined && raw.clientAddr.length > 0) req.clientAddr = raw.clientAddr.toString('utf8');

      const cache = this.cache;
      if (cache !== undefined && cache.mode === 'normal' && cache.lookup(req.login, realm, req.service, req.password)) {
        this.logCached(req, 'auth success (cached)', 'debug');
        return 'OK';
      }

      const started = process.hrtime.bigint();
      const outcome =
        cache !== undefined
          ? await this.coalesced(cache.fingerprint(req.login, realm, req.service, req.password), req)
          : await this.runBackend(req);
      const durationMs = Number(process.hrtime.bigint() - started) / 1e6;
      this.logOutcome(req, outcome, durationMs);
      if (cache !== undefined) {
        if (outcome.ok) {
          cache.commit(req.login, realm, req.service, req.password);
        } else if (cache.mode === 'outage' && cache.lookup(req.login, realm, req.service, req.password)) {
          if (outcome.kind === 'unavailable') {
            // Stale-on-error: the backend cannot decide, these credentials
            // succeeded within the TTL, so keep mail flowing.
            // Unlike a plain success, worth seeing without -V: the mechanism is down.
            this.logCached(req, 'auth success (cached, mechanism unavailable)', 'info');
            return 'OK';
          }
          cache.forget(req.login, realm, req.service); // the password was changed or revoked
        }
      }
      return outcome.text;
    } catch (err) {
      this.log.error({ err }, 'internal error while authenticating');
      return 'NO internal mechanism failure';
    } finally {
      raw.password.fill(0);
    }
  }

  /**
   * With the cache on, identical credentials already being checked share that
   * check: a burst of the same login (a client reconnecting, a cold cache
   * under load) costs the mechanism one verification, not one per request,
   * exactly as if the first had finished and filled the cache.
   */
  private coalesced(key: string, req: AuthRequest): Promise<Outcome> {
    let pending = this.inflight.get(key);
    if (pending === undefined) {
      pending = this.runBackend(req).finally(() => this.inflight.delete(key));
      this.inflight.set(key, pending);
    }
    return pending;
  }

  /** The backend under the deadline: one timer, one promise, no race. */
  private runBackend(req: AuthRequest): Promise<Outcome> {
    req.deadline = performance.now() + this.timeoutMs;
    return new Promise((resolve, reject) => {
      const ac = new AbortController();
      const timer = setTimeout(() => {
        ac.abort();
        resolve(this.timedOut());
      }, this.timeoutMs);
      this.backend.authenticate(req, ac.signal).then(
        (outcome) => {
          clearTimeout(timer);
          if (outcome.text.startsWith('OK') || outcome.text.startsWith('NO')) {
            resolve(outcome);
            return;
          }
          this.log.error({ mech: this.backend.name }, `mechanism returned unknown response: ${this.backend.name}`);
          resolve(unavailable('NO internal mechanism failure'));
        },
        (err: unknown) => {
          clearTimeout(timer);
          reject(err);
        },
      );
    });
  }

  /** The answer to a request whose backend missed the deadline. */
  timedOut(): Outcome {
    return unavailable(TIMEOUT_REPLY, `backend did not answer within ${this.timeoutMs} ms`);
  }

  private logCached(req: AuthRequest, what: string, level: 'debug' | 'info'): void {
    this.resultLog[level](
      {
        user: req.login,
        service: req.service,
        realm: req.realm,
        ...(req.clientAddr !== undefined ? { remote: req.clientAddr } : {}),
        mech: this.backend.name,
        result: 'ok',
        cached: true,
      },
      `${what}: ${where(req)}`,
    );
  }

  /** The one line per attempt (also for attempts answered by the native listener). */
  logOutcome(req: LogSubject, outcome: Outcome, durationMs: number): void {
    const fields = {
      user: req.login,
      service: req.service,
      realm: req.realm,
      mech: this.backend.name,
      ...(req.clientAddr !== undefined ? { remote: req.clientAddr } : {}),
      result: outcome.ok ? 'ok' : outcome.kind,
      durationMs: Math.round(durationMs * 100) / 100,
    };
    const at = `${where(req)} [mech=${this.backend.name}]`;
    if (outcome.ok) {
      // As Cyrus: successes only with -V/-d (the MTA logs them anyway).
      this.resultLog.debug(fields, `auth success: ${at}`);
    } else {
      const level = outcome.kind === 'unavailable' ? 'warn' : 'info';
      this.resultLog[level]({ ...fields, reason: outcome.reason }, `auth failure: ${at} [reason=${outcome.reason}]`);
    }
  }
}
