// shadow: /etc/passwd + /etc/shadow (through NSS: getpwnam_r/getspnam_r)
// checked with the system's crypt(3). Mirrors Cyrus auth_shadow.c, replies
// included; the check and the reply text live in the native addon
// (src/native/crypt.cc), on its hashing pool.
//
// Without a credential cache the listener runs this mechanism natively end to
// end (src/native/listener.cc) and hands back only shadowOutcome's input for
// the log; with one, requests come through authenticate() below.
import { native, ShadowCode } from '../native/binding';
import { type Backend, type BackendFactory, denied, ok, type Outcome, timeLeftMs, unavailable } from './backend';

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
    case ShadowCode.IncorrectPassword:
    case ShadowCode.AccountExpired:
    case ShadowCode.PasswordExpired:
      return denied(text);
  }
  return unavailable('NO internal mechanism failure', `unknown shadow result code ${String(code)}`);
}

export const createShadowBackend: BackendFactory = async () => {
  const backend: Backend = {
    name: 'shadow',
    async authenticate(req) {
      try {
        const r = await native.shadowCheck(req.login, req.password, timeLeftMs(req));
        return shadowOutcome(r.code, r.text);
      } catch (err) {
        return unavailable('NO internal mechanism failure', `shadow: ${(err as Error).message}`);
      }
    },
  };
  return backend;
};
