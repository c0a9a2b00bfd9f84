// A client of the Dovecot door speaking Dovecot's auth protocol as Postfix's
// xsasl_dovecot_server.c does (VERSION 1 0, CPID, then AUTH / CONT), but with
// many requests in flight on one connection, their answers matched by id in
// whatever order they come. Also a raw mode for protocol tests.
import net from 'node:net';

export interface Handshake {
  /** The server's lines, in order, up to and including DONE. */
  lines: string[];
  mechs: Array<{ name: string; params: string[] }>;
}

export interface Reply {
  /** OK, FAIL, or 'closed' when the connection ended before an answer. */
  kind: 'OK' | 'FAIL' | 'closed';
  id: number;
  /** name=value parameters. */
  params: Record<string, string>;
  /** Parameters without a value (temp, ...). */
  flags: string[];
  /** The raw line. */
  line: string;
}

export interface AuthOptions {
  service?: string;
  /** rip=; default none. */
  rip?: string;
  lip?: string;
  secured?: boolean;
  /** PLAIN's authorization identity. */
  authzid?: string;
  /** Send the credentials as an initial response (PLAIN: resp=; LOGIN: the username). Default true. */
  initialResponse?: boolean;
  id?: number;
}

type Waiter = (line: string | undefined) => void;

const b64 = (s: string | Buffer): string => Buffer.from(s).toString('base64');

export class DovecotAuthClient {
  private buf = '';
  private readonly lines: string[] = [];
  private readonly lineWaiters: Waiter[] = [];
  /** Per request id: the lines addressed to it. */
  private readonly byId = new Map<number, Waiter>();
  private readonly early = new Map<number, string[]>();
  private nextId = 1;
  private ended = false;
  /** Ids of the OK and FAIL lines received, in the order they came. */
  readonly answeredIds: number[] = [];
  /** Resolves once the server closed the connection. */
  readonly closed: Promise<void>;
  handshake: Handshake = { lines: [], mechs: [] };

  private constructor(readonly socket: net.Socket) {
    socket.setEncoding('latin1');
    socket.on('data', (d: string) => {
      this.buf += d;
      let nl: number;
      while ((nl = this.buf.indexOf('\n')) >= 0) {
        const line = this.buf.slice(0, nl);
        this.buf = this.buf.slice(nl + 1);
        this.onLine(line);
      }
    });
    this.closed = new Promise((resolve) => {
      const end = (): void => {
        if (this.ended) return;
        this.ended = true;
        for (const w of this.lineWaiters.splice(0)) w(undefined);
        for (const w of [...this.byId.values()]) w(undefined);
        this.byId.clear();
        resolve();
      };
      socket.on('close', end);
      socket.on('end', end);
      socket.on('error', end);
    });
  }

  /** Connect, send VERSION and CPID (unless raw), and read the server's handshake up to DONE. */
  static async connect(path: string, opts: { raw?: boolean; timeoutMs?: number } = {}): Promise<DovecotAuthClient> {
    const socket = net.connect(path);
    await new Promise<void>((resolve, reject) => {
      socket.once('connect', resolve);
      socket.once('error', reject);
    });
    const c = new DovecotAuthClient(socket);
    if (opts.raw) return c;
    socket.write(`VERSION\t1\t0\nCPID\t${process.pid}\n`);
    await c.readHandshake(opts.timeoutMs ?? 5000);
    return c;
  }

  /** Read the server's handshake lines up to DONE. */
  async readHandshake(timeoutMs = 5000): Promise<Handshake> {
    for (;;) {
      const line = await this.nextLine(timeoutMs);
      if (line === undefined) throw new Error(`connection closed during the handshake: ${JSON.stringify(this.handshake.lines)}`);
      this.handshake.lines.push(line);
      const [cmd, ...rest] = line.split('\t');
      if (cmd === 'MECH') this.handshake.mechs.push({ name: rest[0] ?? '', params: rest.slice(1) });
      if (cmd === 'DONE') return this.handshake;
    }
  }

  get isClosed(): boolean {
    return this.ended;
  }

