// pam: Linux-PAM through our own N-API addon (src/native/pam.cc), answering
// exactly as Cyrus auth_pam.c: the request's service field is the PAM service
// name, verbatim; pam_authenticate then pam_acct_mgmt, both PAM_SILENT.
//
// libpam's fail delay is handed to us by a PAM_FAIL_DELAY hook instead of
// being slept in a thread-pool thread (where four wrong passwords would stall
// every other login). It is applied here with a timer, on every failure, and
// counted from the start of the attempt, so an unknown user (which PAM
// rejects in milliseconds) answers no sooner than a wrong password does.
import { randomInt } from 'node:crypto';
import { native, type PamResult } from '../native/binding';
import {
  type Backend,
  type BackendFactory,
  type BackendOptions,
  denied,
  droppedCode,
  notFound,
  ok,
  type Outcome,
  queueOf,
  shed,
  timedOut,
  unavailable,
} from './backend';

/** Linux-PAM return codes (security/_pam_types.h) that the backend tells apart. */
export const PamCode = {
  SUCCESS: 0,
  PERM_DENIED: 6,
  AUTH_ERR: 7,
  CRED_INSUFFICIENT: 8,
  AUTHINFO_UNAVAIL: 9,
  USER_UNKNOWN: 10,
  MAXTRIES: 11,
  NEW_AUTHTOK_REQD: 12,
  ACCT_EXPIRED: 13,
  CRED_EXPIRED: 16,
  CONV_ERR: 19,
  AUTHTOK_EXPIRED: 27,
} as const;

/**
 * Codes that mean "these credentials may not log in". Anything else (a module
 * that could not reach its server, a broken stack) is "could not decide":
 * the same NO on the wire, but logged as unavailable.
 */
const DENIED_CODES: ReadonlySet<number> = new Set([
  PamCode.PERM_DENIED,
  PamCode.AUTH_ERR,
  PamCode.CRED_INSUFFICIENT,
  PamCode.USER_UNKNOWN,
  PamCode.MAXTRIES,
  PamCode.NEW_AUTHTOK_REQD,
  PamCode.ACCT_EXPIRED,
  PamCode.CRED_EXPIRED,
  PamCode.AUTHTOK_EXPIRED,
]);

export const REPLY_START_ERROR = 'NO PAM start error';
export const REPLY_AUTH_ERROR = 'NO PAM auth error';
export const REPLY_ACCT_ERROR = 'NO PAM acct error';

/** pam_unix's delay; used when PAM asked for none (pam_deny, pam_start errors). */
export const FLOOR_FAIL_DELAY_US = 2_000_000;

/**
 * libpam's randomisation of a requested delay: base * (1 + mean of three
 * uniform draws - 1/2), i.e. 0.5x..1.5x, bell-shaped. Used for the floor so a
 * stack without a delay is not told apart by a fixed answer time.
 */
export function randomizeDelayUs(baseUs: number): number {
  let sum = 0;
  for (let i = 0; i < 3; i++) sum += randomInt(1_000_000) / 1_000_000;
  return Math.round(baseUs * (1 + (sum / 3 - 0.5)));
}

/** The delay a failed attempt owes, in microseconds, counted from its start. */
export function failDelayUs(result: Pick<PamResult, 'delayUs'> | undefined): number {
  const fromPam = result?.delayUs ?? 0;
  return fromPam > 0 ? fromPam : randomizeDelayUs(FLOOR_FAIL_DELAY_US);
}

