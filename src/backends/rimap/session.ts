// One TCP (optionally TLS) connection to one IMAP server: connect with a
// deadline, read whole responses with a per-read deadline, write commands,
// upgrade to TLS in place for STARTTLS, and give up at once when the request's
// AbortSignal fires. Knows nothing about LOGIN: see backend.ts for the
// dialogue. Never lets a socket 'error' go unhandled.
import net from 'node:net';
import tls from 'node:tls';
import { RimapError } from './errors';
import { type ImapResponse, ResponseDecodeError, ResponseDecoder } from './response-decoder';

export interface TlsParams {
  /** The address connected to; the certificate is checked against it when servername is undefined. */
  address: string;
  /** Host name to verify the certificate against and send as SNI. */
  servername: string | undefined;
  /** PEM CA certificates replacing the system store; undefined = system store. */
  ca: Buffer | undefined;
}

interface Pending {
  resolve(r: ImapResponse): void;
  reject(e: RimapError): void;
}

function abortedError(): RimapError {
  return new RimapError('RIMAP_ABORTED', 'request deadline passed; connection abandoned');
}

/** How long a LOGOUT'ed connection may linger before it is cut. */
const LOGOUT_LINGER_MS = 2_000;

/**
 * The most a server may send on one connection. The decoder caps each
 * response; this caps their number: a server that streams untagged lines
 * resets every per-read timeout and would hold the request to its deadline.
 * A greeting, STARTTLS and LOGIN take a few KiB.
 */
export const MAX_SESSION_BYTES = 1024 * 1024;

export class ImapSession {
  private socket: net.Socket;
  private decoder = new ResponseDecoder();
  private readonly queue: ImapResponse[] = [];
  private waiter: Pending | undefined;
  private readonly writers = new Set<(e: RimapError) => void>();
  private failure: RimapError | undefined;
  private linger: NodeJS.Timeout | undefined;
  private tls = false;
  private received = 0;
  private readonly onAbort = (): void => this.fail(abortedError());
  private readonly onData = (chunk: Buffer): void => this.receive(chunk);
  private readonly onEnd = (): void => this.fail(new RimapError('RIMAP_CLOSED', 'server closed the connection'));
  private readonly onError = (err: NodeJS.ErrnoException): void =>
    this.fail(new RimapError('RIMAP_SOCKET', `connection error: ${err.message}`, err.code));
  /** Called once when the session is finished, whichever way. */
  onClosed: (() => void) | undefined;

  /** Opens a TCP connection to an IP address. */
  static connect(address: string, port: number, timeoutMs: number, signal: AbortSignal): Promise<ImapSession> {
    return new Promise((resolve, reject) => {
      if (signal.aborted) {
        reject(abortedError());
        return;
      }
      const sock = net.connect({ host: address, port });
      const cleanup = (): void => {
        clearTimeout(timer);
        signal.removeEventListener('abort', onAbort);
        sock.off('connect', onConnect);
        sock.off('error', onError);
      };
      const fail = (e: RimapError): void => {
        cleanup();
        sock.on('error', () => undefined); // late errors of a socket we dropped
        sock.destroy();
        reject(e);
      };
      const onAbort = (): void => fail(abortedError());
      const onError = (err: NodeJS.ErrnoException): void =>
        fail(new RimapError('RIMAP_CONNECT', `connect to ${address} port ${port}: ${err.message}`, err.code));
      const onConnect = (): void => {
        cleanup();
        resolve(new ImapSession(sock, signal));
      };
      const timer = setTimeout(
        () =>
          fail(new RimapError('RIMAP_CONNECT_TIMEOUT', `connect to ${address} port ${port}: no answer within ${timeoutMs} ms`)),
        timeoutMs,
      );
      signal.addEventListener('abort', onAbort, { once: true });
      sock.once('connect', onConnect);
      sock.once('error', onError);
    });
  }

  private constructor(
    private readonly raw: net.Socket,
    private readonly signal: AbortSignal,
  ) {
    this.socket = raw;
    // Stays for the whole life of the connection: errors of the TCP socket
    // under a TLS one must not go unhandled either.
    raw.on('error', this.onError);
    raw.once('close', () => this.finish());
    this.listen(raw);
    signal.addEventListener('abort', this.onAbort, { once: true });
  }

  get encrypted(): boolean {
    return this.tls;
  }

  private listen(s: net.Socket): void {
    s.on('data', this.onData);
    s.on('end', this.onEnd);
  }

  private unlisten(s: net.Socket): void {
    s.off('data', this.onData);
    s.off('end', this.onEnd);
  }

  private receive(chunk: Buffer): void {
    this.received += chunk.length;
    if (this.received > MAX_SESSION_BYTES) {
      this.fail(new RimapError('RIMAP_TOO_LONG', `the server sent more than ${MAX_SESSION_BYTES} bytes; connection dropped`));
      return;
    }
    let responses: ImapResponse[];
    try {
      responses = this.decoder.push(chunk);
    } catch (err) {
      const msg = err instanceof ResponseDecodeError ? err.message : String(err);
      this.fail(new RimapError('RIMAP_TOO_LONG', msg));
      return;
    }
    for (const r of responses) {
      const w = this.waiter;
      if (w !== undefined) {
        this.waiter = undefined;
        w.resolve(r);
      } else {
        this.queue.push(r);
      }
    }
  }

