// The /metrics endpoint: plain HTTP on loopback TCP or a UNIX socket. It
// shares the event loop with authentication, so it must never be a way to
// slow that down: connections are few (extra ones are closed at once), each
// lives a bounded time whatever the client does (slow headers, a response it
// never reads, keep-alive), one request per connection, and scrapes that
// arrive while one is being collected share its result.
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import path from 'node:path';
import type { Socket } from 'node:net';
import { describeAddress, type MetricsAddress } from './address';

/** Scrapers at once; Prometheus uses one. Further connections are closed on accept. */
export const MAX_CONNECTIONS = 16;
/** A connection's whole life, however slowly it sends or reads. */
export const CONNECTION_LIFETIME_MS = 10_000;
/** A request's headers must be in by then. */
const HEADERS_TIMEOUT_MS = 5_000;

export const CONTENT_TYPE = 'text/plain; version=0.0.4; charset=utf-8';

export class MetricsStartError extends Error {
  constructor(
    message: string,
    readonly code: string,
  ) {
    super(message);
  }
}

export interface MetricsServerOptions {
  address: MetricsAddress;
  /** The exposition text; called at most once at a time. */
  render(): Promise<string>;
  /** Why a scrape failed (logged by the caller). */
  onError?(err: Error): void;
}

/** Is something answering on this UNIX socket path? */
function probe(p: string): Promise<'live' | 'absent' | 'stale'> {
  return new Promise((resolve) => {
    const s = net.connect(p);
    const timer = setTimeout(() => {
      s.destroy();
      resolve('live');
    }, 1000);
    s.once('connect', () => {
      clearTimeout(timer);
      s.destroy();
      resolve('live');
    });
    s.once('error', (err: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      resolve(err.code === 'ENOENT' ? 'absent' : 'stale');
    });
  });
}

export class MetricsServer {
  private readonly server: http.Server;
  private readonly sockets = new Set<Socket>();
  private inflight: Promise<string> | undefined;

  constructor(private readonly opts: MetricsServerOptions) {
    this.server = http.createServer(
      {
        headersTimeout: HEADERS_TIMEOUT_MS,
        requestTimeout: HEADERS_TIMEOUT_MS,
        keepAliveTimeout: 1000,
        maxHeaderSize: 8192,
        connectionsCheckingInterval: 1000,
      },
      (req, res) => this.onRequest(req, res),
    );
    this.server.maxConnections = MAX_CONNECTIONS;
    this.server.maxHeadersCount = 32;
    // Idle for this long (a reader that stopped reading included): closed.
    this.server.setTimeout(CONNECTION_LIFETIME_MS / 2);
    this.server.on('connection', (s: Socket) => {
      this.sockets.add(s);
      const timer = setTimeout(() => s.destroy(), CONNECTION_LIFETIME_MS);
      timer.unref();
      s.once('close', () => {
        clearTimeout(timer);
        this.sockets.delete(s);
      });
    });
    // Malformed requests: answer 400 if the socket can take it, then close.
    this.server.on('clientError', (_err, s: Socket) => {
      if (s.writable) s.end('HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n');
      else s.destroy();
    });
  }

  get description(): string {
    return describeAddress(this.opts.address);
  }

  /** Scrapes share one collection while it runs: a flood of them costs one. */
  private collect(): Promise<string> {
    if (this.inflight === undefined) {
      this.inflight = this.opts.render().finally(() => (this.inflight = undefined));
    }
    return this.inflight;
  }

