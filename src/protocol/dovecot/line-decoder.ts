// Dovecot's auth protocol is lines ending in LF. This splits a byte stream
// into them, fed any chunking (one byte at a time included), keeping the
// tail. Pure: no sockets, no timers. A line longer than the limit is an
// error the caller ends the connection on, as Dovecot does. Lines can hold a
// password (base64 in AUTH's resp= or a CONT): every copy this makes is
// wiped once it is no longer needed, and the caller wipes the lines it gets.

/** The longest line the protocol expects (Dovecot's auth-protocol.txt: "expected to fit into 8192 bytes"). */
export const MAX_LINE_BYTES = 8192;

export type Decoded = { kind: 'lines'; lines: Buffer[] } | { kind: 'overlong'; bytes: number };

const LF = 0x0a;
const CR = 0x0d;

export class LineDecoder {
  /** The incomplete line so far (its parts, as received). */
  private parts: Buffer[] = [];
  private held = 0;

  constructor(private readonly maxLine = MAX_LINE_BYTES) {}

  /** Bytes of an incomplete line held. */
  get pending(): number {
    return this.held;
  }

  /**
   * The whole lines this chunk completes, without their LF (and a CR right
   * before it). The chunk is copied from, never kept: the caller may wipe it.
   * After 'overlong' the decoder holds nothing and must not be fed again.
   */
  push(chunk: Buffer): Decoded {
    const lines: Buffer[] = [];
    let from = 0;
    for (;;) {
      const lf = chunk.indexOf(LF, from);
      if (lf < 0) break;
      const piece = chunk.subarray(from, lf);
      if (this.held + piece.length > this.maxLine) return this.overlong(this.held + piece.length, lines);
      lines.push(this.take(piece));
      from = lf + 1;
    }
    const rest = chunk.subarray(from);
    if (rest.length > 0) {
      if (this.held + rest.length > this.maxLine) return this.overlong(this.held + rest.length, lines);
      this.parts.push(Buffer.from(rest));
      this.held += rest.length;
    }
    return { kind: 'lines', lines };
  }

  /** Forget and wipe what is held. */
  wipe(): void {
    for (const p of this.parts) p.fill(0);
    this.parts = [];
    this.held = 0;
  }

  private take(piece: Buffer): Buffer {
    let line: Buffer;
    if (this.parts.length === 0) {
      line = Buffer.from(piece);
    } else {
      line = Buffer.concat([...this.parts, piece]);
      this.wipe();
    }
    return line.length > 0 && line[line.length - 1] === CR ? line.subarray(0, line.length - 1) : line;
  }

  private overlong(bytes: number, decided: Buffer[]): Decoded {
    for (const l of decided) l.fill(0);
    this.wipe();
    return { kind: 'overlong', bytes };
  }
}
