// shadow: /etc/passwd + /etc/shadow (through NSS: getpwnam_r/getspnam_r)
// checked with the system's crypt(3). Mirrors Cyrus auth_shadow.c, replies
// included; the work runs on the native addon's hashing pool.
import { native, ShadowCode } from '../native/binding';
import { type Backend, type BackendFactory, denied, ok, type Outcome, timeLeftMs, unavailable } from './backend';

function toOutcome(code: ShadowCode, detail: string): Outcome {
  switch (code) {
    case ShadowCode.Ok:
      return ok();
    case ShadowCode.InvalidUser:
      return denied('NO Invalid username');
    case ShadowCode.UserLookupFailure:
      return unavailable(`NO Username lookup failure: ${detail}`);
    case ShadowCode.InvalidShadowUser:
      return denied('NO Invalid shadow username');
    case ShadowCode.ShadowLookupFailure:
      return unavailable(`NO Username shadow lookup failure: ${detail}`);
    case ShadowCode.NisNotAllowed:
      return unavailable('NO Insufficient permission to access NIS authentication database (saslauthd)');
    case ShadowCode.IncorrectPassword:
      return denied('NO Incorrect password');
    case ShadowCode.AccountExpired:
      return denied('NO Account expired');
    case ShadowCode.PasswordExpired:
      return denied('NO Password expired');
  }
  return unavailable('NO internal mechanism failure', `unknown shadow result code ${String(code)}`);
}

export const createShadowBackend: BackendFactory = async () => {
  const backend: Backend = {
    name: 'shadow',
    async authenticate(req) {
      try {
        const r = await native.shadowCheck(req.login, req.password, timeLeftMs(req));
        return toOutcome(r.code, r.detail);
      } catch (err) {
        return unavailable('NO internal mechanism failure', `shadow: ${(err as Error).message}`);
      }
    },
  };
  return backend;
};
