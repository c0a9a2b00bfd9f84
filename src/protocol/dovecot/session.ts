// One connection's side of Dovecot's auth protocol, server end, as a state
// machine: lines in, what to do out. Pure: no sockets, no timers, no
// credentials policy (the door decides what a login may look like); the
// caller passes the clock in.
//
//   version --VERSION 1.x--> cpid --CPID--> ready --(violation)--> closed
//
// In ready: AUTH opens a request, CONT continues one, CANCEL forgets one.
// A request waits for the client (PLAIN without an initial response; LOGIN's
// username and password), then is decided by the caller, who calls done(id)
// once it has answered it. Many requests may be open at once, answered in
// whatever order they are decided.
//
// What is a protocol violation follows Dovecot's auth server (the connection
// is closed: the client is broken, or not a Dovecot auth client at all);
// what concerns one request gets a FAIL for that request and the connection
// goes on.
import { LOGIN_PASSWORD_PROMPT, LOGIN_USERNAME_PROMPT, loginAnswer, mechanismNamed, parsePlain, type MechName } from './sasl';
import { contLine, decodeBase64, failLine, PROTOCOL_MAJOR, parseUint32, splitFields, tabUnescape } from './wire';

export type SessionState = 'version' | 'cpid' | 'ready' | 'closed';

/** A request whose credentials are complete, for the caller to decide. */
export interface CompleteRequest {
  id: number;
  mech: MechName;
  /** The authentication identity, as the client's bytes. */
  authcid: Buffer;
  /** A copy of the password, the caller's to wipe. */
  password: Buffer;
  /** service= (Postfix: smtpd_sasl_service, "smtp"). */
  service: string;
  /** rip=: the client's address as the SMTP server saw it; undefined if absent or empty. */
  rip: string | undefined;
  /** secured: the client's own connection is TLS (or local). */
  secured: boolean;
}

/** Why one request got a FAIL from the protocol layer (before any check). */
export type RefuseWhy =
  | 'unsupported-mechanism'
  | 'no-service'
  | 'invalid-base64'
  | 'malformed-plain'
  | 'authzid'
  | 'too-many-requests'
  | 'unknown-id'
  | 'unexpected-continuation';

/** Why the connection must end. */
export type CloseWhy =
  'bad-version-line' | 'version-mismatch' | 'handshake-order' | 'unknown-command' | 'malformed-command' | 'duplicate-id';

export type SessionOutput =
  /** Bytes to write. */
  | { kind: 'send'; bytes: Buffer }
  /** Decide this request (and call done(id) once answered). */
  | { kind: 'request'; request: CompleteRequest }
  /** A FAIL for this request, already decided here: write it. */
  | { kind: 'refuse'; id: number; why: RefuseWhy; bytes: Buffer }
  /** A request being decided is abandoned (CANCEL, a stray CONT): its answer must not be written. */
  | { kind: 'drop'; id: number }
  /** A protocol violation: end the connection. */
  | { kind: 'close'; why: CloseWhy; detail: string };

type Step = 'plain' | 'username' | 'password' | 'deciding';

interface Open {
  mech: MechName;
  step: Step;
  service: string;
  rip: string | undefined;
  secured: boolean;
  /** LOGIN's username, once given. */
  username?: Buffer;
  /** When it began waiting for the client (the caller's clock). */
  since: number;
}

/** Reasons shown to the client. Never which of login or password was wrong: those get the door's one refusal text. */
const REASONS: Record<RefuseWhy, string> = {
  'unsupported-mechanism': 'Unsupported authentication mechanism',
  'no-service': 'Authentication request has no service',
  'invalid-base64': 'Invalid base64 data',
  'malformed-plain': 'Invalid PLAIN message',
  authzid: 'Authorization identity differs from authentication identity',
  'too-many-requests': 'Too many authentication requests in progress',
  'unknown-id': 'Authentication request timed out',
  'unexpected-continuation': 'Unexpected continuation',
};

const CODES: Partial<Record<RefuseWhy, string>> = {
  'unsupported-mechanism': 'auth_mech_invalid',
  'invalid-base64': 'invalid_base64',
};

export interface SessionOptions {
  /** Requests open at once on this connection; past it a new AUTH gets a FAIL. */
  maxRequests: number;
}

export class DovecotSession {
  private st: SessionState = 'version';
  private clientMinor = 0;
  private readonly open = new Map<number, Open>();

