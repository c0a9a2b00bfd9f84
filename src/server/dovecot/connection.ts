// One client of the Dovecot socket (for Postfix: one smtpd process, for its
// whole life): the socket, the deadlines, and the requests it has open. The
// protocol itself is src/protocol/dovecot/session.ts; the authenticator
// decides each request and answers through its exchange.
//
//   handshake --VERSION, CPID--> ready --temporary failure--> draining --> closed
//
// Deadlines: the handshake and every line must arrive within the read
// timeout (a line's starts at its first byte, so a client dripping bytes is
// cut like one that sends nothing); a request waiting for the client's next
// step (LOGIN's password, which Postfix relays from the SMTP client) is
// forgotten after CONTINUATION_TIMEOUT_MS; a connection with nothing open is
// closed after IDLE_TIMEOUT_MS. Requests being decided have the
// authenticator's own deadline.
//
// A temporary failure (the mechanism unavailable or timed out) is told by
// closing the connection, not by a FAIL line: Postfix's Dovecot client reads
// any FAIL as a wrong password (535) and only a lost connection as a
// temporary failure (454), and Dovecot's own client library also takes a lost
// connection as code=temp_fail. The connection stops reading, lets the other
// requests being decided on it answer, and closes.
import type net from 'node:net';
import type pino from 'pino';
import type { Fingerprinter } from '../../auth/fingerprint';
import type { LineBudget } from '../../log/line-budget';
import type { ProtocolError } from '../../metrics/service';
import { shown } from '../../log/display';
import { LineDecoder, MAX_LINE_BYTES } from '../../protocol/dovecot/line-decoder';
import { DovecotSession, type SessionOutput } from '../../protocol/dovecot/session';
import { failLine, okLine } from '../../protocol/dovecot/wire';
import type { AnswerKind, Exchange } from '../exchange';
import { DovecotExchange, exchangeFor, type AnswerSink } from './exchange';

/** Requests one connection may have open at once (Postfix has one). */
export const MAX_REQUESTS_PER_CONNECTION = 64;
/** How long a request may wait for the client's next step (Dovecot's auth server: 150 s). */
export const CONTINUATION_TIMEOUT_MS = 150_000;
/** A connection with nothing in progress is closed after this (Postfix's smtpd exits after 100 s idle). */
export const IDLE_TIMEOUT_MS = 600_000;
/** Unwritten answers past which the connection stops reading until the client reads. */
const WRITE_HIGH_WATER = 64 * 1024;
/** The reason every refused credential gets: the same bytes whatever was wrong, as "authentication failure" in Postfix's Cyrus path. */
export const REFUSAL_REASON = 'authentication failure';

export interface ConnectionContext {
  readTimeoutMs: number;
  continuationTimeoutMs: number;
  idleTimeoutMs: number;
  maxRequests: number;
  fingerprinter: Fingerprinter;
  handle(x: Exchange): void;
  /** The server's half of the handshake for this connection. */
  handshake(): Buffer;
  log: pino.Logger;
  budget: LineBudget;
  onClose(c: DovecotConnection): void;
  /** Input that never became a request, for the metrics (the mux door's reasons, where one fits). */
  onProtocolError?: ((reason: ProtocolError) => void) | undefined;
}

type ConnState = 'handshake' | 'ready' | 'draining' | 'closed';

export class DovecotConnection implements AnswerSink {
  private state: ConnState = 'handshake';
  private readonly decoder = new LineDecoder(MAX_LINE_BYTES);
  private readonly session: DovecotSession;
  /** Requests handed to the authenticator and not answered yet. */
  private readonly deciding = new Map<number, DovecotExchange>();
  private readonly acceptedAt = Date.now();
  private lastActive = Date.now();
  /** When the incomplete line's first byte arrived. */
  private lineStarted: number | undefined;
  private timer: NodeJS.Timeout | undefined;
  private timerAt = 0;
  private paused = false;
  /** When our side was ended (draining, nothing left to decide). */
  private endedAt: number | undefined;

  constructor(
    private readonly socket: net.Socket,
    private readonly ctx: ConnectionContext,
  ) {
    this.session = new DovecotSession({ maxRequests: ctx.maxRequests });
    socket.on('data', (chunk: Buffer) => this.onData(chunk));
    socket.on('end', () => this.onEnd());
    socket.on('error', (err: NodeJS.ErrnoException) => {
      ctx.log.debug({ code: err.code }, `dovecot socket: connection error: ${err.message}`);
    });
    socket.on('close', () => this.onClosed());
    socket.on('drain', () => this.resume());
    this.write(ctx.handshake());
    this.rearm();
  }

  /** Requests being decided on this connection. */
  get inFlight(): number {
    return this.deciding.size;
  }

