// shadow: /etc/passwd + /etc/shadow (through NSS: getpwnam_r/getspnam_r)
// checked with the system's crypt(3). Mirrors Cyrus auth_shadow.c, replies
// included; the check and the reply text live in the native addon
// (src/native/crypt.cc). On the mux door the listener hands the check to the
// hashing pool with the connection (src/native/shadow_task.h), and the
// hashing thread that decides answers the client itself: the password never
// reaches JavaScript. A door without a native connection (the Dovecot door,
// which decodes in JavaScript) queues the same check as a job on the same
// pool (native.shadowCheck) and answers through the authenticator.
import fs from 'node:fs';
import type pino from 'pino';
import { native, ShadowCode, ShadowHold } from '../native/binding';
import { chooseDummyHash } from '../crypt/dummy-hash';
import {
  type AuthRequest,
  type Backend,
  type BackendFactory,
  denied,
  droppedCode,
  notFound,
  ok,
  type Outcome,
  queueOf,
  shed,
  timedOut,
  unavailable,
} from './backend';

export const SHADOW_FILE = '/etc/shadow';
export const LOGIN_DEFS = '/etc/login.defs';
export const REFUSAL = 'NO Incorrect password';

/** The outcome of a native shadow verdict: its code and the reply text the addon built. */
export function shadowOutcome(code: ShadowCode, text: string): Outcome {
  switch (code) {
    case ShadowCode.Ok:
      return ok(text);
    case ShadowCode.UserLookupFailure:
    case ShadowCode.ShadowLookupFailure:
    case ShadowCode.NisNotAllowed:
      return unavailable(text);
    case ShadowCode.InvalidUser:
    case ShadowCode.InvalidShadowUser:
      return notFound(text);
    case ShadowCode.IncorrectPassword:
    case ShadowCode.AccountExpired:
    case ShadowCode.PasswordExpired:
      return denied(text);
  }
  return unavailable('NO internal mechanism failure', `unknown shadow result code ${String(code)}`);
}

function readOrUndefined(file: string): string | undefined {
  try {
    return fs.readFileSync(file, 'utf8');
  } catch {
    return undefined;
  }
}

/** Make unknown users cost what this host's real hashes cost (see crypt/dummy-hash.ts). */
export function applyDummyHash(log: pino.Logger, files = { shadow: SHADOW_FILE, loginDefs: LOGIN_DEFS }): string {
  const choice = chooseDummyHash({
    shadowFile: files.shadow,
    shadowText: readOrUndefined(files.shadow),
    loginDefsFile: files.loginDefs,
    loginDefsText: readOrUndefined(files.loginDefs),
    gensalt: (prefix, count) => native.cryptGensalt(prefix, count),
  });
  if (choice !== undefined && native.setDummyHash(choice.setting)) {
    log.debug(
      { method: choice.method, source: choice.source },
      `shadow: unknown users are hashed as ${choice.method} (${choice.source})`,
    );
    return choice.method;
  }
  log.debug(`shadow: unknown users are hashed with libxcrypt's preferred method ${native.preferredCryptPrefix}`);
  return native.preferredCryptPrefix;
}

/**
 * The same check as a job on the hashing pool, answered by the authenticator:
 * for a door that has no native connection. The password copy is wiped here.
 */
async function checkAsJob(req: AuthRequest, password: Buffer | undefined, q: ReturnType<typeof queueOf>): Promise<Outcome> {
  if (password === undefined) return unavailable('NO internal mechanism failure', 'shadow: the client left before the check');
  try {
    const [code, text] = await native.shadowCheck(req.login, password, q.timeoutMs, q.high, q.fp, q.shedAfterMs);
    return shadowOutcome(code, text);
  } catch (err) {
    const dropped = droppedCode(err);
    if (dropped === 'ETIMEDOUT') return timedOut(req.timeoutMs ?? Math.round(q.timeoutMs));
    if (dropped === 'ESHED') return shed(REFUSAL);
    throw err;
  } finally {
    password.fill(0);
  }
}

export const createShadowBackend: BackendFactory = async ({ log, chained }) => {
  applyDummyHash(log);
  if (chained) {
    // In a chain or a route the outcome must come back here (the next
    // mechanism may be asked), so the check is a job on the hashing pool, on
    // a copy of the password (checkAsJob wipes its copy; the next mechanism
    // needs the original).
    return {
      name: 'shadow',
      refusalText: REFUSAL,
      async authenticate(req) {
        return checkAsJob(req, Buffer.from(req.password), queueOf(req));
      },
      async reload() {
        applyDummyHash(log);
      },
    };
  }
  const backend: Backend = {
    name: 'shadow',
    refusalText: REFUSAL,
    ownsDeadline: true,
    needsPassword: false,
    async authenticate(req) {
      const x = req.exchange;
      if (x === undefined) return unavailable('NO internal mechanism failure', 'shadow: the request has no connection');
      const q = queueOf(req);
      if (x.checkShadow === undefined) return checkAsJob(req, x.password(), q);
      const hold = (req.holdFailure ? ShadowHold.Failure : 0) | (req.holdSuccess ? ShadowHold.Success : 0);
      const verdict = await x.checkShadow(req.login, q, hold);
      if (verdict === undefined) return unavailable('NO internal mechanism failure', 'shadow: the client left before the check');
      const [code, text, answered] = verdict;
      if (code === -1) return { ...timedOut(req.timeoutMs ?? Math.round(q.timeoutMs)), answered };
      if (code === -2) return { ...shed(REFUSAL), answered };
      return { ...shadowOutcome(code, text), answered };
    },
    async reload() {
      applyDummyHash(log);
    },
  };
  return backend;
};