  constructor(private readonly opts: SessionOptions) {}

  get state(): SessionState {
    return this.st;
  }

  /** Requests open: waiting for the client or being decided. */
  get openRequests(): number {
    return this.open.size;
  }

  /** Requests being decided by the caller. */
  get deciding(): number {
    let n = 0;
    for (const r of this.open.values()) if (r.step === 'deciding') n++;
    return n;
  }

  /** The earliest time a request began waiting for the client, if one is. */
  get oldestWait(): number | undefined {
    let oldest: number | undefined;
    for (const r of this.open.values()) if (r.step !== 'deciding' && (oldest === undefined || r.since < oldest)) oldest = r.since;
    return oldest;
  }

  /** The caller answered this request (or gave up on it). */
  done(id: number): void {
    this.open.delete(id);
  }

  /** Forget requests that began waiting for the client before `before`; returns their ids. */
  expire(before: number): number[] {
    const ids: number[] = [];
    for (const [id, r] of this.open) {
      if (r.step !== 'deciding' && r.since < before) {
        this.open.delete(id);
        ids.push(id);
      }
    }
    return ids;
  }

  /** One line from the client, without its LF. The caller wipes it afterwards: nothing here keeps a view of it. */
  line(line: Buffer, now: number): SessionOutput[] {
    switch (this.st) {
      case 'closed':
        return [];
      case 'version':
        return this.version(line);
      case 'cpid':
        return this.cpid(line);
      case 'ready':
        return this.command(line, now);
    }
  }

  private close(why: CloseWhy, detail: string): SessionOutput[] {
    this.st = 'closed';
    this.open.clear();
    return [{ kind: 'close', why, detail }];
  }

  private version(line: Buffer): SessionOutput[] {
    const f = splitFields(line);
    const major = f.length === 3 && f[0]!.toString('latin1') === 'VERSION' ? parseUint32(f[1]!) : undefined;
    const minor = f.length === 3 ? parseUint32(f[2]!) : undefined;
    if (major === undefined || minor === undefined)
      return this.close('bad-version-line', 'the first line must be VERSION <major> <minor>');
    if (major !== PROTOCOL_MAJOR)
      return this.close('version-mismatch', `client speaks version ${major}.${minor}, this server ${PROTOCOL_MAJOR}.x`);
    this.clientMinor = minor;
    this.st = 'cpid';
    return [];
  }

  private cpid(line: Buffer): SessionOutput[] {
    const f = splitFields(line);
    if (f[0]!.toString('latin1') !== 'CPID') return this.close('handshake-order', `${commandName(f[0]!)} before CPID`);
    if (f.length !== 2 || parseUint32(f[1]!) === undefined) return this.close('malformed-command', 'CPID needs one number');
    this.st = 'ready';
    return [];
  }

  private command(line: Buffer, now: number): SessionOutput[] {
    const f = splitFields(line);
    const name = f[0]!.toString('latin1');
    switch (name) {
      case 'AUTH':
        return this.auth(f, now);
      case 'CONT':
        return this.cont(f, now);
      case 'CANCEL': {
        const id = f.length === 2 ? parseUint32(f[1]!) : undefined;
        if (id === undefined) return this.close('malformed-command', 'CANCEL needs one request id');
        const r = this.open.get(id);
        this.open.delete(id);
        return r?.step === 'deciding' ? [{ kind: 'drop', id }] : [];
      }
      case 'VERSION':
      case 'CPID':
        return this.close('handshake-order', `${name} after the handshake`);
      default:
        return this.close('unknown-command', `unknown command ${commandName(f[0]!)}`);
    }
  }

  private refuse(id: number, why: RefuseWhy, user?: Buffer): SessionOutput {
    return {
      kind: 'refuse',
      id,
      why,
      bytes: failLine(id, { user: user?.toString('latin1'), reason: REASONS[why], code: CODES[why] }),
    };
  }