  /** The next line not addressed to a request this client is waiting on; undefined when closed or after timeoutMs. */
  nextLine(timeoutMs = 5000): Promise<string | undefined> {
    const queued = this.lines.shift();
    if (queued !== undefined) return Promise.resolve(queued);
    if (this.ended) return Promise.resolve(undefined);
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        const i = this.lineWaiters.indexOf(w);
        if (i >= 0) this.lineWaiters.splice(i, 1);
        resolve(undefined);
      }, timeoutMs);
      const w: Waiter = (l) => {
        clearTimeout(timer);
        resolve(l);
      };
      this.lineWaiters.push(w);
    });
  }

  send(data: string | Buffer): void {
    this.socket.write(data);
  }

  end(): void {
    this.socket.end();
  }

  destroy(): void {
    this.socket.destroy();
  }

  private onLine(line: string): void {
    const [cmd, idText] = line.split('\t');
    const id = Number(idText);
    if ((cmd === 'OK' || cmd === 'FAIL') && Number.isInteger(id)) this.answeredIds.push(id);
    if ((cmd === 'OK' || cmd === 'FAIL' || cmd === 'CONT') && Number.isInteger(id)) {
      const w = this.byId.get(id);
      if (w !== undefined) {
        this.byId.delete(id);
        w(line);
        return;
      }
      const early = this.early.get(id);
      if (early !== undefined) {
        early.push(line);
        return;
      }
    }
    const w = this.lineWaiters.shift();
    if (w !== undefined) w(line);
    else this.lines.push(line);
  }

  /** The next line for request id (undefined: the connection closed). */
  private lineFor(id: number): Promise<string | undefined> {
    const early = this.early.get(id);
    const first = early?.shift();
    if (first !== undefined) return Promise.resolve(first);
    if (this.ended) return Promise.resolve(undefined);
    return new Promise((resolve) => this.byId.set(id, resolve));
  }

  private allocate(id?: number): number {
    const n = id ?? this.nextId++;
    this.early.set(n, []);
    return n;
  }

  private authLine(id: number, mech: string, o: AuthOptions, resp?: string): string {
    let line = `AUTH\t${id}\t${mech}\tservice=${o.service ?? 'smtp'}\tnologin`;
    if (o.lip !== undefined) line += `\tlip=${o.lip}`;
    if (o.rip !== undefined) line += `\trip=${o.rip}`;
    if (o.secured) line += '\tsecured';
    if (resp !== undefined) line += `\tresp=${resp}`;
    return `${line}\n`;
  }

  /** AUTH PLAIN; resolves with the final answer. */
  async plain(user: string | Buffer, password: string | Buffer, o: AuthOptions = {}): Promise<Reply> {
    const id = this.allocate(o.id);
    const message = Buffer.concat([
      Buffer.from(o.authzid ?? ''),
      Buffer.of(0),
      Buffer.from(user),
      Buffer.of(0),
      Buffer.from(password),
    ]);
    try {
      if (o.initialResponse === false) {
        this.send(this.authLine(id, 'PLAIN', o));
        const cont = await this.lineFor(id);
        if (cont === undefined || !cont.startsWith('CONT\t')) return parseReply(cont, id);
        this.send(`CONT\t${id}\t${b64(message)}\n`);
      } else {
        this.send(this.authLine(id, 'PLAIN', o, b64(message)));
      }
      return parseReply(await this.lineFor(id), id);
    } finally {
      this.early.delete(id);
    }
  }

  /** AUTH LOGIN with its two CONT steps; resolves with the final answer. */
  async login(user: string | Buffer, password: string | Buffer, o: AuthOptions = {}): Promise<Reply> {
    const id = this.allocate(o.id);
    try {
      if (o.initialResponse === false) {
        this.send(this.authLine(id, 'LOGIN', o));
        const c1 = await this.lineFor(id);
        if (c1 !== `CONT\t${id}\t${b64('Username:')}`) return parseReply(c1, id);
        this.send(`CONT\t${id}\t${b64(user)}\n`);
      } else {
        this.send(this.authLine(id, 'LOGIN', o, b64(user)));
      }
      const c2 = await this.lineFor(id);
      if (c2 !== `CONT\t${id}\t${b64('Password:')}`) return parseReply(c2, id);
      this.send(`CONT\t${id}\t${b64(password)}\n`);
      return parseReply(await this.lineFor(id), id);
    } finally {
      this.early.delete(id);
    }
  }

  /** Send one raw AUTH/CONT line for id and wait for the line answering it. */
  async request(id: number, line: string): Promise<Reply> {
    this.allocate(id);
    try {
      this.send(line.endsWith('\n') ? line : `${line}\n`);
      return parseReply(await this.lineFor(id), id);
    } finally {
      this.early.delete(id);
    }
  }
}

export function parseReply(line: string | undefined, id: number): Reply {
  if (line === undefined) return { kind: 'closed', id, params: {}, flags: [], line: '' };
  const [cmd, idText, ...rest] = line.split('\t');
  const params: Record<string, string> = {};
  const flags: string[] = [];
  for (const p of rest) {
    const eq = p.indexOf('=');
    if (eq < 0) flags.push(p);
    else params[p.slice(0, eq)] = p.slice(eq + 1);
  }
  if (cmd !== 'OK' && cmd !== 'FAIL') throw new Error(`unexpected answer to request ${id}: ${line}`);
  return { kind: cmd, id: Number(idText), params, flags, line };
}
