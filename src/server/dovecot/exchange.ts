// A request from the Dovecot socket as the authenticator sees it: the same
// contract as the mux door's (../exchange.ts), built in JavaScript. Here the
// door applies what happens to a request before it reaches saslauthd's mux
// when Postfix uses libsasl instead (docs/dovecot.md), so an account answers
// the same through either door:
//   - libsasl's canon_user trims the name's leading and trailing white space,
//     and checkpw.c splits it at its last "@" into login and realm;
//   - Cyrus's request rules: no field longer than 256 bytes, no empty login
//     or password (the native listener's checks on the mux door);
//   - the fingerprint, with the listener's key and construction.
import type { Fingerprinter } from '../../auth/fingerprint';
import type { CompleteRequest } from '../../protocol/dovecot/session';
import { type AnswerKind, ExchangeBase } from '../exchange';

/** Cyrus's MAX_REQ_LEN: the longest field saslauthd accepts (the mux listener's limit too). */
export const MAX_FIELD_BYTES = 256;

/** Where an exchange's answer goes: its connection. */
export interface AnswerSink {
  /** Write the answer for x (or end the connection for a temporary failure); false if x is no longer waiting. */
  answer(x: DovecotExchange, kind: AnswerKind): boolean;
}

export class DovecotExchange extends ExchangeBase {
  constructor(
    private readonly sink: AnswerSink,
    id: number,
    login: string,
    service: string,
    realm: string,
    clientAddr: string | undefined,
    fingerprint: Buffer,
    /** The name the client authenticated as (trimmed, before the split): OK's and FAIL's user=. */
    readonly user: string,
    private secret: Buffer,
  ) {
    super(id, login, service, realm, clientAddr, fingerprint);
  }

  password(): Buffer | undefined {
    return this.answered ? undefined : Buffer.from(this.secret);
  }

  /** The Dovecot protocol tells outcomes apart: OK, FAIL, or (unavailable, timeout) the connection ends. */
  answer(_text: string, kind: AnswerKind): boolean {
    if (this.answered) return false;
    this.settle();
    return this.sink.answer(this, kind);
  }

  /** The client cancelled it or left: any later answer goes nowhere. */
  abandon(): void {
    if (!this.answered) this.settle();
  }

  private settle(): void {
    this.answered = true;
    this.secret.fill(0);
    this.secret = Buffer.alloc(0);
  }
}

/** A request the door refuses before the authenticator, with the line the mux listener would log. */
export interface DoorRefusal {
  message: string;
  field?: string;
  length?: number;
}

/** C's isspace in the "C" locale, which canon_user uses. */
const SPACE = new Set([0x20, 0x09, 0x0a, 0x0b, 0x0c, 0x0d]);

function trim(b: Buffer): Buffer {
  let from = 0;
  let to = b.length;
  while (from < to && SPACE.has(b[from]!)) from++;
  while (to > from && SPACE.has(b[to - 1]!)) to--;
  return b.subarray(from, to);
}

/** Cut at the first NUL, as the mux listener cuts every field (C strings). */
function cString(s: string): string {
  const nul = s.indexOf('\0');
  return nul < 0 ? s : s.slice(0, nul);
}

/**
 * The exchange for a complete request, or why the door refuses it. The
 * request's password is the caller's to wipe; the exchange keeps its own copy
 * until it is answered.
 */
export function exchangeFor(
  r: CompleteRequest,
  sink: AnswerSink,
  fingerprinter: Fingerprinter,
): { ok: true; x: DovecotExchange } | { ok: false; refusal: DoorRefusal; user: string } {
  const name = trim(r.authcid);
  const user = name.toString('latin1');
  const at = name.lastIndexOf(0x40);
  const login = (at < 0 ? name : name.subarray(0, at)).toString('latin1');
  const realm = at < 0 ? '' : name.subarray(at + 1).toString('latin1');
  const service = cString(r.service);
  const addr = r.rip === undefined ? undefined : cString(r.rip);
  const clientAddr = addr === '' ? undefined : addr;
  // In the order the mux listener reads its fields.
  const sizes: Array<[string, number]> = [
    ['login', login.length],
    ['password', r.password.length],
    ['service', service.length],
    ['realm', realm.length],
    ['client address', clientAddr?.length ?? 0],
  ];
  for (const [field, length] of sizes) {
    if (length > MAX_FIELD_BYTES)
      return { ok: false, refusal: { message: `${field} exceeded MAX_REQ_LEN`, field, length }, user };
  }
  if (login.length === 0) return { ok: false, refusal: { message: 'NULL login received' }, user };
  if (r.password.length === 0) return { ok: false, refusal: { message: 'NULL password received' }, user };
  const fingerprint = fingerprinter.of(login, realm, r.password);
  const x = new DovecotExchange(sink, r.id, login, service, realm, clientAddr, fingerprint, user, Buffer.from(r.password));
  return { ok: true, x };
}
