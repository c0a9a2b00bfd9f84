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

export interface ShadowResult {
  code: ShadowCode;
  /** The wire reply Cyrus's shadow mechanism sends for this code. */
  text: string;
}

/** A PAM transaction's request (src/native/pam.cc). */
export interface PamRequest {
  /** PAM service name, passed to pam_start verbatim. */
  service: string;
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

/** What a Listener reports (src/native/listener.cc). */
export const enum ListenerEvent {
  /** arg: the chunk received (a copy). */
  Data = 0,
  /** The client closed its side while tracked; arg: bytes received. */
  End = 1,
  /** The read deadline passed while tracked; arg: bytes received. */
  ReadTimeout = 2,
  /** The connection closed while tracked (client gone, error). */
  Closed = 3,
  /** arg: "CODE message"; a Closed event follows. */
  ConnError = 4,
  /** accept(2) failed; arg: "CODE message". Out of descriptors, accepting pauses 100 ms; logged at most every 5 s. */
  AcceptError = 5,
  /** maxConnections are open; accepting waits for one to close. arg: maxConnections. At most every 5 s. */
  ConnLimit = 6,
  /** A native shadow check was answered (serveShadow); arg: NativeShadowResult. */
  Result = 7,
  /** Native mode refused a request before any check; arg: [message, field?, length?]. */
  Rejected = 8,
}

/** [login after the -r join, service, realm, client address, code (-1: deadline passed), reply text, ms]. */
export type NativeShadowResult = [string, string, string, string | undefined, ShadowCode | -1, string, number];

/**
 * Accepts on a listening UNIX socket and runs each connection's I/O in C++:
 * JavaScript sees a connection's bytes until it replies or destroys it.
 */
export interface NativeListener {
  open(fd: number): void;
  /** Write the reply, half-close, discard input until EOF or the drain deadline. False if already gone. */
  reply(id: number, bytes: Buffer): boolean;
  destroy(id: number): void;
  stopAccepting(): void;
  destroyAll(): void;
  /**
   * From now on answer each request natively with the shadow mechanism:
   * decode, -r join, checks, deadline and reply in C++; JavaScript gets
   * Result and Rejected events to log (Result for successes only with
   * logSuccess), and no Data events.
   */
  serveShadow(concatRealm: boolean, timeoutMs: number, timeoutReply: string, logSuccess: boolean): void;
  readonly count: number;
  /** Native checks whose result has not been delivered yet. */
  readonly busy: number;
}

export interface NativeAddon {
  Listener: new (
    onEvent: (kind: ListenerEvent, id: number, arg: unknown) => void,
    readTimeoutMs: number,
    drainTimeoutMs: number,
    maxConnections: number,
  ) => NativeListener;
  /** socket + bind + listen on a UNIX path; returns the descriptor (close-on-exec). Throws with .code. */
  bindUnixSocket(path: string, backlog: number): number;
  closeFd(fd: number): void;
  pamAuthenticate(req: PamRequest): Promise<PamResult>;
  /**
   * The hashing pool (src/native/pool.cc): one thread per usable CPU. A job
   * still queued timeoutMs after the call never runs; it rejects with code
   * ETIMEDOUT.
   */
  cryptVerify(password: Buffer, hash: string, timeoutMs?: number): Promise<boolean>;
  shadowCheck(user: string, password: Buffer, timeoutMs?: number): Promise<ShadowResult>;
  readonly hashThreads: number;
  /**
   * SCHED_BATCH for this thread and those it creates from now on, unless a
   * policy other than SCHED_OTHER is already set; returns the policy in force.
   */
  preferBatchScheduling(): 'batch' | 'other' | 'idle' | 'fifo' | 'rr';
  raiseFdLimit(): number;
  preferredCryptPrefix: string;
  openlog(ident: string): void;
  syslog(priority: number, message: string): void;
}

// dist/src/native/binding.js -> <package root>/build/Release
const addonPath = path.resolve(__dirname, '..', '..', '..', 'build', 'Release', 'saslauthd_native.node');

// eslint-disable-next-line @typescript-eslint/no-require-imports
export const native: NativeAddon = require(addonPath) as NativeAddon;