  /** End at once, whatever is open: the requests being decided are abandoned now, not when the socket reports its close. */
  destroy(): void {
    this.decoder.wipe();
    this.onClosed();
    this.socket.destroy();
  }

  answer(x: DovecotExchange, kind: AnswerKind): boolean {
    if (this.deciding.get(x.id) !== x || this.state === 'closed') return false;
    this.deciding.delete(x.id);
    this.session.done(x.id);
    if (kind === 'unavailable' || kind === 'timeout') {
      this.startDraining(x.id);
    } else if (kind === 'ok') {
      this.write(okLine(x.id, x.user));
    } else {
      this.write(failLine(x.id, { user: x.user, reason: REFUSAL_REASON }));
    }
    if (this.state === 'draining') this.finishDraining();
    this.rearm();
    return true;
  }

  /** Still reading requests (state can change while a chunk's lines are handled). */
  private reading(): boolean {
    return this.state === 'handshake' || this.state === 'ready';
  }

  private onData(chunk: Buffer): void {
    if (!this.reading()) {
      chunk.fill(0);
      return;
    }
    const now = Date.now();
    this.lastActive = now;
    const pendingBefore = this.decoder.pending;
    const d = this.decoder.push(chunk);
    chunk.fill(0);
    if (d.kind === 'overlong') {
      this.ctx.budget.line(
        'warn',
        'dovecot socket: line too long',
        { bytes: d.bytes, limit: MAX_LINE_BYTES },
        `dovecot socket: client sent a line longer than ${MAX_LINE_BYTES} bytes; closing connection`,
      );
      this.ctx.onProtocolError?.('oversize');
      this.destroy();
      return;
    }
    if (d.lines.length > 0) this.lineStarted = this.decoder.pending > 0 ? now : undefined;
    else if (pendingBefore === 0 && this.decoder.pending > 0) this.lineStarted = now;
    for (const line of d.lines) {
      if (!this.reading()) {
        line.fill(0);
        continue;
      }
      const out = this.session.line(line, now);
      line.fill(0);
      for (const o of out) this.act(o);
      if (this.state === 'handshake' && this.session.state === 'ready') this.state = 'ready';
    }
    this.rearm();
  }

  private act(o: SessionOutput): void {
    switch (o.kind) {
      case 'send':
        this.write(o.bytes);
        return;
      case 'refuse':
        this.write(o.bytes);
        this.ctx.budget.line(
          'info',
          `dovecot socket: ${o.why}`,
          { id: o.id, why: o.why },
          `dovecot socket: request ${o.id} refused: ${o.why}`,
        );
        return;
      case 'drop': {
        const x = this.deciding.get(o.id);
        this.deciding.delete(o.id);
        x?.abandon();
        return;
      }
      case 'close':
        this.ctx.budget.line(
          'warn',
          `dovecot socket: ${o.why}`,
          { why: o.why },
          `dovecot socket: ${o.detail}; closing connection`,
        );
        this.destroy();
        return;
      case 'request': {
        const r = o.request;
        const made = exchangeFor(r, this, this.ctx.fingerprinter);
        r.password.fill(0);
        if (!made.ok) {
          this.session.done(r.id);
          this.write(failLine(r.id, { user: made.user, reason: REFUSAL_REASON }));
          const { message, field, length } = made.refusal;
          this.ctx.onProtocolError?.(
            field !== undefined ? 'oversize' : message.includes('login') ? 'null_login' : 'null_password',
          );
          this.ctx.budget.line(
            'error',
            field !== undefined ? `dovecot socket: ${field} exceeded MAX_REQ_LEN` : `dovecot socket: ${message}`,
            field !== undefined ? { field, length, user: shown(made.user) } : { user: shown(made.user) },
            `dovecot socket: ${message}`,
          );
          return;
        }
        this.deciding.set(r.id, made.x);
        this.ctx.handle(made.x);
        return;
      }
    }
  }

  private write(bytes: Buffer): void {
    if (this.state === 'closed' || this.socket.destroyed || this.socket.writableEnded) return;
    this.socket.write(bytes);
    // A client that does not read its answers is not read from either.
    if (this.socket.writableLength > WRITE_HIGH_WATER && !this.paused) {
      this.paused = true;
      this.socket.pause();
    }
  }

  private resume(): void {
    if (!this.paused || this.state === 'draining' || this.state === 'closed') return;
    this.paused = false;
    this.socket.resume();
  }

  /** A temporary failure: stop reading, let the others answer, close. */
  private startDraining(id: number): void {
    if (this.state !== 'draining') {
      this.ctx.log.debug(
        { id, open: this.deciding.size },
        'dovecot socket: temporary failure; closing the connection once the requests being decided on it are answered',
      );
    }
    this.state = 'draining';
    this.paused = true;
    this.socket.pause();
    this.decoder.wipe();
    this.lineStarted = undefined;
  }