  /** Ends the session with err (the first error wins); wakes every waiter. */
  private fail(err: RimapError): void {
    if (this.failure === undefined) this.failure = err;
    const w = this.waiter;
    this.waiter = undefined;
    w?.reject(this.failure);
    for (const reject of this.writers) reject(this.failure);
    this.writers.clear();
    this.socket.destroy();
    this.raw.destroy();
  }

  private finish(): void {
    clearTimeout(this.linger);
    this.signal.removeEventListener('abort', this.onAbort);
    if (this.failure === undefined) this.failure = new RimapError('RIMAP_CLOSED', 'connection closed');
    const cb = this.onClosed;
    this.onClosed = undefined;
    cb?.();
  }

  /** The next complete response; rejects after timeoutMs of silence, on EOF, error or abort. */
  next(timeoutMs: number): Promise<ImapResponse> {
    const queued = this.queue.shift();
    if (queued !== undefined) return Promise.resolve(queued);
    if (this.failure !== undefined) return Promise.reject(this.failure);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiter = undefined;
        reject(new RimapError('RIMAP_TIMEOUT', `server sent nothing for ${timeoutMs} ms`));
      }, timeoutMs);
      this.waiter = {
        resolve: (r) => {
          clearTimeout(timer);
          resolve(r);
        },
        reject: (e) => {
          clearTimeout(timer);
          reject(e);
        },
      };
    });
  }

  /** Writes bytes; resolves once handed to the kernel (or the TLS layer). */
  write(bytes: Buffer): Promise<void> {
    if (this.failure !== undefined) return Promise.reject(this.failure);
    return new Promise((resolve, reject) => {
      const onFail = (e: RimapError): void => reject(e);
      this.writers.add(onFail);
      this.socket.write(bytes, (err) => {
        this.writers.delete(onFail);
        if (err) reject(this.failure ?? new RimapError('RIMAP_SOCKET', `write failed: ${err.message}`));
        else resolve();
      });
    });
  }

  /**
   * TLS on the open connection (implicit TLS right after connect, or after a
   * tagged OK to STARTTLS). Anything the server sent in clear text after that
   * OK would be read as if it came over TLS (the STARTTLS injection of
   * CVE-2011-0411 and kin), so buffered bytes make this fail.
   */
  startTls(params: TlsParams, timeoutMs: number): Promise<void> {
    if (this.failure !== undefined) return Promise.reject(this.failure);
    if (this.queue.length > 0 || this.decoder.buffered > 0) {
      const e = new RimapError('RIMAP_PROTOCOL', 'server sent data in clear text after agreeing to STARTTLS');
      this.fail(e);
      return Promise.reject(e);
    }
    this.unlisten(this.raw);
    const options: tls.ConnectionOptions = {
      socket: this.raw,
      host: params.address,
      rejectUnauthorized: true,
      minVersion: 'TLSv1.2',
    };
    if (params.servername !== undefined) options.servername = params.servername;
    if (params.ca !== undefined) options.ca = params.ca;
    const t = tls.connect(options);
    this.socket = t;
    return new Promise((resolve, reject) => {
      const cleanup = (): void => {
        clearTimeout(timer);
        t.off('secureConnect', onSecure);
        t.off('error', onTlsError);
        this.writers.delete(onFail);
      };
      const onFail = (e: RimapError): void => {
        cleanup();
        reject(e);
      };
      const onTlsError = (err: NodeJS.ErrnoException): void => {
        const e = new RimapError('RIMAP_TLS', err.message, err.code);
        cleanup();
        this.fail(e);
        reject(e);
      };
      const onSecure = (): void => {
        cleanup();
        this.tls = true;
        this.decoder = new ResponseDecoder();
        this.listen(t);
        resolve();
      };
      const timer = setTimeout(
        () => onTlsError(Object.assign(new Error(`no handshake within ${timeoutMs} ms`), { code: 'ETIMEDOUT' })),
        timeoutMs,
      );
      // Reuses the writers set so that fail() (abort, socket error) rejects this wait too.
      this.writers.add(onFail);
      t.once('secureConnect', onSecure);
      // Registered first, so a handshake error is reported as RIMAP_TLS; the
      // permanent handler covers every later error of the TLS socket.
      t.once('error', onTlsError);
      t.on('error', this.onError);
    });
  }

  /** Sends LOGOUT (as Cyrus does), does not wait for the answer, and cuts the connection soon after. */
  logout(tag: string): void {
    if (this.failure !== undefined) return;
    this.socket.end(`${tag} LOGOUT\r\n`);
    this.linger = setTimeout(() => this.destroy(), LOGOUT_LINGER_MS);
    this.linger.unref();
  }

  /** Drops the connection now. */
  destroy(): void {
    this.fail(new RimapError('RIMAP_ABORTED', 'connection closed by saslauthd-ts'));
  }
}
