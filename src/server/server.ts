// The UNIX-socket listener: <run dir>/mux, mode 0777 with access controlled
// by the directory (as Cyrus and Debian do), stale-socket recovery, and a
// graceful close that answers what is in flight before removing the socket.
import fs from 'node:fs';
import net from 'node:net';
import type pino from 'pino';
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
  log: pino.Logger;
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
  private readonly server: net.Server;
  private readonly connections = new Set<Connection>();
  private shared = false;

  constructor(private readonly opts: ServerOptions) {
    this.server = net.createServer({ allowHalfOpen: true }, (socket) => {
      const c = new Connection(socket, opts, (done) => this.connections.delete(done));
      this.connections.add(c);
    });
    this.server.on('error', (err) => opts.log.error({ err }, 'socket accept failure'));
  }

  get connectionCount(): number {
    return this.connections.size;
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

  /**
   * Listen on the socket. In a cluster worker (shared) the primary has
   * claimed the path, owns the file and sets its mode once all workers listen.
   */
  async listen(shared = false): Promise<void> {
    const path = this.opts.socketPath;
    this.shared = shared;
    if (!shared) await SaslauthdServer.claimSocket(path);
    await new Promise<void>((resolve, reject) => {
      const onError = (err: NodeJS.ErrnoException): void =>
        reject(new StartupError(`cannot listen on ${path}: ${err.message}`, err.code ?? 'ELISTEN'));
      this.server.once('error', onError);
      this.server.listen({ path, backlog: 4096 }, () => {
        this.server.off('error', onError);
        resolve();
      });
    });
    if (!shared) {
      fs.chmodSync(path, 0o777);
      this.opts.log.info(`listening on socket: ${path}`);
    }
  }

  /**
   * Stop accepting, let in-flight requests be answered (up to deadlineMs),
   * then end the stragglers. The socket file is removed.
   */
  async close(deadlineMs: number): Promise<void> {
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    const until = Date.now() + deadlineMs;
    while ([...this.connections].some((c) => c.busy) && Date.now() < until) {
      await new Promise((r) => setTimeout(r, 20));
    }
    for (const c of this.connections) c.destroy();
    await closed;
    if (this.shared) return; // the primary owns the socket file
    try {
      fs.unlinkSync(this.opts.socketPath);
    } catch {
      // already gone: net.Server removes the path it created
    }
  }
}