  private finishDraining(): void {
    if (this.deciding.size > 0 || this.endedAt !== undefined) return;
    // end() lets the answers already written go out before the FIN; a
    // client that neither reads them nor closes is destroyed at the deadline.
    this.endedAt = Date.now();
    this.socket.end(() => this.socket.destroy());
  }

  /** Stop reading and close once nothing is being decided. */
  private closeGracefully(): void {
    this.state = 'draining';
    this.decoder.wipe();
    this.lineStarted = undefined;
    this.finishDraining();
    this.rearm();
  }

  /** The client closed its side: answer what is being decided, then close ours. */
  private onEnd(): void {
    if (this.state === 'closed' || this.state === 'draining') return;
    if (this.decoder.pending > 0) this.ctx.onProtocolError?.('incomplete');
    this.closeGracefully();
  }

  private onClosed(): void {
    if (this.state === 'closed') return;
    // Reset by the client in the middle of a line (our own closes go through destroy(), which wipes first).
    if (this.decoder.pending > 0) this.ctx.onProtocolError?.('incomplete');
    this.state = 'closed';
    clearTimeout(this.timer);
    this.timer = undefined;
    if (this.deciding.size > 0)
      this.ctx.log.debug({ open: this.deciding.size }, 'dovecot socket: client left before its answers');
    for (const x of this.deciding.values()) x.abandon();
    this.deciding.clear();
    this.decoder.wipe();
    this.ctx.onClose(this);
  }

  /** The next deadline for the state the connection is in; undefined when only the authenticator's apply. */
  private nextDeadline(): number | undefined {
    const t = this.ctx;
    switch (this.state) {
      case 'closed':
        return undefined;
      case 'handshake':
        return this.acceptedAt + t.readTimeoutMs;
      case 'draining':
        // Our side ended: the client has the read timeout to take the
        // answers and close.
        return this.endedAt !== undefined ? this.endedAt + t.readTimeoutMs : undefined;
      case 'ready': {
        const deadlines: number[] = [];
        if (this.lineStarted !== undefined) deadlines.push(this.lineStarted + t.readTimeoutMs);
        const waiting = this.session.oldestWait;
        if (waiting !== undefined) deadlines.push(waiting + t.continuationTimeoutMs);
        if (deadlines.length === 0 && this.session.openRequests === 0) deadlines.push(this.lastActive + t.idleTimeoutMs);
        return deadlines.length > 0 ? Math.min(...deadlines) : undefined;
      }
    }
  }

  private rearm(): void {
    const at = this.nextDeadline();
    if (at === undefined) {
      clearTimeout(this.timer);
      this.timer = undefined;
      return;
    }
    if (this.timer !== undefined && this.timerAt === at) return;
    clearTimeout(this.timer);
    this.timerAt = at;
    this.timer = setTimeout(() => this.onDeadline(), Math.max(0, at - Date.now()));
  }

  private onDeadline(): void {
    this.timer = undefined;
    const now = Date.now();
    const t = this.ctx;
    switch (this.state) {
      case 'closed':
        return;
      case 'handshake':
        if (now >= this.acceptedAt + t.readTimeoutMs) {
          t.budget.line(
            'warn',
            'dovecot socket: handshake not completed within the read timeout',
            { timeoutMs: t.readTimeoutMs },
            'dovecot socket: handshake not completed within the read timeout; closing connection',
          );
          this.ctx.onProtocolError?.('read_timeout');
          this.destroy();
          return;
        }
        break;
      case 'draining':
        if (this.endedAt !== undefined && now >= this.endedAt + t.readTimeoutMs) {
          this.destroy();
          return;
        }
        break;
      case 'ready': {
        if (this.lineStarted !== undefined && now >= this.lineStarted + t.readTimeoutMs) {
          t.budget.line(
            'warn',
            'dovecot socket: line not received within the read timeout',
            { bytes: this.decoder.pending, timeoutMs: t.readTimeoutMs },
            'dovecot socket: line not received within the read timeout; closing connection',
          );
          this.ctx.onProtocolError?.('read_timeout');
          this.destroy();
          return;
        }
        const expired = this.session.expire(now - t.continuationTimeoutMs);
        if (expired.length > 0)
          t.log.debug({ ids: expired }, 'dovecot socket: requests forgotten: the client did not continue them in time');
        if (this.session.openRequests === 0 && this.lineStarted === undefined && now >= this.lastActive + t.idleTimeoutMs) {
          // Closed outright, not half-closed: a client (smtpd) that writes its
          // next request then gets EPIPE at once and reconnects, where after a
          // half-close its write would succeed and it would read EOF instead,
          // a lost connection (Postfix's 454).
          t.log.debug('dovecot socket: closing an idle connection');
          this.destroy();
          return;
        }
        break;
      }
    }
    this.rearm();
  }
}
