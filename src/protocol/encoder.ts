// Encoders for both directions of the saslauthd protocol, shared by the
// daemon (replies) and the test client (requests).

/** One counted string: 2-byte big-endian length, then the bytes. No NUL. */
export function countedString(value: string | Buffer): Buffer {
  const body = typeof value === 'string' ? Buffer.from(value, 'utf8') : value;
  if (body.length > 0xffff) throw new RangeError(`counted string of ${body.length} bytes exceeds 65535`);
  const out = Buffer.allocUnsafe(2 + body.length);
  out.writeUInt16BE(body.length, 0);
  body.copy(out, 2);
  return out;
}

const replyCache = new Map<string, Buffer>();

/**
 * The daemon's answer, e.g. "OK" or "NO Incorrect password". Replies come
 * from a small fixed set, so each is encoded once (the hot path allocates
 * nothing here). Callers must not modify the returned buffer.
 */
export function encodeReply(text: string): Buffer {
  let b = replyCache.get(text);
  if (b === undefined) {
    b = countedString(text);
    if (replyCache.size < 256) replyCache.set(text, b);
  }
  return b;
}

export interface RequestFields {
  login: string | Buffer;
  password: string | Buffer;
  service: string | Buffer;
  realm: string | Buffer;
  clientAddr?: string | Buffer;
}

/** A client request: login, password, service, realm [, client address]. */
export function encodeRequest(f: RequestFields): Buffer {
  const parts = [f.login, f.password, f.service, f.realm];
  if (f.clientAddr !== undefined) parts.push(f.clientAddr);
  return Buffer.concat(parts.map(countedString));
}

/** Incremental reader for a reply: returns the text once complete, else undefined. */
export function decodeReply(buf: Buffer): { text: string; length: number } | undefined {
  if (buf.length < 2) return undefined;
  const len = buf.readUInt16BE(0);
  if (buf.length < 2 + len) return undefined;
  return { text: buf.subarray(2, 2 + len).toString('utf8'), length: len };
}
