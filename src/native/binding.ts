// Typed loader for the native addon (build/Release/saslauthd_native.node),
// built by node-gyp during `npm ci` from the sources next to this file.
import path from 'node:path';

export const enum ShadowCode {
  Ok = 0,
  InvalidUser = 1,
  UserLookupFailure = 2,
  InvalidShadowUser = 3,
  ShadowLookupFailure = 4,
  NisNotAllowed = 5,
  IncorrectPassword = 6,
  AccountExpired = 7,
  PasswordExpired = 8,
}

/** A PAM transaction's request (src/native/pam.cc). */
export interface PamRequest {
  /** PAM service name, passed to pam_start verbatim (Latin-1: the client's bytes). */
  service: string;
  /** Latin-1: the client's bytes. */
  user: string;
  password: Buffer;
  /** Client address; PAM_RHOST gets the part before ';'. */
  rhost?: string;
}

/** Where a PAM transaction stopped: the failing call, or 'done' on success. */
export type PamStage = 'pam_start' | 'pam_authenticate' | 'pam_acct_mgmt' | 'done';

export interface PamResult {
  ok: boolean;
  /** The Linux-PAM return code of `stage` (PAM_SUCCESS = 0). */
  code: number;
  stage: PamStage;
  /** pam_strerror(code). */
  message: string;
  /** The fail delay libpam computed (the hook replaced its sleep); 0 if none. */
  delayUs: number;
}

/** What a Listener reports (src/native/listener.h). */
export const enum ListenerEvent {
  /** A whole request; its fields are the handler's arguments (NativeRequest). JavaScript must answer it (reply or checkShadow). */
  Request = 0,
  /** Refused before any check, already answered; arg: [message, field?, length?]. */
  Rejected = 1,
  /** Closed before the request was complete; arg: [why, bytes received, detail?]. */
  Incomplete = 2,
  /** accept(2) failed; arg: "CODE message". Out of descriptors, accepting pauses 100 ms; logged at most every 5 s. */
  AcceptError = 3,
  /** maxConnections are open; accepting waits for one to close. arg: maxConnections. At most every 5 s. */
  ConnLimit = 4,
  /** A request JavaScript holds lost its client before the answer; arg: "CODE message". */
  Gone = 5,
  /** A request JavaScript held past decideTimeoutMs without answering it was closed unanswered; arg: that timeout. */
  Overdue = 6,
}

/**
 * [login, service, realm, client address, fingerprint]. Strings are Latin-1:
 * one character per byte the client sent (Buffer.from(s, 'latin1') gives the
 * bytes back). The fingerprint is HMAC-SHA256(key; login, realm, password).
 */
export type NativeRequest = [string, string, string, string | undefined, Buffer];

/** Why a connection closed before its request was complete. */
export type IncompleteWhy = 'eof' | 'timeout' | 'error';

/** Answers a native shadow check leaves for JavaScript to send (src/native/shadow_task.h). */
export const enum ShadowHold {
  /** A refusal the throttle delays. */
  Failure = 1,
  /** A success the credential cache must record before it is sent. */
  Success = 2,
}

/** A native shadow check's end: [code (ShadowCode, or -1 expired, -2 shed), reply text, already answered to the client]. */
export type NativeShadowVerdict = [ShadowCode | -1 | -2, string, boolean];

/**
 * Accepts on a listening UNIX socket and runs each connection's I/O, decoding
 * and Cyrus's pre-checks in C++: JavaScript gets one Request per connection.
 */
export interface NativeListener {
  open(fd: number): void;
  /** Write the reply, half-close, discard input until EOF or the drain deadline. False if already answered or gone. */
  reply(id: number, bytes: Buffer): boolean;
  /** A copy of the request's password (wipe it when done); undefined once answered or gone. */
  password(id: number): Buffer | undefined;
  /**
   * Check the request's password with the shadow mechanism on the hashing
   * pool, as user (Latin-1). The hashing thread answers the client itself,
   * except what hold (ShadowHold bits) keeps for JavaScript, and a check that
   * expired or was shed. Undefined if the request is not waiting for
   * JavaScript (answered, gone).
   */
  checkShadow(
    id: number,
    user: string,
    timeoutMs: number,
    high: boolean,
    fp: number,
    shedAfterMs: number,
    hold: number,
  ): Promise<NativeShadowVerdict> | undefined;
  destroy(id: number): void;
  stopAccepting(): void;
  destroyAll(): void;
  readonly count: number;
  /** Requests handed to JavaScript or to a check and not answered yet. */
  readonly busy: number;
}

export interface PoolStats {
  threads: number;
  running: number;
  queuedHigh: number;
  queuedNormal: number;
  oldestNormalWaitMs: number;
  pending: number;
}

