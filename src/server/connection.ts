// One client connection = one request, as in Cyrus ipc_unix.c: read the
// request, answer, half-close, then discard input until the client closes.
// Unlike Cyrus, every phase has a deadline, so an idle, slow or half-open
// client costs one descriptor and never blocks anybody else.
import type net from 'node:net';
import type pino from 'pino';
import { RequestDecoder, MAX_REQ_LEN, type RawRequest } from '../protocol/decoder';
import { encodeReply } from '../protocol/encoder';

export interface ConnectionOptions {
  readTimeoutMs: number;
  drainTimeoutMs: number;
  handle(req: RawRequest): Promise<string>;
  log: pino.Logger;
}

type Phase = 'reading' | 'working' | 'draining' | 'closed';

export class Connection {
  private phase: Phase = 'reading';
  private readonly decoder = new RequestDecoder();
  private timer: NodeJS.Timeout;
  private received = 0;

  constructor(
    private readonly socket: net.Socket,
    private readonly opts: ConnectionOptions,
    private readonly onDone: (c: Connection) => void,
  ) {
    this.timer = setTimeout(() => this.readTimedOut(), opts.readTimeoutMs);
    socket.on('data', (chunk: Buffer) => this.onData(chunk));
    socket.on('end', () => this.onEnd());
    socket.on('error', (err: NodeJS.ErrnoException) => {
      // EPIPE/ECONNRESET: the client left before reading the reply.
      opts.log.debug({ code: err.code }, `connection error: ${err.message}`);
    });
    socket.on('close', () => this.onClose());
  }

  get busy(): boolean {
    return this.phase === 'working';
  }

  /** Forcibly end the connection (shutdown stragglers). */
  destroy(): void {
    this.socket.destroy();
  }

  private onData(chunk: Buffer): void {
    if (this.phase !== 'reading') return; // draining: discard, as Cyrus does
    this.received += chunk.length;
    const r = this.decoder.push(chunk);
    if (r.kind === 'incomplete') return;
    clearTimeout(this.timer);
    if (r.kind === 'oversize') {
      this.opts.log.error({ field: r.field, length: r.length }, `${r.field} exceeded MAX_REQ_LEN: ${MAX_REQ_LEN}`);
      this.reply('NO ');
      return;
    }
    this.phase = 'working';
    this.opts.handle(r.request).then(
      (text) => this.reply(text),
      () => this.reply('NO internal mechanism failure'),
    );
  }

  private reply(text: string): void {
    if (this.phase === 'closed') return;
    this.phase = 'draining';
    // end() writes the reply, then shutdown(SHUT_WR): the client sees EOF.
    this.socket.end(encodeReply(text));
    this.timer = setTimeout(() => this.socket.destroy(), this.opts.drainTimeoutMs);
  }

  private onEnd(): void {
    if (this.phase === 'reading') {
      // Truncated frame: Cyrus answers nothing and closes; so do we.
      this.opts.log.info({ bytes: this.received }, 'client closed before the request was complete');
      this.socket.destroy();
    } else if (this.phase === 'draining') {
      this.socket.destroy();
    }
    // working: the client half-closed after sending; we still answer.
  }

  private readTimedOut(): void {
    this.opts.log.warn(
      { bytes: this.received, timeoutMs: this.opts.readTimeoutMs },
      'request not received within the read timeout; closing connection',
    );
    this.socket.destroy();
  }

  private onClose(): void {
    clearTimeout(this.timer);
    this.phase = 'closed';
    this.onDone(this);
  }
}
