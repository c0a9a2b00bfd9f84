// rimap: checks a login by logging in to a remote IMAP server, as Cyrus's
// auth_rimap.c does: greeting, `saslauthd LOGIN user pass`, the tagged OK or
// NO decides, then `saslauthd LOGOUT` without waiting. Same wire replies.
//
// Beyond Cyrus: values are sent as literals when a quoted string could carry
// CR/LF (no command injection); imaps:// and STARTTLS with certificate
// verification; several servers, tried in order while no password has been
// sent; names resolved at every connection; per-step timeouts plus the
// request's AbortSignal. The password is copied once into buffers of our own
// and wiped after use; it never reaches a log.
import dns from 'node:dns';
import fs from 'node:fs';
import net from 'node:net';
import tls from 'node:tls';
import type pino from 'pino';
import { type AuthRequest, type Backend, type BackendFactory, denied, ok, type Outcome, shed, unavailable } from '../backend';
import { PriorityGate } from '../gate';
import { buildCommand, type LiteralSupport, quoted, wipeParts } from './command';
import { RimapError, type RimapErrorCode } from './errors';
import { capabilitiesOf, type ImapResponse } from './response-decoder';
import { describeTarget, parseRimapOption, RimapOptionError, type RimapTarget, targetWarnings } from './options';
import { ImapSession, type TlsParams } from './session';

/** Cyrus 2.1.28's replies (saslauthd-facts §3.4, §9). */
export const REPLY = {
  ok: 'OK remote authentication successful',
  rejected: 'NO remote server rejected your credentials',
  unexpected: 'NO [ALERT] Unexpected response from remote authentication server',
  unavailable: 'NO [ALERT] The remote authentication server is currently unavailable',
  noContact: "NO [ALERT] Couldn't contact remote authentication server",
  sync: 'NO [ALERT] error synchronizing with remote authentication server',
  internal: 'NO [ALERT] saslauthd internal error',
} as const;

/** Cyrus's tag for LOGIN and LOGOUT. */
export const TAG = 'saslauthd';
/** Our STARTTLS gets its own tag, so no answer can be taken for another's. */
export const STARTTLS_TAG = 'saslauthd0';

const ERROR_REPLY: Record<RimapErrorCode, string> = {
  RIMAP_DNS: REPLY.noContact,
  RIMAP_CONNECT: REPLY.noContact,
  RIMAP_CONNECT_TIMEOUT: REPLY.noContact,
  RIMAP_TLS: REPLY.noContact,
  RIMAP_TIMEOUT: REPLY.unavailable,
  RIMAP_GREETING_REFUSED: REPLY.unavailable,
  RIMAP_ABORTED: REPLY.unavailable,
  RIMAP_CLOSED: REPLY.unexpected,
  RIMAP_PROTOCOL: REPLY.unexpected,
  RIMAP_STARTTLS_REFUSED: REPLY.unexpected,
  RIMAP_LOGINDISABLED: REPLY.unexpected,
  RIMAP_SOCKET: REPLY.sync,
  RIMAP_TOO_LONG: REPLY.sync,
};

/** NO response codes (RFC 5530) that say "not now" rather than "wrong credentials". */
const TRANSIENT_CODES = new Set(['UNAVAILABLE', 'SERVERBUG']);

export interface ResolvedAddress {
  address: string;
  family: number;
}
export type LookupFn = (host: string) => Promise<ResolvedAddress[]>;

/** getaddrinfo at every connection, addresses in the order the resolver prefers. */
export const systemLookup: LookupFn = async (host) => {
  const family = net.isIP(host);
  if (family !== 0) return [{ address: host, family }];
  return dns.promises.lookup(host, { all: true, verbatim: true });
};

export interface RimapDeps {
  lookup: LookupFn;
}

interface Server {
  target: RimapTarget;
  /** Canonical form for logs. */
  label: string;
  ca: Buffer | undefined;
  /** It answered the last time it was tried (true before any try): metrics and the status line. */
  up: boolean;
}

type Attempt = { kind: 'decided'; outcome: Outcome } | { kind: 'failed'; error: RimapError };