export interface NativeAddon {
  Listener: new (
    onEvent: (kind: ListenerEvent, id: number, arg: unknown, ...request: unknown[]) => void,
    readTimeoutMs: number,
    drainTimeoutMs: number,
    maxConnections: number,
    /** Backstop for a request JavaScript never answers: closed unanswered, with an Overdue event (0: none). */
    decideTimeoutMs: number,
  ) => NativeListener;
  /** socket + bind + listen on a UNIX path; returns the descriptor (close-on-exec). Throws with .code. */
  bindUnixSocket(path: string, backlog: number): number;
  closeFd(fd: number): void;
  /** The key of the fingerprints the listener computes (at least 16 bytes). */
  setFingerprintKey(key: Buffer): void;
  /** The listener's decoder on the given chunks (tests: the property test's subject). */
  decodeRequestForTest(chunks: Buffer[]): DecodedForTest;
  /**
   * A PAM transaction on the PAM pool. user and service are Latin-1 (the
   * client's bytes). A task still queued timeoutMs after the call never
   * runs (rejects, code ETIMEDOUT); ordinary work queued longer than
   * shedAfterMs is shed (code ESHED).
   */
  pamAuthenticate(req: PamRequest & QueueOptions): Promise<PamResult>;
  /**
   * crypt(3) on the hashing pool (one thread per usable CPU). Same queueing
   * rules as pamAuthenticate.
   */
  cryptVerify(
    password: Buffer,
    hash: string,
    timeoutMs?: number,
    high?: boolean,
    fp?: number,
    shedAfterMs?: number,
  ): Promise<boolean>;
  /**
   * The shadow mechanism on the hashing pool, for a request whose door has
   * no native connection to answer on (the Dovecot door): [code, Cyrus's
   * reply text]. user is Latin-1 (the client's bytes). Same queueing rules as
   * pamAuthenticate: rejects with code ETIMEDOUT or ESHED when it never ran.
   */
  shadowCheck(
    user: string,
    password: Buffer,
    timeoutMs: number,
    high: boolean,
    fp: number,
    shedAfterMs: number,
  ): Promise<[ShadowCode, string]>;
  /** What an unknown user's password is hashed against; false if libxcrypt cannot use it. */
  setDummyHash(setting: string): boolean;
  /** libxcrypt's crypt_gensalt: a setting for prefix ("$6$", "$y$"...) and count (rounds, cost); undefined if refused. */
  cryptGensalt(prefix: string, count: number): string | undefined;
  readonly hashThreads: number;
  poolStats(pool: 'hash' | 'pam'): PoolStats;
  /** Queued ordinary work with this fingerprint becomes known-good work; returns how many tasks moved. */
  poolPromote(pool: 'hash' | 'pam', fp: number): number;
  /** PAM threads (before the first PAM check; default 8). */
  setPamThreads(n: number): void;
  /**
   * SCHED_BATCH for this thread and those it creates from now on, unless a
   * policy other than SCHED_OTHER is already set; returns the policy in force.
   */
  preferBatchScheduling(): 'batch' | 'other' | 'idle' | 'fifo' | 'rr';
  raiseFdLimit(): number;
  preferredCryptPrefix: string;
  /** A non-blocking datagram socket to the log daemon (path: /dev/log); false if it cannot connect now. */
  syslogOpen(path: string): boolean;
  /** One formatted syslog line: 0 sent, 1 dropped (the log daemon's queue is full), -errno on error. */
  syslogSend(line: string): number;
}

/** How a check waits for a thread (the throttle's decision). */
export interface QueueOptions {
  /** ms the task may wait in the queue; past it, it never runs. */
  timeoutMs?: number;
  /** Known-good credentials: ahead of all other work, never shed. */
  high?: boolean;
  /** 32 bits of the credentials' fingerprint (to promote queued work). */
  fp?: number;
  /** Ordinary work queued longer than this is shed (0: never). */
  shedAfterMs?: number;
}

export type DecodedForTest =
  | { kind: 'incomplete'; received: number }
  | { kind: 'oversize'; field: string; length: number; received: number }
  | {
      kind: 'request';
      login: Buffer;
      password: Buffer;
      service: Buffer;
      realm: Buffer;
      clientAddr?: Buffer;
      received: number;
    };

// dist/src/native/binding.js -> <package root>/build/Release
const addonPath = path.resolve(__dirname, '..', '..', '..', 'build', 'Release', 'saslauthd_native.node');

// eslint-disable-next-line @typescript-eslint/no-require-imports
export const native: NativeAddon = require(addonPath) as NativeAddon;
