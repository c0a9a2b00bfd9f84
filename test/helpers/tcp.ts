// Small loopback TCP tools for backend tests: a recording proxy (what exactly
// went over the wire, both ways), a server that accepts and never speaks, and
// a scripted fake server. All bind 127.0.0.1 on a free port.
import net from 'node:net';

export interface CapturedConnection {
  /** Bytes the client sent (towards the server). */
  up: Buffer;
  /** Bytes the server sent (towards the client), after any rewrite. */
  down: Buffer;
}

export interface CaptureProxy {
  port: number;
  connections(): CapturedConnection[];
  /** Drop every open connection, both sides, as a network failure would; keep listening. */
  cut(): void;
  close(): Promise<void>;
}

export interface CaptureOptions {
  /** Rewrites each chunk from the server before the client sees (and we record) it. */
  rewriteDown?: (chunk: Buffer) => Buffer;
}

function listen(server: net.Server): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve((server.address() as net.AddressInfo).port));
  });
}

function closeServer(server: net.Server, sockets: Set<net.Socket>): Promise<void> {
  for (const s of sockets) s.destroy();
  return new Promise((resolve) => server.close(() => resolve()));
}

export async function startCaptureProxy(targetPort: number, opts: CaptureOptions = {}): Promise<CaptureProxy> {
  const records: Array<{ up: Buffer[]; down: Buffer[] }> = [];
  const sockets = new Set<net.Socket>();
  const server = net.createServer((client) => {
    const rec = { up: [] as Buffer[], down: [] as Buffer[] };
    records.push(rec);
    const upstream = net.connect(targetPort, '127.0.0.1');
    sockets.add(client);
    sockets.add(upstream);
    const end = (): void => {
      client.destroy();
      upstream.destroy();
    };
    client.on('data', (d: Buffer) => {
      rec.up.push(Buffer.from(d));
      upstream.write(d);
    });
    upstream.on('data', (d: Buffer) => {
      const out = opts.rewriteDown ? opts.rewriteDown(d) : d;
      rec.down.push(Buffer.from(out));
      client.write(out);
    });
    client.on('end', () => upstream.end());
    upstream.on('end', () => client.end());
    client.on('error', end);
    upstream.on('error', end);
    client.on('close', () => sockets.delete(client));
    upstream.on('close', () => sockets.delete(upstream));
  });
  const port = await listen(server);
  return {
    port,
    connections: () => records.map((r) => ({ up: Buffer.concat(r.up), down: Buffer.concat(r.down) })),
    cut: () => {
      for (const s of sockets) s.destroy();
    },
    close: () => closeServer(server, sockets),
  };
}

export interface SilentServer {
  port: number;
  /** Connections accepted so far. */
  accepted(): number;
  close(): Promise<void>;
}

/** Accepts TCP connections and never sends a byte. */
export async function startSilentServer(): Promise<SilentServer> {
  const sockets = new Set<net.Socket>();
  let accepted = 0;
  const server = net.createServer((s) => {
    accepted++;
    sockets.add(s);
    s.on('error', () => undefined);
    s.on('close', () => sockets.delete(s));
  });
  const port = await listen(server);
  return { port, accepted: () => accepted, close: () => closeServer(server, sockets) };
}

export interface FakeImapServer {
  port: number;
  /** Everything each client sent. */
  received(): Buffer[];
  close(): Promise<void>;
}

/**
 * A scripted IMAP server. onConnection gets the socket and an async line
 * reader; it writes whatever the test wants.
 */
export async function startFakeImapServer(
  onConnection: (
    sock: net.Socket,
    readLine: () => Promise<string>,
    readBytes: (n: number) => Promise<Buffer>,
  ) => Promise<void> | void,
): Promise<FakeImapServer> {
  const sockets = new Set<net.Socket>();
  const received: Buffer[] = [];
  const server = net.createServer((sock) => {
    sockets.add(sock);
    const idx = received.push(Buffer.alloc(0)) - 1;
    let buf = Buffer.alloc(0);
    let wake: (() => void) | undefined;
    let ended = false;
    sock.on('data', (d: Buffer) => {
      received[idx] = Buffer.concat([received[idx]!, d]);
      buf = Buffer.concat([buf, d]);
      wake?.();
    });
    sock.on('end', () => {
      ended = true;
      wake?.();
    });
    sock.on('error', () => undefined);
    sock.on('close', () => sockets.delete(sock));
    const waitFor = async (ready: () => boolean): Promise<void> => {
      while (!ready()) {
        if (ended) throw new Error('client closed');
        await new Promise<void>((r) => (wake = r));
      }
    };
    const readLine = async (): Promise<string> => {
      await waitFor(() => buf.includes(0x0a));
      const lf = buf.indexOf(0x0a);
      const line = buf.subarray(0, lf + 1).toString('latin1');
      buf = buf.subarray(lf + 1);
      return line;
    };
    const readBytes = async (n: number): Promise<Buffer> => {
      await waitFor(() => buf.length >= n);
      const out = buf.subarray(0, n);
      buf = buf.subarray(n);
      return Buffer.from(out);
    };
    Promise.resolve(onConnection(sock, readLine, readBytes)).catch(() => sock.destroy());
  });
  const port = await listen(server);
  return { port, received: () => received.slice(), close: () => closeServer(server, sockets) };
}
