// The authenticator: what Cyrus's do_request/do_auth do between reading a
// request and writing the reply. Validates the fields, applies the -r realm
// join, runs the backend under a deadline, logs one line per attempt and
// returns the wire text. Never throws.
import type pino from 'pino';
import type { RawRequest } from '../protocol/decoder';
import type { AuthRequest, Backend, Outcome } from '../backends/backend';
import { unavailable } from '../backends/backend';

export interface AuthenticatorOptions {
  backend: Backend;
  /** -r: login becomes login@realm when the realm is non-empty. */
  concatRealm: boolean;
  /** A backend that has not answered by then is answered NO. */
  timeoutMs: number;
  log: pino.Logger;
}

export const TIMEOUT_REPLY = 'NO [ALERT] authentication backend timed out';

export class Authenticator {
  private backend: Backend;
  private readonly concatRealm: boolean;
  private readonly timeoutMs: number;
  private readonly log: pino.Logger;

  constructor(opts: AuthenticatorOptions) {
    this.backend = opts.backend;
    this.concatRealm = opts.concatRealm;
    this.timeoutMs = opts.timeoutMs;
    this.log = opts.log;
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

      const started = process.hrtime.bigint();
      const outcome = await this.runBackend(req);
      const durationMs = Number(process.hrtime.bigint() - started) / 1e6;
      this.logOutcome(req, outcome, durationMs);
      return outcome.text;
    } catch (err) {
      this.log.error({ err }, 'internal error while authenticating');
      return 'NO internal mechanism failure';
    } finally {
      raw.password.fill(0);
    }
  }

  private async runBackend(req: AuthRequest): Promise<Outcome> {
    const ac = new AbortController();
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise<Outcome>((resolve) => {
      timer = setTimeout(() => {
        ac.abort();
        resolve(unavailable(TIMEOUT_REPLY, `backend did not answer within ${this.timeoutMs} ms`));
      }, this.timeoutMs);
    });
    try {
      const outcome = await Promise.race([this.backend.authenticate(req, ac.signal), deadline]);
      if (!outcome.text.startsWith('OK') && !outcome.text.startsWith('NO')) {
        this.log.error({ mech: this.backend.name }, `mechanism returned unknown response: ${this.backend.name}`);
        return unavailable('NO internal mechanism failure');
      }
      return outcome;
    } finally {
      clearTimeout(timer);
    }
  }

  private logOutcome(req: AuthRequest, outcome: Outcome, durationMs: number): void {
    const fields = {
      user: req.login,
      service: req.service,
      realm: req.realm,
      mech: this.backend.name,
      ...(req.clientAddr !== undefined ? { remote: req.clientAddr } : {}),
      result: outcome.ok ? 'ok' : outcome.kind,
      durationMs: Math.round(durationMs * 100) / 100,
    };
    const where = `[user=${req.login}] [service=${req.service}] [realm=${req.realm}]${
      req.clientAddr !== undefined ? ` [remote=${req.clientAddr}]` : ''
    } [mech=${this.backend.name}]`;
    if (outcome.ok) {
      this.log.info(fields, `auth success: ${where}`);
    } else {
      const level = outcome.kind === 'unavailable' ? 'warn' : 'info';
      this.log[level]({ ...fields, reason: outcome.reason }, `auth failure: ${where} [reason=${outcome.reason}]`);
    }
  }
}