/** Reads and validates a target's cafile (undefined without one); throws RimapOptionError naming the file. */
export function loadCa(t: RimapTarget): Buffer | undefined {
  if (t.caFile === undefined) return undefined;
  let pem: Buffer;
  try {
    pem = fs.readFileSync(t.caFile);
  } catch (err) {
    throw new RimapOptionError(`-O '${t.spec}': cafile=${t.caFile}: ${(err as Error).message}`);
  }
  if (!pem.includes('-----BEGIN CERTIFICATE-----')) {
    throw new RimapOptionError(`-O '${t.spec}': cafile=${t.caFile}: no PEM certificate ("-----BEGIN CERTIFICATE-----") in it`);
  }
  try {
    tls.createSecureContext({ ca: pem });
  } catch (err) {
    throw new RimapOptionError(`-O '${t.spec}': cafile=${t.caFile}: ${(err as Error).message}`);
  }
  return pem;
}

/** Shorter pieces of a password cut at a line break are left: they would blank out common words. */
const MIN_FRAGMENT = 3;

/** The pieces of secret between its CR, LF and NUL bytes (views into it, not copies). */
function fragments(secret: Buffer): Buffer[] {
  const out: Buffer[] = [];
  let start = 0;
  for (let i = 0; i <= secret.length; i++) {
    const b = secret[i];
    if (i < secret.length && b !== 0x0d && b !== 0x0a && b !== 0x00) continue;
    if (i - start >= MIN_FRAGMENT && i - start < secret.length) out.push(secret.subarray(start, i));
    start = i + 1;
  }
  return out;
}

/**
 * A server line fit for a log: control bytes escaped, at most 200
 * characters, and each secret cut out in every form a server can echo it in
 * on one line: as sent (also the bytes of a literal), in its quoted-string
 * form with `"` and `\` escaped, and each piece between its CR, LF or NUL
 * bytes (a literal echoed back breaks the server's line there).
 */
export function sanitizeLine(raw: Buffer, secrets: Buffer[]): string {
  const present = secrets.filter((s) => s.length > 0);
  // Copies of the secrets: wiped below.
  const escaped = present.map((s) => quoted(s));
  try {
    const forms = [...present, ...escaped.map((q) => q.subarray(1, -1)), ...present.flatMap(fragments)];
    // Longest first, so that no form is cut apart by the redaction of a shorter one.
    forms.sort((x, y) => y.length - x.length);
    let b = raw;
    for (const s of forms) {
      let at = b.indexOf(s);
      while (at !== -1) {
        b = Buffer.concat([b.subarray(0, at), Buffer.from('[redacted]'), b.subarray(at + s.length)]);
        at = b.indexOf(s, at + '[redacted]'.length);
      }
    }
    // \p{Cc}: control characters, which a log line must not carry raw.
    const text = b.toString('utf8').replace(/\p{Cc}/gu, (c) => `\\x${c.charCodeAt(0).toString(16).padStart(2, '0')}`);
    return text.length > 200 ? `${text.slice(0, 200)}…` : text;
  } finally {
    for (const q of escaped) q.fill(0);
  }
}

function toRimapError(err: unknown): RimapError {
  if (err instanceof RimapError) return err;
  return new RimapError('RIMAP_PROTOCOL', err instanceof Error ? err.message : String(err));
}

/** p, or err after ms (a resolver that hangs must not eat the whole request deadline). */
function withTimeout<T>(p: Promise<T>, ms: number, err: () => Error): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(err()), ms);
  });
  return Promise.race([p, late]).finally(() => clearTimeout(timer));
}

function abortable<T>(p: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) return Promise.reject(new RimapError('RIMAP_ABORTED', 'request deadline passed'));
  return new Promise((resolve, reject) => {
    const onAbort = (): void => reject(new RimapError('RIMAP_ABORTED', 'request deadline passed'));
    signal.addEventListener('abort', onAbort, { once: true });
    p.then(
      (v) => {
        signal.removeEventListener('abort', onAbort);
        resolve(v);
      },
      (e: unknown) => {
        signal.removeEventListener('abort', onAbort);
        reject(e instanceof Error ? e : new Error(String(e)));
      },
    );
  });
}

/** Connections to IMAP servers at once; more requests wait their turn (known-good first). */
const MAX_IN_FLIGHT = 64;

