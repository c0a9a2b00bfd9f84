// One short-lived LDAP connection, used by one authentication and closed
// after it. It wraps an ldapts Client so that (a) operations run strictly one
// after another (ldapts hangs when a fresh Client is used concurrently, and
// pipelined binds are flaky), (b) every call has a hard timeout and honours
// the request's AbortSignal even where ldapts itself would wait forever (TLS
// handshake after StartTLS, a connect whose socket was destroyed), (c)
// closing really destroys the sockets, (d) it is one socket: ldapts would
// silently reopen a lost connection on the next operation, unbound, and after
// StartTLS in plain text, so a loss fails every later operation instead and a
// second socket is refused, and (e) a server cannot make it buffer without
// limit (ldapts concatenates every chunk until a message is complete).
import net from 'node:net';
import tls from 'node:tls';
import { Client, type Filter, type SearchOptions, type SearchResult } from 'ldapts';
import type { LdapServer, TlsSettings } from './config';
import { classify, isSaslMechanismName, LdapConnectivityError, SaslNameBindError } from './errors';

export interface ConnectionOptions {
  server: LdapServer;
  tls: TlsSettings;
  /** ldap_timeout: connect, TLS handshake and each operation. */
  timeoutMs: number;
  /** TCP/TLS connect; defaults to timeoutMs. */
  connectTimeoutMs?: number;
  signal: AbortSignal;
}

export interface SearchParams {
  base: string;
  scope: NonNullable<SearchOptions['scope']>;
  filter: Filter;
  derefAliases: NonNullable<SearchOptions['derefAliases']>;
  sizeLimit: number;
  timeLimit: number;
  attributes: string[];
  explicitBufferAttributes?: string[];
}

/**
 * How a connection is protected: 'tls' (ldaps://, or ldap:// with
 * ldap_start_tls), 'local' (ldapi://, a UNIX socket nobody on the network
 * sees) or 'plain'.
 */
export type Transport = 'tls' | 'local' | 'plain';

export function transportOf(server: LdapServer, tlsSettings: TlsSettings): Transport {
  if (server.scheme === 'ldapi') return 'local';
  if (server.scheme === 'ldaps' || tlsSettings.startTls) return 'tls';
  return 'plain';
}

/**
 * The most the server may send on one connection. An authentication reads a
 * bind answer or two, one search (two entries at most, a few attributes) and
 * a compare: a few KiB. More is a server that will not stop.
 */
export const MAX_RESPONSE_BYTES = 1024 * 1024;

function urlHost(host: string): string {
  return host.includes(':') ? `[${host}]` : host;
}

export class LdapConnection {
  readonly server: LdapServer;
  readonly transport: Transport;
  private readonly client: Client;
  private readonly timeoutMs: number;
  private readonly closer = new AbortController();
  private readonly sockets = new Set<net.Socket>();
  private readonly tlsOptions: tls.ConnectionOptions;
  private readonly startTls: boolean;
  private readonly onAbort = (): void => this.close();
  private readonly signal: AbortSignal;
  private busy = false;
  /** A socket was opened: ldapts must never open another. */
  private opened = false;
  private received = 0;
  /** Why the connection cannot be used any more, when that is not a plain close(). */
  private failure: LdapConnectivityError | undefined;

  constructor(opts: ConnectionOptions) {
    this.server = opts.server;
    this.transport = transportOf(opts.server, opts.tls);
    this.signal = opts.signal;
    this.timeoutMs = opts.timeoutMs;
    const { server } = opts;
    this.tlsOptions = {
      rejectUnauthorized: opts.tls.checkPeer !== false,
      ...(opts.tls.secureContext !== undefined ? { secureContext: opts.tls.secureContext } : {}),
      host: server.host,
      // SNI takes host names only.
      ...(net.isIP(server.host) === 0 ? { servername: server.host } : {}),
    };
    this.startTls = opts.tls.startTls && server.scheme === 'ldap';
    const openOnce = (): void => {
      if (this.opened) throw this.lost();
      this.opened = true;
    };
    const track = <S extends net.Socket>(s: S, ready: 'connect' | 'secureConnect'): S => {
      this.sockets.add(s);
      // Registered before ldapts's own 'connect' listener, which starts its
      // reading: counting starts with it, and adds no reader before it.
      s.once(ready, () => s.on('data', (chunk: Buffer) => this.count(chunk.length)));
      s.once('close', () => {
        this.sockets.delete(s);
        if (!this.closed) this.onLost();
      });
      return s;
    };
    const createConnection = ((port: number, host: string) => {
      openOnce();
      return track(server.socketPath !== undefined ? net.connect(server.socketPath) : net.connect(port, host), 'connect');
    }) as typeof net.connect;
    // Used for ldaps:// and for the StartTLS upgrade; our options win over ldapts's.
    const createSecureConnection = ((...args: unknown[]) => {
      const given = (typeof args[0] === 'object' && args[0] !== null ? args[0] : (args[2] ?? {})) as tls.ConnectionOptions;
      // StartTLS wraps the socket already open; anything else is a new connection.
      if (given.socket === undefined) openOnce();
      const options: tls.ConnectionOptions =
        typeof args[0] === 'number'
          ? { ...given, port: args[0], host: args[1] as string, ...this.tlsOptions }
          : { ...given, ...this.tlsOptions };
      return track(tls.connect(options), 'secureConnect');
    }) as typeof tls.connect;
    const url =
      server.scheme === 'ldaps'
        ? `ldaps://${urlHost(server.host)}:${server.port}`
        : `ldap://${urlHost(server.host)}:${server.port || 389}`;
    this.client = new Client({
      url,
      timeout: opts.timeoutMs,
      connectTimeout: opts.connectTimeoutMs ?? opts.timeoutMs,
      createConnection,
      createSecureConnection,
    });
    if (opts.signal.aborted) this.close();
    else opts.signal.addEventListener('abort', this.onAbort, { once: true });
  }

