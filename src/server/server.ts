// The UNIX-socket listener: <run dir>/mux, mode 0777 with access controlled
// by the directory (as Cyrus and Debian do), stale-socket recovery, and a
// graceful close that answers what is in flight before removing the socket.
// The socket work itself (accept, I/O, decoding, deadlines) is native
// (src/native/listener.h); this hands each decoded request to the
// authenticator and logs what the listener reports.
import fs from 'node:fs';
import net from 'node:net';
import type pino from 'pino';
import { native, ListenerEvent, type IncompleteWhy, type NativeListener } from '../native/binding';
import { LineBudget } from '../log/line-budget';
import type { ProtocolError } from '../metrics/service';
import type { Exchange } from './exchange';
import { MuxExchange } from './mux-exchange';

export const SOCKET_NAME = 'mux';

export class StartupError extends Error {
  constructor(
    message: string,
    readonly code: string,
  ) {
    super(message);
  }
}

export interface ServerOptions {
  socketPath: string;
  /** A request whose bytes have not all arrived by then is dropped. */
  readTimeoutMs: number;
  /** A client that keeps the connection open after its answer is closed after this. */
  drainTimeoutMs: number;
  /** A request still unanswered after this is closed and logged (a backstop: see decideBackstopMs). */
  decideTimeoutMs: number;
  /** Open connections beyond which new ones wait in the kernel's backlog. */
  maxConnections: number;
  /** Answers one request (exactly once, through the exchange). */
  handle(x: Exchange): void;
  /** Requests the handler is still deciding or holding back. */
  pending(): number;
  /** Stopping: answer what is held back now. */
  release(): void;
  log: pino.Logger;
  /** A frame that never became a request (metrics); a connection that closed without sending a byte is not one. */
  onProtocolError?: ((reason: ProtocolError) => void) | undefined;
}

/** Is a daemon answering on this socket? ENOENT/ECONNREFUSED mean no. */
export function probeSocket(socketPath: string, timeoutMs = 1000): Promise<'live' | 'absent' | 'stale'> {
  return new Promise((resolve, reject) => {
    const s = net.connect(socketPath);
    const timer = setTimeout(() => {
      s.destroy();
      resolve('live'); // accepted but slow: someone is there
    }, timeoutMs);
    s.once('connect', () => {
      clearTimeout(timer);
      s.destroy();
      resolve('live');
    });
    s.once('error', (err: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      if (err.code === 'ENOENT') resolve('absent');
      else if (err.code === 'ECONNREFUSED' || err.code === 'ENOTSOCK') resolve('stale');
      else reject(new StartupError(`cannot probe ${socketPath}: ${err.message}`, err.code ?? 'EPROBE'));
    });
  });
}

export class SaslauthdServer {
  private readonly listener: NativeListener;
  private shared = false;
  /** Lines a flood of misbehaving clients would repeat: bounded, then summarised. */
  private readonly budget: LineBudget;

  constructor(private readonly opts: ServerOptions) {
    this.budget = new LineBudget(opts.log);
    this.budget.start();
    this.listener = new native.Listener(
      (kind, id, arg, service, realm, addr, fingerprint) =>
        kind === ListenerEvent.Request
          ? this.opts.handle(
              new MuxExchange(
                this.listener,
                id,
                arg as string,
                service as string,
                realm as string,
                addr as string | undefined,
                fingerprint as Buffer,
              ),
            )
          : this.onEvent(kind, arg),
      opts.readTimeoutMs,
      opts.drainTimeoutMs,
      opts.maxConnections,
      opts.decideTimeoutMs,
    );
  }

  /** Open connections, including those draining after their reply. */
  get connectionCount(): number {
    return this.listener.count;
  }

  /** Requests received whole and not answered yet. */
  get inFlight(): number {
    return this.listener.busy;
  }