export class RimapBackend implements Backend {
  readonly name = 'rimap';
  readonly refusalText = REPLY.rejected;
  private readonly gate = new PriorityGate(MAX_IN_FLIGHT);
  private serverList: Server[];
  private readonly live = new Set<ImapSession>();
  private closing = false;

  constructor(
    targets: RimapTarget[],
    private readonly log: pino.Logger,
    private readonly deps: RimapDeps = { lookup: systemLookup },
  ) {
    this.serverList = targets.map((target) => ({ target, label: describeTarget(target), ca: loadCa(target), up: true }));
  }

  servers(): Array<{ name: string; up: boolean }> {
    return this.serverList.map((s) => ({ name: s.label, up: s.up }));
  }

  /** SIGHUP: re-read the CA files (certificate rotation). On error the old ones stay. */
  async reload(): Promise<void> {
    this.serverList = this.serverList.map((s) => ({ ...s, ca: loadCa(s.target) }));
  }

  async close(): Promise<void> {
    this.closing = true;
    for (const s of this.live) s.destroy();
  }

  async authenticate(req: AuthRequest, signal: AbortSignal): Promise<Outcome> {
    // Our own copy: the caller wipes req.password when its deadline passes,
    // possibly while a write of ours is still queued.
    const secret = Buffer.from(req.password);
    // The bytes the client sent (Latin-1 string: one character per byte).
    const login = Buffer.from(req.login, 'latin1');
    let entered = false;
    try {
      if (login.includes(0) || secret.includes(0)) {
        return denied(REPLY.rejected, 'login or password holds a NUL byte, which IMAP cannot carry; not sent');
      }
      const gate = await this.gate.enter(signal, { high: req.queue?.high, shedAfterMs: req.queue?.shedAfterMs });
      if (gate === 'shed') return shed(REPLY.rejected);
      if (gate === 'aborted')
        return unavailable(REPLY.unavailable, 'rimap request abandoned while waiting for a free connection');
      entered = true;
      return await this.tryServers(login, secret, signal);
    } catch (err) {
      this.log.error({ err: { message: (err as Error).message } }, 'rimap: internal error');
      return unavailable(REPLY.internal);
    } finally {
      if (entered) this.gate.leave();
      secret.fill(0);
    }
  }

  private async tryServers(login: Buffer, secret: Buffer, signal: AbortSignal): Promise<Outcome> {
    let last: RimapError = new RimapError('RIMAP_ABORTED', 'request deadline passed before any server was tried');
    for (const [i, server] of this.serverList.entries()) {
      if (signal.aborted || this.closing) break;
      const attempt = await this.tryServer(server, login, secret, signal);
      if (attempt.kind === 'decided') return attempt.outcome;
      if (attempt.error.code !== 'RIMAP_ABORTED') server.up = false;
      last = attempt.error;
      const more = i + 1 < this.serverList.length && !signal.aborted;
      this.logFailure(server, attempt.error, more ? '; trying the next server' : '');
    }
    return unavailable(ERROR_REPLY[last.code]);
  }

  private logFailure(server: Server, e: RimapError, suffix: string): void {
    const fields = { server: server.label, code: e.code, ...(e.sysCode !== undefined ? { sysCode: e.sysCode } : {}) };
    this.log.warn(fields, `rimap: ${server.label}: ${e.message}${suffix}`);
  }

