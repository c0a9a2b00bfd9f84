// The pieces of Dovecot's auth protocol (version 1.x, server side) that are
// bytes and text only: fields split at TAB, Dovecot's TAB escapes, decimal
// ids, strict base64 straight from bytes to bytes (a password never becomes
// an unwipeable JavaScript string), and the lines the server sends.

export const PROTOCOL_MAJOR = 1;
/** The minor version Dovecot 2.3's auth server announces; clients only check the major. */
export const PROTOCOL_MINOR = 2;

const TAB = 0x09;
const ESC = 0x01;

/** A line's fields, split at TAB (views into line, not copies). */
export function splitFields(line: Buffer): Buffer[] {
  const out: Buffer[] = [];
  let from = 0;
  for (;;) {
    const tab = line.indexOf(TAB, from);
    if (tab < 0) {
      out.push(line.subarray(from));
      return out;
    }
    out.push(line.subarray(from, tab));
    from = tab + 1;
  }
}

const UNESCAPED: Record<number, number> = { 0x30: 0x00, 0x31: 0x01, 0x74: 0x09, 0x72: 0x0d, 0x6e: 0x0a };

/** Dovecot's str_tabunescape: \x01 then 0, 1, t, r or n stand for NUL, \x01, TAB, CR, LF. As a Latin-1 string. */
export function tabUnescape(field: Buffer): string {
  if (!field.includes(ESC)) return field.toString('latin1');
  const out: number[] = [];
  for (let i = 0; i < field.length; i++) {
    const b = field[i]!;
    if (b === ESC && i + 1 < field.length) {
      const next = field[++i]!;
      out.push(UNESCAPED[next] ?? next);
    } else {
      out.push(b);
    }
  }
  return Buffer.from(out).toString('latin1');
}

/** Dovecot's str_tabescape, of a Latin-1 string. */
export function tabEscape(s: string): string {
  // eslint-disable-next-line no-control-regex
  return s.replace(/[\x00\x01\t\r\n]/g, (c) => `\x01${{ '\x00': '0', '\x01': '1', '\t': 't', '\r': 'r', '\n': 'n' }[c] ?? ''}`);
}

/** A decimal number of at most 32 bits ("0" allowed), or undefined: no sign, no spaces, no leading "+". */
export function parseUint32(field: Buffer): number | undefined {
  if (field.length === 0 || field.length > 10) return undefined;
  let n = 0;
  for (const b of field) {
    if (b < 0x30 || b > 0x39) return undefined;
    n = n * 10 + (b - 0x30);
  }
  return n <= 0xffffffff ? n : undefined;
}

const ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/';
const VALUE = new Int8Array(256).fill(-1);
for (let i = 0; i < ALPHABET.length; i++) VALUE[ALPHABET.charCodeAt(i)] = i;

/**
 * Strict base64 from bytes to bytes: the standard alphabet, "=" padding only
 * at the end (optional, as some clients leave it out), nothing else. Undefined
 * for anything else, as Dovecot answers "Invalid base64 data".
 */
export function decodeBase64(text: Buffer): Buffer | undefined {
  let end = text.length;
  let pad = 0;
  while (end > 0 && text[end - 1] === 0x3d && pad < 2) {
    end--;
    pad++;
  }
  if (pad > 0 && text.length % 4 !== 0) return undefined;
  if (end % 4 === 1) return undefined;
  const out = Buffer.alloc(Math.floor((end * 3) / 4));
  let bits = 0;
  let acc = 0;
  let o = 0;
  for (let i = 0; i < end; i++) {
    const v = VALUE[text[i]!]!;
    if (v < 0) {
      out.fill(0);
      acc = 0;
      return undefined;
    }
    acc = ((acc << 6) | v) & 0xffffff;
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out[o++] = (acc >> bits) & 0xff;
    }
  }
  acc = 0;
  return out;
}

export function encodeBase64(data: Buffer): string {
  return data.toString('base64');
}

export interface Mechanism {
  name: string;
  /** Dovecot's MECH parameters; "plaintext" lets Postfix drop it where smtpd_sasl_security_options has noplaintext. */
  params: string[];
}

/**
 * The server's half of the handshake, sent as soon as a client connects: the
 * MECH lines come before SPID and CUID, because Postfix takes a SPID before
 * any MECH to mean it reached Dovecot's master socket and gives up.
 */
export function handshake(mechs: readonly Mechanism[], spid: number, cuid: number, cookie: string): Buffer {
  const lines = [
    `VERSION\t${PROTOCOL_MAJOR}\t${PROTOCOL_MINOR}`,
    ...mechs.map((m) => ['MECH', m.name, ...m.params].join('\t')),
    `SPID\t${spid}`,
    `CUID\t${cuid}`,
    `COOKIE\t${cookie}`,
    'DONE',
  ];
  return Buffer.from(`${lines.join('\n')}\n`, 'latin1');
}

/** "OK" with the user the client authenticated as (Postfix logs it as sasl_username and checks it against sender maps). */
export function okLine(id: number, user: string): Buffer {
  return Buffer.from(`OK\t${id}\tuser=${tabEscape(user)}\n`, 'latin1');
}

export interface FailFields {
  user?: string | undefined;
  /** Shown to the SMTP client by Postfix ("535 5.7.8 Error: authentication failed: <reason>"). */
  reason?: string | undefined;
  /** Dovecot 2.2+'s failure code (invalid_base64, ...). */
  code?: string | undefined;
}

export function failLine(id: number, f: FailFields = {}): Buffer {
  let line = `FAIL\t${id}`;
  if (f.user !== undefined) line += `\tuser=${tabEscape(f.user)}`;
  if (f.code !== undefined) line += `\tcode=${f.code}`;
  if (f.reason !== undefined) line += `\treason=${tabEscape(f.reason)}`;
  return Buffer.from(`${line}\n`, 'latin1');
}

/** A challenge: "CONT", the id, and the challenge's base64 (empty for PLAIN's "send your response"). */
export function contLine(id: number, challenge: Buffer): Buffer {
  return Buffer.from(`CONT\t${id}\t${encodeBase64(challenge)}\n`, 'latin1');
}