  /** What the listener reports besides requests. */
  private onEvent(kind: ListenerEvent, arg: unknown): void {
    const { log } = this.opts;
    const b = this.budget;
    switch (kind) {
      case ListenerEvent.Request:
        return; // handled in the constructor's callback
      case ListenerEvent.Rejected: {
        const [message, field, length] = arg as [string, string?, number?];
        b.line(
          'error',
          field !== undefined ? `${field} exceeded MAX_REQ_LEN` : message,
          field !== undefined ? { field, length } : {},
          message,
        );
        if (this.opts.onProtocolError !== undefined) {
          this.opts.onProtocolError(
            field !== undefined ? 'oversize' : message.includes('login') ? 'null_login' : 'null_password',
          );
        }
        return;
      }
      case ListenerEvent.Incomplete: {
        const [why, bytes, detail] = arg as [IncompleteWhy, number, string?];
        // A client that connects and leaves without a byte (a port probe) sent no request.
        if (this.opts.onProtocolError !== undefined && (why === 'timeout' || bytes > 0)) {
          this.opts.onProtocolError(why === 'timeout' ? 'read_timeout' : 'incomplete');
        }
        // A connect-and-close with nothing sent is a probe (a monitor, a
        // daemon checking whether the socket is taken): not worth a line.
        if (why === 'eof') {
          if (bytes === 0) log.debug({ bytes }, 'client closed before the request was complete');
          else
            b.line(
              'info',
              'client closed before the request was complete',
              { bytes },
              'client closed before the request was complete',
            );
        } else if (why === 'timeout') {
          const message = 'request not received within the read timeout; closing connection';
          b.line('warn', 'request not received within the read timeout', { bytes, timeoutMs: this.opts.readTimeoutMs }, message);
        } else {
          log.debug({ bytes, code: detail?.split(' ')[0] }, `connection error before the request was complete: ${detail ?? ''}`);
        }
        return;
      }
      case ListenerEvent.Gone:
        // ECONNRESET and the like: the client reset the connection before its answer.
        log.debug({ code: String(arg).split(' ')[0] }, `connection error: ${String(arg)}`);
        return;
      case ListenerEvent.Overdue:
        // Never in normal operation: every wait before the answer has a
        // shorter deadline of its own. Bounded like any line a flood could repeat.
        b.line(
          'error',
          'request not answered within the backstop',
          { timeoutMs: arg },
          `request not answered within ${String(arg)} ms; closed the connection unanswered (a bug in saslauthd-ts: please report it)`,
        );
        return;
      case ListenerEvent.AcceptError:
        log.error(
          { code: String(arg).split(' ')[0] },
          `socket accept failure: ${String(arg)}; new connections wait in the backlog`,
        );
        return;
      case ListenerEvent.ConnLimit:
        log.warn(
          { maxConnections: arg },
          `connection limit reached: ${String(arg)} open (--max-connections); new connections wait in the backlog until one closes`,
        );
        return;
    }
  }

  /**
   * Make the socket path usable: refuse if a live daemon answers there
   * (never steal its socket), remove a stale file left by a crash.
   */
  static async claimSocket(path: string): Promise<void> {
    const state = await probeSocket(path);
    if (state === 'live') {
      throw new StartupError(`another saslauthd is already answering on ${path}; stop it first`, 'EADDRINUSE');
    }
    if (state === 'stale') fs.unlinkSync(path);
  }

  /** Create the listening socket at path (mode 0777: the run directory controls access, as in Cyrus and Debian). */
  static bind(path: string): number {
    let fd: number;
    try {
      fd = native.bindUnixSocket(path, 4096);
    } catch (err) {
      const e = err as NodeJS.ErrnoException;
      throw new StartupError(e.message, e.code ?? 'ELISTEN');
    }
    fs.chmodSync(path, 0o777);
    return fd;
  }

  /**
   * Listen on the socket. In a cluster worker (sharedFd) the primary has
   * bound the path and passed the listening descriptor down.
   */
  async listen(sharedFd?: number): Promise<void> {
    const path = this.opts.socketPath;
    this.shared = sharedFd !== undefined;
    let fd = sharedFd;
    if (fd === undefined) {
      await SaslauthdServer.claimSocket(path);
      fd = SaslauthdServer.bind(path);
    }
    try {
      this.listener.open(fd);
    } catch (err) {
      const e = err as NodeJS.ErrnoException;
      if (!this.shared) fs.rmSync(path, { force: true });
      throw new StartupError(`cannot listen on ${path}: ${e.message}`, e.code ?? 'ELISTEN');
    }
    if (!this.shared) this.opts.log.info(`listening on socket: ${path}`);
  }

  /**
   * Stop accepting, send what the throttle holds back, let in-flight requests
   * be answered (up to deadlineMs), then end the stragglers. The socket file
   * is removed.
   */
  async close(deadlineMs: number): Promise<void> {
    this.listener.stopAccepting();
    this.opts.release();
    const until = Date.now() + deadlineMs;
    while ((this.listener.busy > 0 || this.opts.pending() > 0) && Date.now() < until) {
      this.opts.release();
      await new Promise((r) => setTimeout(r, 20));
    }
    this.listener.destroyAll();
    this.budget.stop();
    if (this.shared) return; // the primary owns the socket file
    fs.rmSync(this.opts.socketPath, { force: true });
  }
}
