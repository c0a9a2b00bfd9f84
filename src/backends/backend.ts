// The one interface every mechanism implements (shadow.ts, pam.ts, ldap.ts,
// rimap/). A backend never throws to the server: it answers ok, denied or
// unavailable (or, under the throttle, shed), with the exact wire text Cyrus's
// mechanism would send.
import type { QueueOptions } from '../native/binding';
import type { Exchange } from '../server/exchange';

export interface AuthRequest {
  /** Login after the -r realm join, as Cyrus passes it to the mechanism. Latin-1: the client's bytes. */
  login: string;
  /** Raw password bytes for mechanisms that run in JavaScript; the caller wipes the buffer after the call. */
  password: Buffer;
  /** Latin-1, like login. */
  service: string;
  /** Latin-1, like login. */
  realm: string;
  /** Client address from the 5-field protocol ("a.b.c.d;port"), if sent. */
  clientAddr?: string;
  /** performance.now() at which the authenticator answers without us (work queued past it is wasted). */
  deadline?: number;
  /** --auth-timeout, for the reason a timed-out request logs. */
  timeoutMs?: number;
  /**
   * How the mechanism's work waits for a thread or a connection (the
   * throttle's decision): known-good work first, other work shed past a bound.
   */
  queue?: Omit<QueueOptions, 'timeoutMs'>;
  /** The throttle will hold a refusal back: a mechanism that answers the client itself must not answer a NO. */
  holdFailure?: boolean;
  /**
   * The credential cache records a success before it is sent (as Cyrus
   * commits before it answers): a mechanism that answers the client itself
   * must not send an OK either, or a quick next request could still meet the
   * entry it replaces.
   */
  holdSuccess?: boolean;
  /** The connection, for a mechanism that checks and answers natively (shadow). */
  exchange?: Exchange;
  /**
   * Set by a mechanism that has decided a refusal and is only waiting out a
   * delay before answering it (PAM's fail delay): when the deadline passes
   * meanwhile, this is the answer, not a timeout.
   */
  decided?: Outcome;
  /**
   * Set by a chain: the mechanism it is asking now, so that a request the
   * deadline cuts short is logged and counted under that mechanism.
   */
  asking?: string;
}

/** Milliseconds until req's deadline (never negative); undefined when it has none. */
export function timeLeftMs(req: AuthRequest): number | undefined {
  return req.deadline === undefined ? undefined : Math.max(0, req.deadline - performance.now());
}

/** How the mechanism's work should queue: never undefined, for the native calls. */
export function queueOf(req: AuthRequest): Required<QueueOptions> {
  return {
    timeoutMs: timeLeftMs(req) ?? -1,
    high: req.queue?.high ?? false,
    fp: req.queue?.fp ?? 0,
    shedAfterMs: req.queue?.shedAfterMs ?? 0,
  };
}

/**
 * denied: the credentials are wrong or the account may not log in.
 * unavailable: the backend could not decide (server down).
 * timeout: the backend did not decide by the request's deadline.
 * shed: the throttle dropped ordinary work waiting past its bound under load.
 */
export type FailureKind = 'denied' | 'unavailable' | 'timeout' | 'shed';

/**
 * Which mechanism of a chain answered, and by which route (--routes): for the
 * result line only. Unset when the daemon runs one mechanism (-a NAME).
 */
export interface Answerer {
  mech?: string;
  route?: string;
}

export type Outcome =
  /** answered: the mechanism already sent this answer to the client (native shadow). */
  | ({ ok: true; text: string; answered?: boolean } & Answerer)
  /**
   * text is the wire reply ("NO ..."); reason is for the log only.
   * unknownUser: the mechanism says the login does not exist there (shadow's
   * "Invalid username", ldap's "User not found", PAM_USER_UNKNOWN), the one
   * denial on which a chain asks its next mechanism.
   */
  | ({ ok: false; kind: FailureKind; text: string; reason: string; answered?: boolean; unknownUser?: boolean } & Answerer);

