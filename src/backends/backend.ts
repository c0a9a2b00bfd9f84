// The one interface every mechanism implements (shadow.ts, pam.ts, ldap.ts,
// rimap.ts). A backend never throws to the server: it answers ok, denied or
// unavailable, with the exact wire text Cyrus's mechanism would send.

export interface AuthRequest {
  /** Login after the -r realm join, as Cyrus passes it to the mechanism. */
  login: string;
  /** Raw password bytes; the caller wipes the buffer after the call. */
  password: Buffer;
  service: string;
  realm: string;
  /** Client address from the 5-field protocol ("a.b.c.d;port"), if sent. */
  clientAddr?: string;
  /** performance.now() at which the authenticator answers without us (work queued past it is wasted). */
  deadline?: number;
}

/** Milliseconds until req's deadline (never negative); undefined when it has none. */
export function timeLeftMs(req: AuthRequest): number | undefined {
  return req.deadline === undefined ? undefined : Math.max(0, req.deadline - performance.now());
}

export type Outcome =
  | { ok: true; text: string }
  /**
   * denied: the credentials are wrong or the account may not log in.
   * unavailable: the backend could not decide (server down, timeout).
   * text is the wire reply ("NO ..."); reason is for the log only.
   */
  | { ok: false; kind: 'denied' | 'unavailable'; text: string; reason: string };

export const ok = (text = 'OK'): Outcome => ({ ok: true, text });
export const denied = (text: string, reason = replyReason(text)): Outcome => ({ ok: false, kind: 'denied', text, reason });
export const unavailable = (text: string, reason = replyReason(text)): Outcome => ({
  ok: false,
  kind: 'unavailable',
  text,
  reason,
});

/** Cyrus logs the text after "NO ", or "Unknown" for a bare "NO". */
export function replyReason(text: string): string {
  return text.length >= 4 ? text.slice(3) : 'Unknown';
}

export interface Backend {
  /** Mechanism name as given to -a ("shadow", "pam", ...). */
  readonly name: string;
  /** Must resolve (never reject); should honour signal by giving up early. */
  authenticate(req: AuthRequest, signal: AbortSignal): Promise<Outcome>;
  /** Re-read configuration (SIGHUP); in-flight requests keep the old one. */
  reload?(): Promise<void>;
  close?(): Promise<void>;
}

export interface BackendOptions {
  /** The -O argument, if any. */
  mechOption: string | undefined;
  log: import('pino').Logger;
}

export type BackendFactory = (opts: BackendOptions) => Promise<Backend>;
