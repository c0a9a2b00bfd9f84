// A chain of mechanisms (-a a,b; one line of --routes): who is asked, and
// what is answered, driven by scripted mechanisms.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import pino from 'pino';
import {
  type AuthRequest,
  type Backend,
  denied,
  notFound,
  ok,
  type Outcome,
  timedOut,
  unavailable,
} from '../../../src/backends/backend';
import { CHAIN_REFUSAL, createChain } from '../../../src/backends/chain';
import { shadowOutcome } from '../../../src/backends/shadow';
import { toOutcome } from '../../../src/backends/pam';
import { ShadowCode } from '../../../src/native/binding';

const silent = pino({ level: 'silent' });

type Scripted = Backend & { asked: string[] };

function mech(name: string, answer: (req: AuthRequest) => Outcome, refusalText = `NO ${name} refusal`): Scripted {
  const asked: string[] = [];
  return {
    name,
    refusalText,
    asked,
    async authenticate(req) {
      asked.push(req.login);
      return answer(req);
    },
  };
}

const request = (login: string): AuthRequest => ({ login, password: Buffer.from('pw'), service: 'smtp', realm: '' });
const run = (b: Backend, login: string): Promise<Outcome> => b.authenticate(request(login), new AbortController().signal);

test('a login unknown to the first mechanism is asked of the second, which answers', async () => {
  const a = mech('shadow', () => notFound('NO Invalid username'));
  const b = mech('ldap', () => ok());
  const out = await run(createChain([a, b], silent), 'bob');
  assert.equal(out.ok, true);
  assert.equal(out.mech, 'ldap');
  assert.deepEqual([a.asked, b.asked], [['bob'], ['bob']]);
});

test('a wrong password ends the chain with NO and the next mechanism is never asked', async () => {
  const a = mech('shadow', () => denied('NO Incorrect password'));
  const b = mech('ldap', () => ok());
  const out = await run(createChain([a, b], silent), 'alice');
  assert.equal(out.ok, false);
  assert.equal(out.text, CHAIN_REFUSAL);
  assert.equal(out.mech, 'shadow');
  assert.deepEqual(b.asked, []);
});

test('an unavailable mechanism ends the chain with NO, logged as unavailable, and the next is never asked', async () => {
  const a = mech('ldap', () => unavailable('NO', 'ldap server unreachable'));
  const b = mech('shadow', () => ok());
  const out = await run(createChain([a, b], silent), 'carol');
  assert.equal(out.ok, false);
  assert.equal(!out.ok && out.kind, 'unavailable');
  assert.equal(out.text, 'NO');
  assert.deepEqual(b.asked, []);
});

test('the last mechanism saying the login is unknown answers NO, naming itself', async () => {
  const a = mech('shadow', () => notFound('NO Invalid username'));
  const b = mech('ldap', () => notFound('NO', 'User not found'));
  const out = await run(createChain([a, b], silent), 'nobody');
  assert.equal(out.ok, false);
  assert.equal(out.mech, 'ldap');
  assert.equal(!out.ok && out.reason, 'User not found');
  assert.equal(out.text, 'NO');
});

test('a chain of several answers every refusal with a bare NO and refuses with it too', async () => {
  const a = mech('shadow', () => notFound('NO Invalid username'), 'NO Incorrect password');
  const b = mech('pam', () => denied('NO PAM auth error'), 'NO PAM auth error');
  const chain = createChain([a, b], silent);
  assert.equal(chain.refusalText, CHAIN_REFUSAL);
  assert.equal((await run(chain, 'x')).text, 'NO');
});

test('a chain of one keeps its mechanism wire texts and stamps its route', async () => {
  const a = mech('shadow', () => denied('NO Incorrect password'), 'NO Incorrect password');
  const chain = createChain([a], silent, { route: '-' });
  assert.equal(chain.refusalText, 'NO Incorrect password');
  const out = await run(chain, 'x');
  assert.equal(out.text, 'NO Incorrect password');
  assert.equal(out.route, '-');
  assert.equal(out.mech, 'shadow');
});

test('a timeout inside a chain keeps the timeout answer', async () => {
  const a = mech('ldap', () => timedOut(100));
  const b = mech('shadow', () => ok());
  const out = await run(createChain([a, b], silent), 'x');
  assert.equal(!out.ok && out.kind, 'timeout');
  assert.match(out.text, /timed out/);
  assert.deepEqual(b.asked, []);
});

test('a refusal PAM decided for an unknown login is no longer the answer once the chain goes on', async () => {
  const a: Backend = {
    name: 'pam',
    refusalText: 'NO PAM auth error',
    async authenticate(req) {
      const out = notFound('NO PAM auth error');
      req.decided = out;
      return out;
    },
  };
  const b = mech('ldap', () => ok());
  const req = request('dave');
  await createChain([a, b], silent).authenticate(req, new AbortController().signal);
  assert.equal(req.decided, undefined);
});

test('shadow says Invalid username and Invalid shadow username are unknown logins, a wrong password is not', () => {
  const invalid = shadowOutcome(ShadowCode.InvalidUser, 'NO Invalid username');
  const invalidShadow = shadowOutcome(ShadowCode.InvalidShadowUser, 'NO Invalid shadow username');
  const wrong = shadowOutcome(ShadowCode.IncorrectPassword, 'NO Incorrect password');
  assert.equal(!invalid.ok && invalid.unknownUser, true);
  assert.equal(!invalidShadow.ok && invalidShadow.unknownUser, true);
  assert.equal(!wrong.ok && wrong.unknownUser, undefined);
});

test('PAM_USER_UNKNOWN from pam_authenticate is an unknown login, PAM_AUTH_ERR is not', () => {
  const unknown = toOutcome({ ok: false, stage: 'pam_authenticate', code: 10, message: 'User not known', delayUs: 0 });
  const authErr = toOutcome({ ok: false, stage: 'pam_authenticate', code: 7, message: 'Authentication failure', delayUs: 0 });
  assert.equal(!unknown.ok && unknown.kind, 'denied');
  assert.equal(!unknown.ok && unknown.unknownUser, true);
  assert.equal(unknown.text, 'NO PAM auth error');
  assert.equal(!authErr.ok && authErr.unknownUser, undefined);
});