export const ok = (text = 'OK'): Outcome => ({ ok: true, text });
export const denied = (text: string, reason = replyReason(text)): Outcome => ({ ok: false, kind: 'denied', text, reason });
/** A denial because the login does not exist in this mechanism: a chain may go on to the next one. */
export const notFound = (text: string, reason = replyReason(text)): Outcome => ({
  ok: false,
  kind: 'denied',
  text,
  reason,
  unknownUser: true,
});
export const unavailable = (text: string, reason = replyReason(text)): Outcome => ({
  ok: false,
  kind: 'unavailable',
  text,
  reason,
});

/** The answer to a request whose backend missed its deadline. */
export const TIMEOUT_REPLY = 'NO [ALERT] authentication backend timed out';
export const timedOut = (timeoutMs: number): Outcome => ({
  ok: false,
  kind: 'timeout',
  text: TIMEOUT_REPLY,
  reason: `backend did not answer within ${timeoutMs} ms`,
});

/** Work shed under load: the mechanism's own wrong-password text, so the bytes never tell. */
export const shed = (text: string): Outcome => ({
  ok: false,
  kind: 'shed',
  text,
  reason: 'not checked: waited past the shedding bound while the daemon was overloaded',
});

/** Cyrus logs the text after "NO ", or "Unknown" for a bare "NO". */
export function replyReason(text: string): string {
  return text.length >= 4 ? text.slice(3) : 'Unknown';
}

/** A queue's rejection of work it dropped unrun (pool.h): ESHED or ETIMEDOUT, else undefined. */
export function droppedCode(err: unknown): 'ESHED' | 'ETIMEDOUT' | undefined {
  const code = (err as { code?: unknown } | null)?.code;
  return code === 'ESHED' || code === 'ETIMEDOUT' ? code : undefined;
}

/** A server as the metrics name it (its URI) and whether it answered the last time it was tried (true before any try). */
export interface ServerState {
  name: string;
  up: boolean;
  /** The mechanism it serves, when the daemon runs several (chains, routes). */
  mech?: string;
}

export interface Backend {
  /** Mechanism name as given to -a ("shadow", "pam", ...). */
  readonly name: string;
  /**
   * The mechanism's answer to a wrong password ("NO Incorrect password",
   * "NO PAM auth error", a bare "NO" for ldap): what the throttle answers
   * when it refuses or sheds an attempt, so its bytes never tell.
   */
  readonly refusalText: string;
  /**
   * The refusal text for a request with this realm, when it depends on the
   * realm (--routes: each route answers with its own mechanism's text).
   */
  refusalFor?(realm: string): string;
  /** The route a request with this realm takes (--routes), for the result line; undefined when unrouted or not routing. */
  routeOf?(realm: string): string | undefined;
  /**
   * The mechanism enforces the request's deadline itself, answering
   * timedOut() when it passes (the native shadow check): the authenticator
   * then sets no timer of its own.
   */
  readonly ownsDeadline?: boolean;
  /** False when the mechanism never needs the password in JavaScript (it reads it natively). */
  readonly needsPassword?: boolean;
  /** Must resolve (never reject); should honour signal by giving up early. */
  authenticate(req: AuthRequest, signal: AbortSignal): Promise<Outcome>;
  /**
   * The mechanism's servers (ldap, rimap) and whether each answered when
   * last tried; read by the metrics and the systemd status line only.
   */
  servers?(): ServerState[];
  /** Re-read configuration (SIGHUP); in-flight requests keep the old one. */
  reload?(): Promise<void>;
  close?(): Promise<void>;
}

export interface BackendOptions {
  /** The -O argument, if any. */
  mechOption: string | undefined;
  log: import('pino').Logger;
  /**
   * Part of a chain or a route (--routes, -a a,b): the outcome must come back
   * to JavaScript so the next mechanism can be asked, so a mechanism that
   * can answer the client natively (shadow) must not.
   */
  chained?: boolean;
}

export type BackendFactory = (opts: BackendOptions) => Promise<Backend>;
