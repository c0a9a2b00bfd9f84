// Pure, incremental decoder for IMAP server responses. No sockets, no timers:
// feed it chunks of any size (one byte at a time included) and it returns the
// complete responses, keeping the tail. A response is a line ending in CRLF
// (a bare LF is tolerated); a line ending in `{n}` carries an n-byte literal
// and continues after it, so a literal can never be mistaken for a new line.

export interface ImapResponse {
  kind: 'untagged' | 'tagged' | 'continuation';
  /** The tag for tagged responses, '*' for untagged, '+' for continuations. */
  tag: string;
  /** Upper-cased first word after the tag: OK, NO, BAD, BYE, PREAUTH, CAPABILITY, or a number. */
  status: string;
  /** Response code without brackets, e.g. "CAPABILITY IMAP4rev1 LITERAL+" or "AUTHENTICATIONFAILED". */
  code: string | undefined;
  /** Human-readable text after the status and code. */
  text: string;
  /** The whole response as received, without the final line break. */
  raw: Buffer;
}

export class ResponseDecodeError extends Error {
  readonly code = 'RIMAP_TOO_LONG';
}

/** Larger than any greeting or capability list; a server sending more is not talking IMAP to us. */
export const MAX_RESPONSE_BYTES = 64 * 1024;

export class ResponseDecoder {
  private buf: Buffer = Buffer.alloc(0);
  /** Where the current line segment starts: 0, or just after a literal. */
  private segmentStart = 0;
  /** Where to resume looking for LF (bytes before it were already searched). */
  private scanFrom = 0;
  /** While a literal is arriving: the offset just after its last byte. */
  private literalEnd = 0;

  constructor(private readonly maxBytes = MAX_RESPONSE_BYTES) {}

  /** Bytes received but not yet part of a complete response. */
  get buffered(): number {
    return this.buf.length;
  }

  push(chunk: Buffer): ImapResponse[] {
    if (chunk.length > 0) this.buf = this.buf.length === 0 ? chunk : Buffer.concat([this.buf, chunk]);
    const out: ImapResponse[] = [];
    for (;;) {
      if (this.literalEnd > 0) {
        if (this.buf.length < this.literalEnd) break;
        this.segmentStart = this.scanFrom = this.literalEnd;
        this.literalEnd = 0;
      }
      const lf = this.buf.indexOf(0x0a, this.scanFrom);
      if (lf === -1) {
        this.scanFrom = this.buf.length;
        break;
      }
      const lineEnd = lf > 0 && this.buf[lf - 1] === 0x0d ? lf - 1 : lf;
      const literal = literalLength(this.buf, this.segmentStart, lineEnd);
      if (literal !== undefined) {
        // The literal's bytes belong to this response, whatever they contain.
        this.literalEnd = lf + 1 + literal;
        if (this.literalEnd > this.maxBytes) throw this.tooLong();
        continue;
      }
      out.push(parseResponse(Buffer.from(this.buf.subarray(0, lineEnd))));
      this.buf = this.buf.subarray(lf + 1);
      this.segmentStart = this.scanFrom = 0;
    }
    if (this.buf.length > this.maxBytes) throw this.tooLong();
    return out;
  }

  private tooLong(): ResponseDecodeError {
    return new ResponseDecodeError(`server response longer than ${this.maxBytes} bytes`);
  }
}

/** `{123}` (or `{123+}`) right before the line end announces a literal. */
function literalLength(buf: Buffer, segmentStart: number, lineEnd: number): number | undefined {
  if (lineEnd - segmentStart < 3 || buf[lineEnd - 1] !== 0x7d /* } */) return undefined;
  let i = lineEnd - 2;
  if (buf[i] === 0x2b /* + */) i--;
  const digitsEnd = i + 1;
  while (i >= segmentStart && buf[i]! >= 0x30 && buf[i]! <= 0x39) i--;
  if (i < segmentStart || buf[i] !== 0x7b /* { */ || i + 1 === digitsEnd || digitsEnd - (i + 1) > 9) return undefined;
  return Number(buf.toString('latin1', i + 1, digitsEnd));
}

export function parseResponse(raw: Buffer): ImapResponse {
  const line = raw.toString('utf8');
  if (line === '+' || line.startsWith('+ ')) {
    return { kind: 'continuation', tag: '+', status: '', code: undefined, text: line.slice(2), raw };
  }
  const sp = line.indexOf(' ');
  const tag = sp === -1 ? line : line.slice(0, sp);
  let rest = sp === -1 ? '' : line.slice(sp + 1);
  const sp2 = rest.indexOf(' ');
  const status = (sp2 === -1 ? rest : rest.slice(0, sp2)).toUpperCase();
  rest = sp2 === -1 ? '' : rest.slice(sp2 + 1);
  let code: string | undefined;
  if (rest.startsWith('[')) {
    const close = rest.indexOf(']');
    if (close !== -1) {
      code = rest.slice(1, close);
      rest = rest.slice(close + 1).trimStart();
    }
  }
  return { kind: tag === '*' ? 'untagged' : 'tagged', tag, status, code, text: rest, raw };
}

/** Capability atoms from `* CAPABILITY ...` or a `[CAPABILITY ...]` response code; undefined if neither. */
export function capabilitiesOf(r: ImapResponse): Set<string> | undefined {
  let list: string | undefined;
  if (r.kind === 'untagged' && r.status === 'CAPABILITY') list = r.text;
  else if (r.code !== undefined && /^CAPABILITY(\s|$)/i.test(r.code)) list = r.code.slice('CAPABILITY'.length);
  if (list === undefined) return undefined;
  return new Set(
    list
      .split(/\s+/)
      .filter((c) => c !== '')
      .map((c) => c.toUpperCase()),
  );
}
