// Encodes IMAP command arguments so that no value can end the command line
// early. Cyrus quotes only `"` and `\` and sends CR, LF and 8-bit bytes raw,
// so a password holding CRLF injects commands. Here a value goes out as a
// quoted string only when RFC 3501 allows it (7-bit, no CR/LF/NUL) and as a
// literal otherwise: `{n+}` when the server advertised LITERAL+ (or LITERAL-
// and n <= 4096), else `{n}` followed by a wait for the `+` continuation.
// NUL cannot be sent in IMAP4rev1 at all; such a value is refused.
//
// Pure: no sockets. The session writes the parts in order.

export interface LiteralSupport {
  /** LITERAL+ (RFC 7888): non-synchronizing literals of any size. */
  plus: boolean;
  /** LITERAL- (RFC 7888): non-synchronizing literals up to 4096 bytes. */
  minus: boolean;
}

export const NO_LITERAL_EXTENSIONS: LiteralSupport = { plus: false, minus: false };

/** One write; when awaitContinuation, the server's `+` must come before the next part. */
export interface CommandPart {
  bytes: Buffer;
  awaitContinuation: boolean;
}

export class UnsendableValueError extends Error {
  readonly code = 'RIMAP_UNSENDABLE';
}

const CR = 0x0d;
const LF = 0x0a;
const QUOTE = 0x22;
const BACKSLASH = 0x5c;

/** RFC 3501 quoted: TEXT-CHAR is any 7-bit CHAR except CR and LF (and NUL, not a CHAR). */
export function isQuotable(value: Buffer): boolean {
  for (const b of value) {
    if (b === 0 || b === CR || b === LF || b > 0x7f) return false;
  }
  return true;
}

/** `"` + value with `"` and `\` backslash-escaped + `"`. Caller checks isQuotable first. */
export function quoted(value: Buffer): Buffer {
  let extra = 0;
  for (const b of value) if (b === QUOTE || b === BACKSLASH) extra++;
  const out = Buffer.alloc(value.length + extra + 2);
  let i = 0;
  out[i++] = QUOTE;
  for (const b of value) {
    if (b === QUOTE || b === BACKSLASH) out[i++] = BACKSLASH;
    out[i++] = b;
  }
  out[i] = QUOTE;
  return out;
}

function nonSynchronizing(length: number, lit: LiteralSupport): boolean {
  return lit.plus || (lit.minus && length <= 4096);
}

/**
 * Builds `TAG NAME arg1 arg2 ...\r\n` as parts. Every argument is an astring
 * (quoted or literal; never an atom, so no value is parsed as syntax).
 * The buffers are fresh copies: wipe them with wipeParts() once written.
 */
export function buildCommand(tag: string, name: string, args: Buffer[], lit: LiteralSupport): CommandPart[] {
  const parts: CommandPart[] = [];
  let pending: Buffer[] = [Buffer.from(`${tag} ${name}`, 'latin1')];
  for (const arg of args) {
    if (arg.includes(0)) throw new UnsendableValueError('a value with a NUL byte cannot be sent over IMAP');
    pending.push(Buffer.from(' '));
    if (isQuotable(arg)) {
      pending.push(quoted(arg));
      continue;
    }
    const sync = !nonSynchronizing(arg.length, lit);
    pending.push(Buffer.from(`{${arg.length}${sync ? '' : '+'}}\r\n`, 'latin1'));
    if (sync) {
      parts.push({ bytes: Buffer.concat(pending), awaitContinuation: true });
      wipe(pending);
      pending = [];
    }
    pending.push(Buffer.from(arg));
  }
  pending.push(Buffer.from('\r\n'));
  parts.push({ bytes: Buffer.concat(pending), awaitContinuation: false });
  wipe(pending);
  return parts;
}

function wipe(bufs: Buffer[]): void {
  for (const b of bufs) b.fill(0);
}

export function wipeParts(parts: CommandPart[]): void {
  for (const p of parts) p.bytes.fill(0);
}