  get closed(): boolean {
    return this.closer.signal.aborted;
  }

  /** Sockets not yet closed (a StartTLS connection has two: TCP and TLS on it). */
  get openSockets(): number {
    return this.sockets.size;
  }

  /**
   * Run one ldapts call with our own deadline and abort on top of ldapts's
   * timeouts. Errors come back classified (see errors.ts).
   */
  private async run<T>(what: string, call: () => Promise<T>, timeoutMs = this.timeoutMs): Promise<T> {
    if (this.failure !== undefined) throw this.failure;
    if (this.closed) throw new LdapConnectivityError('LDAP_ABORTED', `${what}: connection closed`);
    if (this.busy) throw new Error(`${what}: LdapConnection used concurrently`);
    this.busy = true;
    let timer: NodeJS.Timeout | undefined;
    let onClose: (() => void) | undefined;
    try {
      const guard = new Promise<never>((_, reject) => {
        timer = setTimeout(() => {
          reject(new LdapConnectivityError('LDAP_TIMEOUT', `${what}: no answer from ${this.server.uri} within ${timeoutMs} ms`));
          this.close();
        }, timeoutMs);
        onClose = () => reject(this.failure ?? new LdapConnectivityError('LDAP_ABORTED', `${what}: aborted`));
        this.closer.signal.addEventListener('abort', onClose, { once: true });
      });
      return await Promise.race([call(), guard]);
    } catch (err) {
      throw classify(err);
    } finally {
      this.busy = false;
      clearTimeout(timer);
      if (onClose) this.closer.signal.removeEventListener('abort', onClose);
    }
  }

  /** Upgrade with StartTLS if ldap_start_tls asks for it on this server. */
  async secure(timeoutMs?: number): Promise<void> {
    if (!this.startTls) return;
    await this.run('StartTLS', () => this.client.startTLS({ ...this.tlsOptions }), timeoutMs);
  }

  /**
   * Simple bind; an empty DN and password is an anonymous bind. Every bind of
   * the mechanism comes through here, so this is where a DN that ldapts would
   * turn into a SASL bind is stopped (SaslNameBindError).
   */
  async bind(dn: string, password: string, timeoutMs?: number): Promise<void> {
    if (isSaslMechanismName(dn)) throw new SaslNameBindError(dn);
    await this.run('bind', () => this.client.bind(dn, password), timeoutMs);
  }

  async search(p: SearchParams): Promise<SearchResult> {
    return this.run('search', () =>
      this.client.search(p.base, {
        scope: p.scope,
        filter: p.filter,
        derefAliases: p.derefAliases,
        sizeLimit: p.sizeLimit,
        timeLimit: p.timeLimit,
        attributes: p.attributes,
        ...(p.explicitBufferAttributes !== undefined ? { explicitBufferAttributes: p.explicitBufferAttributes } : {}),
      }),
    );
  }

  async compare(dn: string, attribute: string, value: string): Promise<boolean> {
    return this.run('compare', () => this.client.compare(dn, attribute, value));
  }

  private lost(): LdapConnectivityError {
    return new LdapConnectivityError(
      'LDAP_CONNECTION_LOST',
      `${this.server.uri}: the connection was lost; it is not reopened (a new one would be unbound, and after StartTLS unencrypted)`,
    );
  }

  /** A socket closed under us: no later operation may run, and one in progress must not wait for an answer. */
  private onLost(): void {
    this.failure ??= this.lost();
    // After ldapts's own reaction to the close (it rejects what it can) and
    // any socket error it reports, so those keep their more precise reason.
    setImmediate(() => this.close());
  }

  private count(bytes: number): void {
    this.received += bytes;
    if (this.received <= MAX_RESPONSE_BYTES || this.closed) return;
    this.failure ??= new LdapConnectivityError(
      'LDAP_RESPONSE_TOO_LARGE',
      `${this.server.uri}: the server sent more than ${MAX_RESPONSE_BYTES} bytes; connection dropped`,
    );
    this.close();
    // Now, not after the unbind: stop reading.
    for (const s of this.sockets) s.destroy();
  }

  /** Unbind politely, then make sure every socket is gone. Never throws. */
  close(): void {
    if (this.closed) return;
    this.closer.abort();
    this.signal.removeEventListener('abort', this.onAbort);
    this.client.unbind().catch(() => undefined);
    // unbind() destroys the socket once the request is written; a hung peer
    // or a socket still connecting must not outlive the authentication.
    setImmediate(() => {
      for (const s of this.sockets) s.destroy();
    });
  }
}
