// Pure, incremental decoder for saslauthd's request framing (Cyrus 2.1.28
// ipc_unix.c: do_request). No sockets, no timers: feed it chunks of any size
// and it says when a request is complete.
//
// A request is four counted strings: a 2-byte big-endian length, then that
// many bytes: login, password, service, realm. Upstream master appends a 5th,
// the client address; we take it only if its bytes are already buffered when
// the realm completes, and never wait for it (waiting is how a master daemon
// deadlocks against every released client).

export const MAX_REQ_LEN = 256;
export const FIELD_NAMES = ['login', 'password', 'service', 'realm'] as const;
export type FieldName = (typeof FIELD_NAMES)[number];

export interface RawRequest {
  login: Buffer;
  password: Buffer;
  service: Buffer;
  realm: Buffer;
  clientAddr?: Buffer;
}

export type DecodeResult =
  | { kind: 'incomplete' }
  | { kind: 'request'; request: RawRequest }
  | { kind: 'oversize'; field: FieldName | 'client address'; length: number };

const INCOMPLETE: DecodeResult = { kind: 'incomplete' };
const EMPTY = Buffer.alloc(0);

// Cyrus copies each field into a C string, so an embedded NUL ends it.
function cString(b: Buffer): Buffer {
  const nul = b.indexOf(0);
  return nul === -1 ? b : b.subarray(0, nul);
}

export class RequestDecoder {
  private buf: Buffer = EMPTY;
  private readonly fields: Buffer[] = [];
  private done = false;
  /** Every buffer that has held request bytes, for wipe(). */
  private readonly held: Buffer[] = [];

  /** Feed the next chunk; returns the outcome so far. After a final result, further input is ignored. */
  push(chunk: Buffer): DecodeResult {
    if (this.done) return INCOMPLETE;
    this.held.push(chunk);
    if (this.buf.length > 0) {
      this.buf = Buffer.concat([this.buf, chunk]);
      this.held.push(this.buf);
    } else {
      this.buf = chunk;
    }
    while (this.fields.length < FIELD_NAMES.length) {
      if (this.buf.length < 2) return INCOMPLETE;
      const len = this.buf.readUInt16BE(0);
      if (len > MAX_REQ_LEN) {
        const field = FIELD_NAMES[this.fields.length]!;
        this.finish();
        return { kind: 'oversize', field, length: len };
      }
      if (this.buf.length < 2 + len) return INCOMPLETE;
      // The password is copied so the caller can wipe it without touching the
      // socket's read buffer; the other fields are views.
      const value = this.buf.subarray(2, 2 + len);
      this.fields.push(cString(this.fields.length === 1 ? Buffer.from(value) : value));
      this.buf = this.buf.subarray(2 + len);
    }
    const [login, password, service, realm] = this.fields as [Buffer, Buffer, Buffer, Buffer];
    const request: RawRequest = { login, password, service, realm };
    if (this.buf.length >= 2) {
      const len = this.buf.readUInt16BE(0);
      if (len <= MAX_REQ_LEN && this.buf.length >= 2 + len) {
        request.clientAddr = cString(Buffer.from(this.buf.subarray(2, 2 + len)));
      }
    }
    this.finish();
    return { kind: 'request', request };
  }

  /**
   * Zero every byte this decoder was fed or assembled (the password among
   * them). The request's login, service, realm and address are views into
   * these buffers: call this only once they have been read.
   */
  wipe(): void {
    for (const b of this.held) b.fill(0);
    this.held.length = 0;
  }

  private finish(): void {
    this.done = true;
    this.buf = EMPTY;
    this.fields.length = 0;
  }
}