  private auth(f: Buffer[], now: number): SessionOutput[] {
    const id = f.length >= 3 ? parseUint32(f[1]!) : undefined;
    if (id === undefined || id === 0)
      return this.close('malformed-command', 'AUTH needs a request id (1 or more) and a mechanism');
    if (this.open.has(id)) return this.close('duplicate-id', `AUTH reuses request id ${id}, still in progress`);
    let service: string | undefined;
    let rip: string | undefined;
    let secured = false;
    let resp: Buffer | undefined;
    for (const p of f.slice(3)) {
      const eq = p.indexOf(0x3d);
      const key = (eq < 0 ? p : p.subarray(0, eq)).toString('latin1');
      const value = eq < 0 ? Buffer.alloc(0) : p.subarray(eq + 1);
      if (key === 'resp') {
        // The last parameter: anything after it is ignored (auth-protocol.txt),
        // so that a client pasting user data into it cannot add parameters.
        resp = value;
        break;
      }
      if (key === 'service') service = tabUnescape(value);
      else if (key === 'rip') rip = tabUnescape(value);
      else if (key === 'secured') secured = true;
      // lip, lport, rport, nologin, valid-client-cert, ...: nothing here depends on them.
    }
    const mech = mechanismNamed(f[2]!.toString('latin1'));
    if (mech === undefined) return [this.refuse(id, 'unsupported-mechanism')];
    if (service === undefined || service === '') return [this.refuse(id, 'no-service')];
    if (this.open.size >= this.opts.maxRequests) return [this.refuse(id, 'too-many-requests')];
    const r: Open = {
      mech,
      step: mech === 'PLAIN' ? 'plain' : 'username',
      service,
      rip: rip === '' ? undefined : rip,
      secured,
      since: now,
    };

    // An absent initial response, or an empty one from a client older than
    // protocol 1.2 (Exim sends "resp=" for none), means "ask for it".
    let data: Buffer | undefined;
    if (resp !== undefined && !(resp.length === 0 && this.clientMinor < 2)) {
      data = resp.length === 0 || (resp.length === 1 && resp[0] === 0x3d) ? Buffer.alloc(0) : decodeBase64(resp);
      if (data === undefined) return [this.refuse(id, 'invalid-base64')];
    }
    this.open.set(id, r);
    if (data === undefined) {
      return [{ kind: 'send', bytes: contLine(id, mech === 'PLAIN' ? Buffer.alloc(0) : LOGIN_USERNAME_PROMPT) }];
    }
    // LOGIN with an empty initial response still asks for the username.
    if (mech === 'LOGIN' && data.length === 0) return [{ kind: 'send', bytes: contLine(id, LOGIN_USERNAME_PROMPT) }];
    return this.step(id, r, data, now);
  }

  private cont(f: Buffer[], now: number): SessionOutput[] {
    const id = f.length === 3 ? parseUint32(f[1]!) : undefined;
    if (id === undefined) return this.close('malformed-command', 'CONT needs a request id and data');
    const r = this.open.get(id);
    if (r === undefined) return [this.refuse(id, 'unknown-id')];
    if (r.step === 'deciding') {
      this.open.delete(id);
      return [{ kind: 'drop', id }, this.refuse(id, 'unexpected-continuation')];
    }
    const data = decodeBase64(f[2]!);
    if (data === undefined) {
      this.open.delete(id);
      return [this.refuse(id, 'invalid-base64')];
    }
    return this.step(id, r, data, now);
  }

  /** The client's next piece of the mechanism's dialogue; data is wiped here. */
  private step(id: number, r: Open, data: Buffer, now: number): SessionOutput[] {
    try {
      if (r.mech === 'PLAIN') {
        const m = parsePlain(data);
        if (!m.ok) {
          this.open.delete(id);
          return [this.refuse(id, m.why === 'authzid' ? 'authzid' : 'malformed-plain')];
        }
        return [this.complete(id, r, m.authcid, m.password)];
      }
      if (r.step === 'username') {
        r.username = Buffer.from(loginAnswer(data));
        r.step = 'password';
        r.since = now;
        return [{ kind: 'send', bytes: contLine(id, LOGIN_PASSWORD_PROMPT) }];
      }
      return [this.complete(id, r, r.username ?? Buffer.alloc(0), loginAnswer(data))];
    } finally {
      data.fill(0);
    }
  }

  private complete(id: number, r: Open, authcid: Buffer, password: Buffer): SessionOutput {
    r.step = 'deciding';
    return {
      kind: 'request',
      request: {
        id,
        mech: r.mech,
        authcid: Buffer.from(authcid),
        password: Buffer.from(password),
        service: r.service,
        rip: r.rip,
        secured: r.secured,
      },
    };
  }
}

/** A command name for a log line: short and printable. */
function commandName(field: Buffer): string {
  const s = field.subarray(0, 32).toString('latin1');
  return JSON.stringify(s.replace(/[^\x20-\x7e]/g, '?'));
}
