// The UNIX-socket listener: <run dir>/mux, mode 0777 with access controlled
// by the directory (as Cyrus and Debian do), stale-socket recovery, and a
// graceful close that answers what is in flight before removing the socket.
import fs from 'node:fs';
import net from 'node:net';
import type pino from 'pino';
import { native, ListenerEvent, type NativeListener, type NativeShadowResult } from '../native/binding';
import { Connection, type ConnectionOptions } from './connection';

export const SOCKET_NAME = 'mux';

export class StartupError extends Error {
  constructor(
    message: string,
    readonly code: string,
  ) {
    super(message);
  }
}

export interface ServerOptions extends ConnectionOptions {
  socketPath: string;
  /** Open connections beyond which new ones wait in the kernel's backlog. */
  maxConnections: number;
  log: pino.Logger;
  /**
   * Answer with the shadow mechanism inside the native listener (see
   * listener.cc); handle() is then not called. onResult logs each answer.
   */
  nativeShadow?: {
    concatRealm: boolean;
    timeoutMs: number;
    timeoutReply: string;
    /** Report successes too (they are logged at debug only); failures always are. */
    logSuccess: boolean;
    onResult(r: NativeShadowResult): void;
  };
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
  /** Connections JavaScript still holds: reading or being answered. */
  private readonly connections = new Map<number, Connection>();
  private readonly forget = (id: number): void => {
    this.connections.delete(id);
  };
  private shared = false;

  constructor(private readonly opts: ServerOptions) {
    this.listener = new native.Listener(
      (kind, id, arg) => this.onEvent(kind, id, arg),
      opts.readTimeoutMs,
      opts.drainTimeoutMs,
      opts.maxConnections,
    );
    const ns = opts.nativeShadow;
    if (ns !== undefined) this.listener.serveShadow(ns.concatRealm, ns.timeoutMs, ns.timeoutReply, ns.logSuccess);
  }

  /** Open connections, including those draining after their reply. */
  get connectionCount(): number {
    return this.listener.count;
  }

  private onEvent(kind: ListenerEvent, id: number, arg: unknown): void {
    let c = this.connections.get(id);
    switch (kind) {
      case ListenerEvent.Data:
        if (c === undefined) {
          c = new Connection(id, this.listener, this.opts, this.forget);
          this.connections.set(id, c);
        }
        c.onData(arg as Buffer);
        return;
      case ListenerEvent.End:
        (c ?? this.idle(id)).onEnd(arg as number);
        return;
      case ListenerEvent.ReadTimeout:
        (c ?? this.idle(id)).onReadTimeout(arg as number);
        return;
      case ListenerEvent.Closed:
        this.connections.delete(id);
        return;
      case ListenerEvent.ConnError:
        // ECONNRESET and the like: the client reset the connection before its answer.
        this.opts.log.debug({ code: String(arg).split(' ')[0] }, `connection error: ${String(arg)}`);
        return;
      case ListenerEvent.AcceptError:
        this.opts.log.error(
          { code: String(arg).split(' ')[0] },
          `socket accept failure: ${String(arg)}; new connections wait in the backlog`,
        );
        return;
      case ListenerEvent.ConnLimit:
        this.opts.log.warn(
          { maxConnections: arg },
          `connection limit reached: ${String(arg)} open (the descriptor limit less a reserve for the mechanism); ` +
            'new connections wait in the backlog until one closes',
        );
        return;
      case ListenerEvent.Result:
        this.opts.nativeShadow?.onResult(arg as NativeShadowResult);
        return;
      case ListenerEvent.Rejected: {
        const [message, field, length] = arg as [string, string?, number?];
        this.opts.log.error(field !== undefined ? { field, length } : {}, message);
        return;
      }
    }
  }

  /** A connection that has sent nothing yet (JavaScript creates state on the first byte). */
  private idle(id: number): Connection {
    return new Connection(id, this.listener, this.opts, this.forget);
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
   * Stop accepting, let in-flight requests be answered (up to deadlineMs),
   * then end the stragglers. The socket file is removed.
   */
  async close(deadlineMs: number): Promise<void> {
    this.listener.stopAccepting();
    const until = Date.now() + deadlineMs;
    const busy = (): boolean => this.listener.busy > 0 || [...this.connections.values()].some((c) => c.busy);
    while (busy() && Date.now() < until) {
      await new Promise((r) => setTimeout(r, 20));
    }
    this.listener.destroyAll();
    this.connections.clear();
    if (this.shared) return; // the primary owns the socket file
    fs.rmSync(this.opts.socketPath, { force: true });
  }
}
