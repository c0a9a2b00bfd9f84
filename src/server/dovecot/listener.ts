// The Dovecot door: a second listening UNIX socket (--dovecot-socket) that
// speaks the server side of Dovecot's auth protocol 1.x, as Postfix's
// smtpd_sasl_type = dovecot client expects it (docs/dovecot.md). Its requests
// go to the same authenticator as the mux socket's, through the same
// Exchange contract. Each connection carries many requests, each answered as
// soon as it is decided.
import crypto from 'node:crypto';
import net from 'node:net';
import type pino from 'pino';
import { Fingerprinter } from '../../auth/fingerprint';
import { LineBudget } from '../../log/line-budget';
import type { ProtocolError } from '../../metrics/service';
import { MECHANISMS } from '../../protocol/dovecot/sasl';
import { handshake } from '../../protocol/dovecot/wire';
import type { Exchange } from '../exchange';
import { StartupError } from '../server';
import { CONTINUATION_TIMEOUT_MS, DovecotConnection, IDLE_TIMEOUT_MS, MAX_REQUESTS_PER_CONNECTION } from './connection';
import { bindSocket, claimPath, FLAG, LISTEN_BACKLOG, removeSocket, SOCKET_USER, type BoundSocket } from './socket-file';

export interface DovecotServerOptions {
  socketPath: string;
  /** The handshake and each line must arrive within this. */
  readTimeoutMs: number;
  /** Open connections at most; past it new ones are closed at once (Postfix retries on its next request). */
  maxConnections: number;
  /** The key native.setFingerprintKey was given: fingerprints must match the mux door's. */
  fingerprintKey: Buffer;
  /** Answers one request (exactly once, through the exchange). */
  handle(x: Exchange): void;
  log: pino.Logger;
  /** Input that never became a request (metrics), as the mux listener reports it. */
  onProtocolError?: ((reason: ProtocolError) => void) | undefined;
  /** Test seams. */
  idleTimeoutMs?: number;
  continuationTimeoutMs?: number;
}

export class DovecotServer {
  private readonly server: net.Server;
  private readonly connections = new Set<DovecotConnection>();
  private readonly budget: LineBudget;
  private readonly fingerprinter: Fingerprinter;
  private bound: BoundSocket | undefined;
  private cuid = 0;

  constructor(private readonly opts: DovecotServerOptions) {
    this.budget = new LineBudget(opts.log);
    this.budget.start();
    this.fingerprinter = new Fingerprinter(opts.fingerprintKey);
    // allowHalfOpen: a client that ends its side still gets the answers being decided.
    this.server = net.createServer({ allowHalfOpen: true }, (socket) => this.adopt(socket));
    this.server.maxConnections = opts.maxConnections;
    this.server.on('drop', () =>
      this.budget.line(
        'warn',
        'dovecot socket: connection limit reached',
        { maxConnections: opts.maxConnections },
        `dovecot socket: connection limit reached: ${opts.maxConnections} open (--max-connections); closing new connections until one closes`,
      ),
    );
    this.server.on('error', (err: NodeJS.ErrnoException) => {
      opts.log.error({ code: err.code }, `dovecot socket: ${err.message}`);
    });
  }

  /** Open connections. */
  get connectionCount(): number {
    return this.connections.size;
  }

  /** Requests handed to the authenticator and not answered yet. */
  get inFlight(): number {
    let n = 0;
    for (const c of this.connections) n += c.inFlight;
    return n;
  }

  /** Make the socket file (the primary does this for its workers). */
  static async bind(socketPath: string): Promise<BoundSocket> {
    await claimPath(socketPath);
    return bindSocket(socketPath);
  }

  /**
   * Listen: on our own socket file, or (a cluster worker) on the primary's
   * descriptor of the socket it bound, which node:cluster's primary then
   * accepts on and hands out.
   */
  async listen(sharedFd?: number): Promise<void> {
    const path = this.opts.socketPath;
    let fd = sharedFd;
    if (fd === undefined) {
      this.bound = await DovecotServer.bind(path);
      fd = this.bound.fd;
      if (this.bound.owner.startsWith('root:')) {
        this.opts.log.warn(
          `${FLAG} ${path}: there is no user ${SOCKET_USER}, so the socket is ${this.bound.owner} and only root can use it`,
        );
      }
    }
    try {
      await new Promise<void>((resolve, reject) => {
        this.server.once('error', reject);
        // The backlog bindSocket gave it: listen(2) again resets it, and
        // Node takes it from this argument only when listening on a descriptor.
        this.server.listen({ fd }, LISTEN_BACKLOG, () => {
          this.server.off('error', reject);
          resolve();
        });
      });
    } catch (err) {
      const e = err as NodeJS.ErrnoException;
      if (this.bound !== undefined) removeSocket(path, this.bound);
      throw new StartupError(`${FLAG} ${path}: cannot listen: ${e.message}`, e.code ?? 'ELISTEN');
    }
    if (this.bound !== undefined) this.opts.log.info(`listening on dovecot socket: ${path} (${this.bound.owner})`);
  }

  private adopt(socket: net.Socket): void {
    const c = new DovecotConnection(socket, {
      readTimeoutMs: this.opts.readTimeoutMs,
      continuationTimeoutMs: this.opts.continuationTimeoutMs ?? CONTINUATION_TIMEOUT_MS,
      idleTimeoutMs: this.opts.idleTimeoutMs ?? IDLE_TIMEOUT_MS,
      maxRequests: MAX_REQUESTS_PER_CONNECTION,
      fingerprinter: this.fingerprinter,
      handle: (x) => this.opts.handle(x),
      handshake: () => handshake(MECHANISMS, process.pid, ++this.cuid, crypto.randomBytes(16).toString('hex')),
      log: this.opts.log,
      budget: this.budget,
      onClose: (conn) => this.connections.delete(conn),
      onProtocolError: this.opts.onProtocolError,
    });
    this.connections.add(c);
  }

  /**
   * Stop accepting and wait (up to deadlineMs) for the requests being
   * decided, which the caller's authenticator answers; then end every
   * connection and remove the socket file. The caller releases the
   * throttle's held answers (they are the authenticator's, shared with the mux door).
   */
  async close(deadlineMs: number, release: () => void = () => undefined): Promise<void> {
    this.server.close();
    const until = Date.now() + deadlineMs;
    while (this.inFlight > 0 && Date.now() < until) {
      release();
      await new Promise((r) => setTimeout(r, 20));
    }
    for (const c of [...this.connections]) c.destroy();
    this.budget.stop();
    if (this.bound !== undefined) removeSocket(this.opts.socketPath, this.bound);
  }
}