  /** A failure before the password was sent lets the next server try; after that, the answer stands. */
  private async tryServer(server: Server, login: Buffer, secret: Buffer, signal: AbortSignal): Promise<Attempt> {
    const t = server.target;
    let addresses: ResolvedAddress[];
    try {
      const lookup = withTimeout(this.deps.lookup(t.host), t.connectTimeoutMs, () =>
        Object.assign(new Error(`no answer from the resolver within ${t.connectTimeoutMs} ms`), { code: 'ETIMEOUT' }),
      );
      addresses = await abortable(lookup, signal);
      if (addresses.length === 0) throw Object.assign(new Error('no addresses'), { code: 'ENOTFOUND' });
    } catch (err) {
      if (err instanceof RimapError) return { kind: 'failed', error: err };
      const e = err as NodeJS.ErrnoException;
      return { kind: 'failed', error: new RimapError('RIMAP_DNS', `cannot resolve ${t.host}: ${e.message}`, e.code) };
    }
    let session: ImapSession | undefined;
    let address = '';
    let error: RimapError | undefined;
    for (const a of addresses) {
      try {
        session = await ImapSession.connect(a.address, t.port, t.connectTimeoutMs, signal);
        address = a.address;
        break;
      } catch (err) {
        error = toRimapError(err);
        if (error.code === 'RIMAP_ABORTED') break;
        if (addresses.length > 1)
          this.log.debug({ server: server.label, address: a.address, code: error.code }, `rimap: ${error.message}`);
      }
    }
    if (session === undefined) return { kind: 'failed', error: error ?? new RimapError('RIMAP_CONNECT', 'no address') };
    const s = session;
    this.live.add(s);
    s.onClosed = () => this.live.delete(s);
    if (this.closing) s.destroy();
    return this.dialogue(s, server, address, login, secret, signal);
  }

  private async dialogue(
    session: ImapSession,
    server: Server,
    address: string,
    login: Buffer,
    secret: Buffer,
    signal: AbortSignal,
  ): Promise<Attempt> {
    const t = server.target;
    const tlsParams: TlsParams = {
      address,
      servername: t.servername ?? (net.isIP(t.host) === 0 ? t.host : undefined),
      ca: server.ca,
    };
    let step = t.tls === 'implicit' ? 'TLS handshake' : 'greeting';
    let loginStarted = false;
    try {
      if (t.tls === 'implicit') {
        await session.startTls(tlsParams, t.timeoutMs);
        step = 'greeting';
      }
      const greeting = await session.next(t.timeoutMs);
      let caps = this.checkGreeting(greeting, secret);
      if (t.tls === 'starttls') {
        step = 'STARTTLS';
        await session.write(Buffer.from(`${STARTTLS_TAG} STARTTLS\r\n`, 'latin1'));
        const r = await this.waitTagged(session, STARTTLS_TAG, t.timeoutMs, secret);
        if (r.status !== 'OK') {
          throw new RimapError('RIMAP_STARTTLS_REFUSED', `server refused STARTTLS: ${sanitizeLine(r.raw, [secret])}`);
        }
        step = 'TLS handshake';
        await session.startTls(tlsParams, t.timeoutMs);
        caps = undefined; // RFC 3501 6.2.1: forget what was said before TLS
      }
      if (!session.encrypted && caps?.has('LOGINDISABLED')) {
        throw new RimapError(
          'RIMAP_LOGINDISABLED',
          'server refuses LOGIN without TLS (LOGINDISABLED); use -O imaps://host or imap://host (STARTTLS)',
        );
      }
      step = 'LOGIN';
      const literals: LiteralSupport = { plus: caps?.has('LITERAL+') ?? false, minus: caps?.has('LITERAL-') ?? false };
      const parts = buildCommand(TAG, 'LOGIN', [login, secret], literals);
      let reply: ImapResponse | undefined;
      try {
        for (const part of parts) {
          if (signal.aborted) throw new RimapError('RIMAP_ABORTED', 'request deadline passed');
          loginStarted = true;
          await session.write(part.bytes);
          if (part.awaitContinuation) {
            const r = await this.waitContinuation(session, t.timeoutMs, secret);
            if (r !== undefined) {
              reply = r; // the server refused the literal: its tagged answer ends LOGIN
              break;
            }
          }
        }
      } finally {
        wipeParts(parts);
      }
      reply ??= await this.waitTagged(session, TAG, t.timeoutMs, secret);
      server.up = true;
      session.logout(TAG);
      return { kind: 'decided', outcome: this.loginOutcome(server, reply, secret) };
    } catch (err) {
      session.destroy();
      const e = toRimapError(err);
      const where = new RimapError(e.code, `${step}: ${e.message}`, e.sysCode);
      if (!loginStarted && e.code !== 'RIMAP_ABORTED') return { kind: 'failed', error: where };
      if (e.code !== 'RIMAP_ABORTED') server.up = false;
      this.logFailure(server, where, '');
      return { kind: 'decided', outcome: unavailable(ERROR_REPLY[e.code]) };
    }
  }