  private onRequest(req: http.IncomingMessage, res: http.ServerResponse): void {
    res.shouldKeepAlive = false;
    const url = req.url ?? '';
    const p = url.split('?')[0];
    if (p !== '/metrics') {
      res.writeHead(404, { 'Content-Type': 'text/plain; charset=utf-8' }).end('not found: the metrics are at /metrics\n');
      return;
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { Allow: 'GET, HEAD', 'Content-Type': 'text/plain; charset=utf-8' }).end('only GET and HEAD\n');
      return;
    }
    this.collect().then(
      (text) => {
        if (res.destroyed) return;
        res.writeHead(200, { 'Content-Type': CONTENT_TYPE, 'Content-Length': Buffer.byteLength(text) });
        res.end(req.method === 'HEAD' ? undefined : text);
      },
      (err: Error) => {
        this.opts.onError?.(err);
        if (!res.destroyed) res.writeHead(500, { 'Content-Type': 'text/plain; charset=utf-8' }).end('metrics unavailable\n');
      },
    );
  }

  /** Listen; rejects with an error naming --metrics and the address. */
  async listen(): Promise<void> {
    const a = this.opts.address;
    const shown = `--metrics ${describeAddress(a)}`;
    if (a.kind === 'unix') await this.claim(a.path, shown);
    await new Promise<void>((resolve, reject) => {
      const onError = (err: NodeJS.ErrnoException): void => {
        this.server.off('listening', onListening);
        reject(new MetricsStartError(`${shown}: ${explain(err, a)}`, err.code ?? 'ELISTEN'));
      };
      const onListening = (): void => {
        this.server.off('error', onError);
        resolve();
      };
      this.server.once('error', onError);
      this.server.once('listening', onListening);
      if (a.kind === 'tcp') {
        this.server.listen({ host: a.host, port: a.port, exclusive: true, backlog: 64 });
        return;
      }
      // Created 0600 (the umask applies while bind(2) runs, so there is no
      // moment when others could connect), then opened to its directory's group.
      const old = process.umask(0o177);
      try {
        this.server.listen({ path: a.path, exclusive: true, backlog: 64 });
      } finally {
        process.umask(old);
      }
    });
    if (a.kind === 'unix') {
      try {
        const dir = fs.statSync(path.dirname(a.path));
        fs.chownSync(a.path, -1, dir.gid);
        fs.chmodSync(a.path, 0o660);
      } catch (err) {
        await this.close();
        throw new MetricsStartError(`${shown}: cannot set the socket's group and mode: ${(err as Error).message}`, 'EPERM');
      }
    }
  }

  /** A stale socket file left by a crash is replaced; a live one, or any other file, is not. */
  private async claim(p: string, shown: string): Promise<void> {
    if (!fs.existsSync(path.dirname(p))) {
      throw new MetricsStartError(`${shown}: the directory ${path.dirname(p)} does not exist; create it first`, 'ENOENT');
    }
    let st: fs.Stats;
    try {
      st = fs.lstatSync(p);
    } catch {
      return;
    }
    if (!st.isSocket())
      throw new MetricsStartError(`${shown}: ${p} exists and is not a socket; remove it or choose another path`, 'EEXIST');
    if ((await probe(p)) === 'live') {
      throw new MetricsStartError(
        `${shown}: another process is already answering on ${p}; stop it or choose another path`,
        'EADDRINUSE',
      );
    }
    fs.rmSync(p, { force: true });
  }

  /** Stop listening and end every connection; the socket file goes. */
  async close(): Promise<void> {
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    for (const s of this.sockets) s.destroy();
    await closed;
    const a = this.opts.address;
    if (a.kind === 'unix') fs.rmSync(a.path, { force: true });
  }
}

function explain(err: NodeJS.ErrnoException, a: MetricsAddress): string {
  switch (err.code) {
    case 'EADDRINUSE':
      return a.kind === 'tcp'
        ? `address already in use: another process listens on port ${a.port}; stop it or choose another port`
        : 'address already in use';
    case 'EADDRNOTAVAIL':
      return `${a.kind === 'tcp' ? a.host : ''} is not an address of this machine (EADDRNOTAVAIL)`;
    case 'EACCES':
      return a.kind === 'tcp' && a.port < 1024
        ? `permission denied: port ${a.port} is privileged; use a port above 1023 (9464 is Prometheus's customary one)`
        : `permission denied: ${err.message}`;
    default:
      return err.message;
  }
}