/** The wire reply for a PAM result, as Cyrus maps the failing call. */
export function toOutcome(r: PamResult): Outcome {
  if (r.ok) return ok();
  const decided = DENIED_CODES.has(r.code);
  switch (r.stage) {
    case 'pam_start':
      return unavailable(REPLY_START_ERROR);
    case 'pam_authenticate':
      // PAM_USER_UNKNOWN only where the stack passes it up: Debian's
      // common-auth turns pam_unix's into pam_deny's PAM_AUTH_ERR.
      if (r.code === PamCode.USER_UNKNOWN) return notFound(REPLY_AUTH_ERROR);
      return decided ? denied(REPLY_AUTH_ERROR) : unavailable(REPLY_AUTH_ERROR);
    case 'pam_acct_mgmt':
      return decided ? denied(REPLY_ACCT_ERROR) : unavailable(REPLY_ACCT_ERROR);
    case 'done':
      // ok is false only when a call failed; 'done' with !ok cannot happen.
      return unavailable('NO internal mechanism failure', `pam: inconsistent result code ${r.code}`);
  }
}

/** Timers holding failed answers back; close() releases them. */
class FailDelays {
  private readonly pending = new Map<NodeJS.Timeout, () => void>();

  /** Resolves after ms, or at once when signal aborts or close() runs. */
  wait(ms: number, signal: AbortSignal): Promise<void> {
    if (ms <= 0 || signal.aborted) return Promise.resolve();
    return new Promise<void>((resolve) => {
      const finish = (): void => {
        clearTimeout(timer);
        this.pending.delete(timer);
        signal.removeEventListener('abort', finish);
        resolve();
      };
      const timer = setTimeout(finish, ms);
      this.pending.set(timer, finish);
      signal.addEventListener('abort', finish, { once: true });
    });
  }

  get size(): number {
    return this.pending.size;
  }

  releaseAll(): void {
    for (const finish of [...this.pending.values()]) finish();
  }
}

export interface PamBackend extends Backend {
  /** Failed answers currently waiting out their fail delay. */
  readonly delayedCount: number;
}

/** The backend itself; createPamBackend is its registry entry. */
export function createPam({ log }: BackendOptions): PamBackend {
  const delays = new FailDelays();

  const backend: PamBackend = {
    name: 'pam',
    refusalText: REPLY_AUTH_ERROR,
    get delayedCount() {
      return delays.size;
    },

    async authenticate(req, signal) {
      const started = performance.now();
      let result: PamResult | undefined;
      let outcome: Outcome;
      try {
        const q = queueOf(req);
        result = await native.pamAuthenticate({
          service: req.service,
          user: req.login,
          password: req.password,
          ...(req.clientAddr !== undefined ? { rhost: req.clientAddr } : {}),
          ...q,
        });
        outcome = toOutcome(result);
      } catch (err) {
        const dropped = droppedCode(err);
        // Shed: the throttle answers it with our wrong-password text, after its own delay.
        if (dropped === 'ESHED') return shed(REPLY_AUTH_ERROR);
        if (dropped === 'ETIMEDOUT') return timedOut(req.timeoutMs ?? 0);
        outcome = unavailable('NO internal mechanism failure', `pam: ${(err as Error).message}`);
      }
      if (outcome.ok) return outcome;
      // Decided; only the fail delay remains. If the deadline passes during
      // it, this refusal is the answer, never a timeout (which would count as
      // an outage and could let --cache-mode outage serve an old password).
      if (outcome.kind === 'denied') req.decided = outcome;

      const delayMs = failDelayUs(result) / 1000;
      if (result !== undefined) {
        // Cyrus logs "DEBUG: auth_pam: pam_authenticate failed: <pam_strerror>".
        log.debug(
          {
            user: req.login,
            service: req.service,
            stage: result.stage,
            pamCode: result.code,
            pamError: result.message,
            failDelayMs: Math.round(delayMs),
          },
          `auth_pam: ${result.stage} failed: ${result.message}`,
        );
      }
      await delays.wait(delayMs - (performance.now() - started), signal);
      return outcome;
    },

    async close() {
      // Shutting down: answer the held-back failures now rather than keep
      // the process alive for their delays.
      delays.releaseAll();
    },
  };
  return backend;
}

export const createPamBackend: BackendFactory = async (opts) => createPam(opts);
