// Failures of one conversation with one IMAP server, with stable codes for
// logs and tests. The backend maps each code to Cyrus's wire text.

export type RimapErrorCode =
  /** Name resolution failed (getaddrinfo). */
  | 'RIMAP_DNS'
  /** TCP connect failed: refused, unreachable, reset. */
  | 'RIMAP_CONNECT'
  /** TCP connect did not finish within connect_timeout. */
  | 'RIMAP_CONNECT_TIMEOUT'
  /** TLS handshake failed, including certificate verification. */
  | 'RIMAP_TLS'
  /** The server said nothing within timeout. */
  | 'RIMAP_TIMEOUT'
  /** The server closed the connection before answering. */
  | 'RIMAP_CLOSED'
  /** Socket error after the connection was up. */
  | 'RIMAP_SOCKET'
  /** The greeting was * BYE or * NO. */
  | 'RIMAP_GREETING_REFUSED'
  /** STARTTLS was answered NO or BAD. */
  | 'RIMAP_STARTTLS_REFUSED'
  /** The server advertises LOGINDISABLED on a connection without TLS. */
  | 'RIMAP_LOGINDISABLED'
  /** A response that makes no sense at this point of the dialogue. */
  | 'RIMAP_PROTOCOL'
  /** A response longer than any IMAP server sends here. */
  | 'RIMAP_TOO_LONG'
  /** The request deadline passed (AbortSignal) or the backend is closing. */
  | 'RIMAP_ABORTED';

export class RimapError extends Error {
  constructor(
    readonly code: RimapErrorCode,
    message: string,
    /** The underlying error code (ECONNREFUSED, UNABLE_TO_VERIFY_LEAF_SIGNATURE...), if any. */
    readonly sysCode?: string,
  ) {
    super(message);
    this.name = 'RimapError';
  }
}
