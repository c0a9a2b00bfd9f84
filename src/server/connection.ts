// One client connection = one request, as in Cyrus ipc_unix.c: read the
// request, answer, half-close, then discard input until the client closes.
// Unlike Cyrus, every phase has a deadline, so an idle, slow or half-open
// client costs one descriptor and never blocks anybody else.
//
// The I/O and both deadlines live in the native listener (src/native/
// listener.cc); this is the protocol side of one connection, from its first
// byte until the reply is handed over.
import type pino from 'pino';
import { RequestDecoder, MAX_REQ_LEN, type RawRequest } from '../protocol/decoder';
import { encodeReply } from '../protocol/encoder';
import type { NativeListener } from '../native/binding';

export interface ConnectionOptions {
  readTimeoutMs: number;
  drainTimeoutMs: number;
  /**
   * Answers a request. Must read the login, service, realm and address
   * before it returns (they are views into buffers wiped then); the password
   * is its own copy, to wipe when done.
   */
  handle(req: RawRequest): Promise<string>;
  log: pino.Logger;
}

export class Connection {
  /** The request is complete and being answered. */
  busy = false;
  private readonly decoder = new RequestDecoder();

  constructor(
    private readonly id: number,
    private readonly listener: NativeListener,
    private readonly opts: ConnectionOptions,
    private readonly onDone: (id: number) => void,
  ) {}

  onData(chunk: Buffer): void {
    if (this.busy) return; // a request is being answered: discard, as Cyrus does
    const r = this.decoder.push(chunk);
    if (r.kind === 'incomplete') return;
    if (r.kind === 'oversize') {
      this.opts.log.error({ field: r.field, length: r.length }, `${r.field} exceeded MAX_REQ_LEN: ${MAX_REQ_LEN}`);
      this.decoder.wipe();
      this.reply('NO ');
      return;
    }
    this.busy = true;
    this.opts.handle(r.request).then(
      (text) => this.reply(text),
      () => this.reply('NO internal mechanism failure'),
    );
    // handle() has read the fields it needs (the password is its own copy):
    // leave no copy of the request in the received chunks.
    this.decoder.wipe();
  }

  /** The client half-closed. Before a whole request that is a truncated frame: Cyrus answers nothing and closes; so do we. */
  onEnd(bytes: number): void {
    if (this.busy) return; // it sent its request and half-closed: still answer
    this.opts.log.info({ bytes }, 'client closed before the request was complete');
    this.close();
  }

  onReadTimeout(bytes: number): void {
    if (this.busy) return; // the authenticator's own deadline applies now
    this.opts.log.warn(
      { bytes, timeoutMs: this.opts.readTimeoutMs },
      'request not received within the read timeout; closing connection',
    );
    this.close();
  }

  private reply(text: string): void {
    // False when the client has gone meanwhile; nothing to do then.
    this.listener.reply(this.id, encodeReply(text));
    this.onDone(this.id);
  }

  private close(): void {
    this.listener.destroy(this.id);
    this.onDone(this.id);
  }
}
