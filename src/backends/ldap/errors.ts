// Failure classes of the LDAP mechanism. The split that matters: a server
// that could not be reached or did not answer (try the next server, log the
// request as "unavailable") versus an LDAP result code, which is the
// directory's answer (ldapts's ResultCodeError subclasses, used as they are).
import { BusyError, ResultCodeError, SASL_MECHANISMS, UnavailableError } from 'ldapts';

export type LdapFailureCode =
  /** TCP connect refused, unreachable, no such ldapi socket. */
  | 'LDAP_CONNECT'
  /** TLS handshake or certificate verification failed. */
  | 'LDAP_TLS'
  /** No answer within ldap_timeout. */
  | 'LDAP_TIMEOUT'
  /** The connection closed or broke under an operation, or before the next one (it is never reopened). */
  | 'LDAP_CONNECTION_LOST'
  /** The server sent more than MAX_RESPONSE_BYTES on one connection. */
  | 'LDAP_RESPONSE_TOO_LARGE'
  /** The server answered busy or unavailable. */
  | 'LDAP_SERVER_BUSY'
  /** The request's deadline passed or the daemon is stopping. */
  | 'LDAP_ABORTED';

export class LdapConnectivityError extends Error {
  constructor(
    readonly code: LdapFailureCode,
    message: string,
  ) {
    super(message);
    this.name = 'LdapConnectivityError';
  }
}

const TLS_CODE =
  /^(ERR_TLS_|ERR_SSL_|CERT_|DEPTH_ZERO_SELF_SIGNED_CERT|SELF_SIGNED_CERT_IN_CHAIN|UNABLE_TO_|HOSTNAME_MISMATCH|ERR_OSSL_)/;
const CONNECT_CODE = new Set([
  'ECONNREFUSED',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'ENOENT',
  'EACCES',
  'ENOTFOUND',
  'EAI_AGAIN',
  'EADDRNOTAVAIL',
]);

/**
 * Sort an error thrown by an ldapts call: a result code from the directory
 * comes back as it is; anything else (sockets, TLS, timeouts) becomes an
 * LdapConnectivityError with a stable code.
 */
export function classify(err: unknown): ResultCodeError | LdapConnectivityError {
  if (err instanceof LdapConnectivityError) return err;
  if (err instanceof BusyError || err instanceof UnavailableError) {
    return new LdapConnectivityError('LDAP_SERVER_BUSY', `server answered ${err.name} (${err.code})`);
  }
  if (err instanceof ResultCodeError) return err;
  const e = err as NodeJS.ErrnoException;
  const code = typeof e?.code === 'string' ? e.code : '';
  const message = e instanceof Error ? e.message : String(err);
  if (TLS_CODE.test(code) || /certificate|ssl|tls/i.test(message)) {
    return new LdapConnectivityError('LDAP_TLS', `TLS: ${message}${code ? ` (${code})` : ''}`);
  }
  if (CONNECT_CODE.has(code)) return new LdapConnectivityError('LDAP_CONNECT', `${message}`);
  if (/timed? ?out/i.test(message) || code === 'ETIMEDOUT') return new LdapConnectivityError('LDAP_TIMEOUT', message);
  return new LdapConnectivityError('LDAP_CONNECTION_LOST', message.split('\n')[0] ?? message);
}

/** A short description of a directory result code for logs: "InvalidCredentialsError (49)". */
export function describeResult(err: ResultCodeError): string {
  return `${err.name} (${err.code})`;
}

/**
 * ldapts's Client.bind(name, password) makes a SASL bind, with the password
 * as the SASL credentials, when name is exactly one of its mechanism names.
 * As an EXTERNAL bind that "password" is an authorization identity, which
 * slapd grants over ldapi:// or with a client certificate whenever it names
 * the connection's own identity: a public string. Compared without regard to
 * case or surrounding blanks, more broadly than ldapts does, so that a later
 * ldapts comparing more loosely cannot reopen the hole.
 */
export function isSaslMechanismName(name: string): boolean {
  const n = name.trim().toUpperCase();
  return SASL_MECHANISMS.some((m) => m.toUpperCase() === n);
}

/** A bind refused before it reached ldapts because its DN is a SASL mechanism name. */
export class SaslNameBindError extends Error {
  readonly code = 'LDAP_SASL_NAME';

  constructor(readonly dn: string) {
    super(
      `the bind DN '${dn}' is a SASL mechanism name; refused before any bind, as the LDAP library would make a SASL bind of it`,
    );
    this.name = 'SaslNameBindError';
  }
}