  /** Cyrus: `* OK` goes on; `* NO` / `* BYE` mean unavailable; anything else (PREAUTH too) is unexpected. */
  private checkGreeting(r: ImapResponse, secret: Buffer): Set<string> | undefined {
    if (r.kind === 'untagged' && r.status === 'OK') return capabilitiesOf(r);
    const line = sanitizeLine(r.raw, [secret]);
    if (r.kind === 'untagged' && (r.status === 'BYE' || r.status === 'NO')) {
      throw new RimapError('RIMAP_GREETING_REFUSED', `server turned us away: ${line}`);
    }
    throw new RimapError('RIMAP_PROTOCOL', `unexpected greeting: ${line}`);
  }

  /** Skips untagged responses up to the tagged one for tag. */
  private async waitTagged(session: ImapSession, tag: string, timeoutMs: number, secret: Buffer): Promise<ImapResponse> {
    let bye: ImapResponse | undefined;
    for (;;) {
      let r: ImapResponse;
      try {
        r = await session.next(timeoutMs);
      } catch (err) {
        if (bye !== undefined && err instanceof RimapError && err.code === 'RIMAP_CLOSED') {
          throw new RimapError('RIMAP_CLOSED', `server said ${sanitizeLine(bye.raw, [secret])} and closed the connection`);
        }
        throw err;
      }
      if (r.kind === 'untagged') {
        if (r.status === 'BYE') bye = r;
        continue;
      }
      if (r.kind === 'tagged' && r.tag === tag) return r;
      throw new RimapError('RIMAP_PROTOCOL', `unexpected response while waiting for ${tag}: ${sanitizeLine(r.raw, [secret])}`);
    }
  }

  /**
   * Waits for `+` after a synchronizing literal. A tagged NO or BAD instead
   * means the server refused the command, which ends LOGIN. A tagged OK
   * cannot be an answer to a LOGIN whose password was never sent: it is a
   * protocol error, never a success.
   */
  private async waitContinuation(session: ImapSession, timeoutMs: number, secret: Buffer): Promise<ImapResponse | undefined> {
    for (;;) {
      const r = await session.next(timeoutMs);
      if (r.kind === 'continuation') return undefined;
      if (r.kind === 'untagged') continue;
      if (r.tag === TAG && (r.status === 'NO' || r.status === 'BAD')) return r;
      throw new RimapError(
        'RIMAP_PROTOCOL',
        `unexpected response in place of the "+" continuation: ${sanitizeLine(r.raw, [secret])}`,
      );
    }
  }

  private loginOutcome(server: Server, r: ImapResponse, secret: Buffer): Outcome {
    const line = sanitizeLine(r.raw, [secret]);
    const fields = {
      server: server.label,
      status: r.status,
      ...(r.code !== undefined ? { responseCode: r.code.split(' ')[0] } : {}),
    };
    if (r.status === 'OK') {
      this.log.debug(fields, `rimap: ${server.label}: LOGIN accepted`);
      return ok(REPLY.ok);
    }
    if (r.status === 'NO') {
      const code = r.code?.split(' ')[0]?.toUpperCase();
      if (code !== undefined && TRANSIENT_CODES.has(code)) {
        this.log.warn(fields, `rimap: ${server.label}: LOGIN failed for a server-side reason: ${line}`);
        return unavailable(REPLY.unavailable);
      }
      this.log.debug(fields, `rimap: ${server.label}: LOGIN rejected: ${line}`);
      return denied(REPLY.rejected);
    }
    this.log.warn(fields, `rimap: ${server.label}: unexpected response to LOGIN: ${line}`);
    return unavailable(REPLY.unexpected);
  }
}

export const createRimapBackend: BackendFactory = async ({ mechOption, log }) => {
  const targets = parseRimapOption(mechOption);
  const backend = new RimapBackend(targets, log);
  for (const t of targets) for (const w of targetWarnings(t)) log.warn(`rimap: ${w}`);
  log.debug({ servers: targets.map(describeTarget) }, `rimap: servers in order: ${targets.map(describeTarget).join(', ')}`);
  return backend;
};
