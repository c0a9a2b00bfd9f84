// The authenticator's own logic (-r, deadline, cache policy, throttle
// wiring), driven by a scripted backend and requests without a socket. The
// real backends and the listener have integration tests.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import pino from 'pino';
import { Authenticator, TIMEOUT_REPLY } from '../../../src/auth/authenticator';
import { CredentialCache, type CacheMode } from '../../../src/auth/cache';
import { MemoryStore } from '../../../src/auth/throttle/store';
import { DEFAULT_THROTTLE, Throttle, type ThrottleConfig } from '../../../src/auth/throttle/throttle';
import { denied, ok, unavailable, type AuthRequest, type Backend, type Outcome } from '../../../src/backends/backend';
import { fakeExchange, type FakeRequest } from '../../helpers/exchange';

const silent = pino({ level: 'silent' });

type Scripted = Backend & { calls: AuthRequest[] };

function scripted(answer: (req: AuthRequest) => Outcome | Promise<Outcome>): Scripted {
  const calls: AuthRequest[] = [];
  return {
    name: 'scripted',
    refusalText: 'NO Incorrect password',
    calls,
    async authenticate(req) {
      calls.push({ ...req, password: Buffer.from(req.password) });
      return answer(req);
    },
  };
}

function ask(a: Authenticator, r: FakeRequest): Promise<string> {
  const f = fakeExchange(r);
  a.handle(f.x);
  return f.answer;
}

const req = (login: string, password: string, service = 'smtp', realm = ''): FakeRequest => ({ login, password, service, realm });
const byPassword =
  (right: string) =>
  (r: AuthRequest): Outcome =>
    r.password.toString() === right ? ok() : denied('NO Incorrect password');

test('-r joins login and realm only when the realm is non-empty, and still passes the realm', async () => {
  const b = scripted(() => ok());
  const a = new Authenticator({ backend: b, concatRealm: true, timeoutMs: 1000, log: silent });
  await ask(a, req('bob', 'x', 'smtp', 'example.org'));
  await ask(a, req('bob', 'x', 'smtp', ''));
  assert.deepEqual(
    b.calls.map((c) => [c.login, c.realm]),
    [
      ['bob@example.org', 'example.org'],
      ['bob', ''],
    ],
  );
});

test('fields reach the backend as the bytes the client sent, also when they are not UTF-8', async () => {
  const b = scripted(() => ok());
  const a = new Authenticator({ backend: b, concatRealm: false, timeoutMs: 1000, log: silent });
  await ask(a, { login: Buffer.from([0x6a, 0xe9, 0xff]), password: 'x', service: Buffer.from([0xfe]) });
  assert.deepEqual(Buffer.from(b.calls[0]!.login, 'latin1'), Buffer.from([0x6a, 0xe9, 0xff]));
  assert.deepEqual(Buffer.from(b.calls[0]!.service, 'latin1'), Buffer.from([0xfe]));
});

test('a backend that does not answer in time gets NO and an aborted signal', async () => {
  let aborted = false;
  const b: Backend = {
    name: 'hung',
    refusalText: 'NO',
    authenticate: (_req, signal) =>
      new Promise<Outcome>(() => {
        signal.addEventListener('abort', () => (aborted = true));
      }),
  };
  const a = new Authenticator({ backend: b, concatRealm: false, timeoutMs: 50, log: silent });
  assert.equal(await ask(a, req('bob', 'x')), TIMEOUT_REPLY);
  assert.equal(aborted, true);
});

test('at the deadline, a refusal already decided and waiting out a delay is the answer, not a timeout', async () => {
  const b: Backend = {
    name: 'delaying',
    refusalText: 'NO PAM auth error',
    authenticate: (r) => {
      r.decided = denied('NO PAM auth error');
      return new Promise<Outcome>(() => undefined);
    },
  };
  const a = new Authenticator({ backend: b, concatRealm: false, timeoutMs: 50, log: silent });
  assert.equal(await ask(a, req('bob', 'x')), 'NO PAM auth error');
});

test('a reply that is neither OK nor NO becomes NO internal mechanism failure', async () => {
  const b = scripted(() => ({ ok: true, text: 'MAYBE' }));
  const a = new Authenticator({ backend: b, concatRealm: false, timeoutMs: 1000, log: silent });
  assert.equal(await ask(a, req('bob', 'x')), 'NO internal mechanism failure');
});

test('a backend that throws gets NO internal mechanism failure', async () => {
  const b = scripted(() => {
    throw new Error('boom');
  });
  const a = new Authenticator({ backend: b, concatRealm: false, timeoutMs: 1000, log: silent });
  assert.equal(await ask(a, req('bob', 'x')), 'NO internal mechanism failure');
});

test('the copy of the password the backend got is wiped after the request', async () => {
  const b = scripted(() => ok());
  const a = new Authenticator({ backend: b, concatRealm: false, timeoutMs: 1000, log: silent });
  const f = fakeExchange(req('bob', 'secret'));
  a.handle(f.x);
  await f.answer;
  assert.equal(f.copies.length, 1);
  assert.deepEqual(f.copies[0], Buffer.alloc(6));
});

test('a mechanism that reads the password natively never gets a copy', async () => {
  const b: Backend & { calls: AuthRequest[] } = { ...scripted(() => ok()), needsPassword: false };
  const a = new Authenticator({ backend: b, concatRealm: false, timeoutMs: 1000, log: silent });
  const f = fakeExchange(req('bob', 'secret'));
  a.handle(f.x);
  assert.equal(await f.answer, 'OK');
  assert.equal(f.copies.length, 0);
});

function withCache(mode: CacheMode, answer: (req: AuthRequest) => Outcome) {
  const b = scripted(answer);
  const cache = new CredentialCache({ ttlMs: 60_000, mode });
  const a = new Authenticator({ backend: b, concatRealm: false, timeoutMs: 1000, log: silent, cache });
  return { a, b, cache };
}

test('normal cache: a repeat success is answered from the cache, failures never are', async () => {
  const { a, b } = withCache('normal', byPassword('right'));
  assert.equal(await ask(a, req('bob', 'right')), 'OK');
  assert.equal(await ask(a, req('bob', 'right')), 'OK');
  assert.equal(b.calls.length, 1);
  assert.equal(await ask(a, req('bob', 'wrong')), 'NO Incorrect password');
  assert.equal(await ask(a, req('bob', 'wrong')), 'NO Incorrect password');
  assert.equal(b.calls.length, 3, 'each wrong password went to the backend');
  assert.equal(await ask(a, req('bob', 'right')), 'OK');
  assert.equal(b.calls.length, 3, 'a wrong password did not evict the entry');
});

test('normal cache: two logins that differ only in bytes that are not UTF-8 never share an entry', async () => {
  const { a, b } = withCache('normal', () => ok());
  await ask(a, { login: Buffer.from([0x62, 0xe9]), password: 'pw' });
  await ask(a, { login: Buffer.from([0x62, 0xfe]), password: 'pw' });
  assert.equal(b.calls.length, 2);
});

test('normal cache: the backend’s own OK text is passed through the first time, "OK" on hits', async () => {
  const { a } = withCache('normal', () => ok('OK remote authentication successful'));
  assert.equal(await ask(a, req('bob', 'pw')), 'OK remote authentication successful');
  assert.equal(await ask(a, req('bob', 'pw')), 'OK');
});

test('outage cache: always asks the backend, and answers from the cache only when it is unavailable', async () => {
  let up = true;
  const { a, b } = withCache('outage', (r) =>
    !up ? unavailable('NO', 'ldap down') : r.password.toString() === 'right' ? ok() : denied('NO'),
  );
  assert.equal(await ask(a, req('bob', 'right')), 'OK');
  assert.equal(await ask(a, req('bob', 'right')), 'OK');
  assert.equal(b.calls.length, 2);
  up = false;
  assert.equal(await ask(a, req('bob', 'right')), 'OK', 'served from the cache during the outage');
  assert.equal(await ask(a, req('bob', 'wrong')), 'NO', 'a wrong password is still refused');
  assert.equal(await ask(a, req('alice', 'right')), 'NO', 'an unknown identity is refused');
});

test('outage cache: a password the backend now refuses is forgotten', async () => {
  let current = 'old';
  let up = true;
  const { a, cache } = withCache('outage', (r) =>
    !up ? unavailable('NO', 'down') : r.password.toString() === current ? ok() : denied('NO'),
  );
  assert.equal(await ask(a, req('bob', 'old')), 'OK');
  current = 'new';
  assert.equal(await ask(a, req('bob', 'old')), 'NO');
  assert.equal(cache.size, 0);
  up = false;
  assert.equal(await ask(a, req('bob', 'old')), 'NO', 'the revoked password is not served during an outage');
});

test('with the cache on, identical credentials in flight share one backend check', async () => {
  let release!: () => void;
  const gate = new Promise<void>((r) => (release = r));
  const b = scripted(async (r) => {
    await gate;
    return byPassword('right')(r);
  });
  const cache = new CredentialCache({ ttlMs: 60_000, mode: 'normal' });
  const a = new Authenticator({ backend: b, concatRealm: false, timeoutMs: 1000, log: silent, cache });
  const burst = [
    ...Array.from({ length: 10 }, () => ask(a, req('bob', 'right'))),
    ...Array.from({ length: 5 }, () => ask(a, req('bob', 'wrong'))),
    ask(a, req('bob', 'right', 'imap')),
  ];
  await new Promise((r) => setImmediate(r));
  release();
  const answers = await Promise.all(burst);
  assert.deepEqual(answers, [...Array<string>(10).fill('OK'), ...Array<string>(5).fill('NO Incorrect password'), 'OK']);
  assert.equal(b.calls.length, 3, 'one check per distinct (login, realm, service, password)');
  assert.equal(await ask(a, req('bob', 'wrong')), 'NO Incorrect password');
  assert.equal(b.calls.length, 4, 'a finished failure is not reused');
});

// The throttle through the authenticator: small delays so the test is quick;
// only lower bounds of time are asserted (a timer never fires early).
function throttled(answer: (req: AuthRequest) => Outcome, cfg: Partial<ThrottleConfig> = {}) {
  const b = scripted(answer);
  const full: ThrottleConfig = { ...DEFAULT_THROTTLE, freeFailures: 3, refuseAfter: 6, delayMs: 40, maxDelayMs: 80, ...cfg };
  const store = new MemoryStore({
    windowMs: full.windowMs,
    knownGoodTtlMs: 86_400_000,
    knownGoodMax: 1000,
    trackedMax: 1000,
    penaltyAfter: full.freeFailures,
  });
  const throttle = new Throttle(full, store, silent);
  const a = new Authenticator({ backend: b, concatRealm: false, timeoutMs: 1000, log: silent, throttle });
  return { a, b, throttle, store };
}

async function timed(p: Promise<string>): Promise<[string, number]> {
  const t = performance.now();
  const answer = await p;
  return [answer, performance.now() - t];
}

test('throttle: the first failures are untouched, later ones held back, then refused without the backend', async () => {
  const { a, b } = throttled(byPassword('right'));
  const answers: Array<[string, number]> = [];
  for (let i = 0; i < 9; i++) answers.push(await timed(ask(a, req('bob', `guess-${i}`))));
  assert.ok(
    answers.every(([text]) => text === 'NO Incorrect password'),
    'every answer carries the mechanism’s own text',
  );
  assert.equal(b.calls.length, 6, 'past 6 failures the backend is not asked');
  assert.ok(
    answers.slice(3).every(([, ms]) => ms >= 35),
    `the 4th failure on waits its delay: ${answers.map(([, ms]) => Math.round(ms)).join(' ')}`,
  );
});

test('throttle: repeating the same wrong password does not escalate', async () => {
  const { a, b } = throttled(byPassword('right'));
  for (let i = 0; i < 12; i++) assert.equal(await ask(a, req('bob', 'old-password')), 'NO Incorrect password');
  assert.equal(b.calls.length, 12, 'every repeat still reached the backend');
});

test('throttle: known-good credentials are never delayed or refused, and the backend still decides', async () => {
  let locked = false;
  const { a, b } = throttled((r) => (locked ? denied('NO Account expired') : byPassword('right')(r)));
  assert.equal(await ask(a, req('bob', 'right')), 'OK');
  for (let i = 0; i < 8; i++) await ask(a, req('bob', `guess-${i}`));
  const calls = b.calls.length;
  assert.equal(await ask(a, req('bob', 'right')), 'OK', 'the known-good password answers during the cool-off');
  assert.equal(b.calls.length, calls + 1, 'and the backend was asked');
  locked = true;
  assert.equal(await ask(a, req('bob', 'right')), 'NO Account expired', 'a locked account gets the mechanism’s own NO');
});

test('throttle: an unavailable backend never counts as a failure', async () => {
  const { a, b } = throttled(() => unavailable('NO', 'ldap down'));
  for (let i = 0; i < 10; i++) await ask(a, req('bob', `pw-${i}`));
  assert.equal(b.calls.length, 10);
});

test('throttle: another login is unaffected by one under attack', { timeout: 30_000 }, async () => {
  // Bob's refusals are held for a minute: were alice held too, her answer
  // would not come before the test's timeout.
  const { a } = throttled(byPassword('right'), { delayMs: 60_000, maxDelayMs: 60_000 });
  const attack = Array.from({ length: 8 }, (_, i) => ask(a, req('bob', `guess-${i}`)));
  await new Promise((r) => setTimeout(r, 20));
  assert.equal(await ask(a, req('alice', 'right')), 'OK');
  a.releaseHolds();
  assert.deepEqual(await Promise.all(attack), Array(8).fill('NO Incorrect password'));
});

test('throttle: with a client address, a user gets in from a clean address while others attack the login', async () => {
  const { a, b } = throttled(byPassword('right'));
  for (let i = 0; i < 10; i++) await ask(a, { ...req('bob', `guess-${i}`), clientAddr: '198.51.100.7;1234' });
  const before = b.calls.length;
  assert.equal(await ask(a, { ...req('bob', 'right'), clientAddr: '203.0.113.9;5678' }), 'OK');
  assert.equal(b.calls.length, before + 1);
  assert.equal(
    await ask(a, { ...req('bob', 'right'), clientAddr: '198.51.100.7;1234' }),
    'OK',
    'known-good by now, from anywhere',
  );
});

test('throttle: the attacking address is refused for other logins too', async () => {
  const { a, b } = throttled(byPassword('right'));
  for (let i = 0; i < 10; i++) await ask(a, { ...req(`user${i}`, 'guess'), clientAddr: '198.51.100.7;1234' });
  const before = b.calls.length;
  assert.equal(await ask(a, { ...req('carol', 'guess'), clientAddr: '198.51.100.7;99' }), 'NO Incorrect password');
  assert.equal(b.calls.length, before, 'refused without asking the backend');
});

test('throttle off (no throttle): answers and calls are exactly the backend’s', async () => {
  const b = scripted(byPassword('right'));
  const a = new Authenticator({ backend: b, concatRealm: false, timeoutMs: 1000, log: silent });
  for (let i = 0; i < 30; i++) assert.equal(await ask(a, req('bob', `guess-${i}`)), 'NO Incorrect password');
  assert.equal(b.calls.length, 30);
  assert.equal(await ask(a, req('bob', 'right')), 'OK');
});

test('stopping releases the answers held back at once', async () => {
  const { a } = throttled(byPassword('right'), { delayMs: 60_000, maxDelayMs: 60_000 });
  for (let i = 0; i < 3; i++) await ask(a, req('bob', `guess-${i}`));
  const held = ask(a, req('bob', 'guess-x'));
  await new Promise((r) => setTimeout(r, 20));
  assert.equal(a.pending, 1);
  a.releaseHolds();
  assert.equal(await held, 'NO Incorrect password');
});

test('the result line names the mechanism that answered and the route taken', async () => {
  const lines: Array<Record<string, unknown>> = [];
  const log = pino({ level: 'debug' }, { write: (s: string) => void lines.push(JSON.parse(s) as Record<string, unknown>) });
  const b: Backend = {
    name: 'routes',
    refusalText: 'NO',
    routeOf: () => 'ldap.test',
    authenticate: async () => ({ ...denied('NO', 'Invalid password'), mech: 'ldap', route: 'ldap.test' }),
  };
  const a = new Authenticator({ backend: b, concatRealm: false, timeoutMs: 1000, log });
  assert.equal(await ask(a, req('bob', 'x', 'smtp', 'ldap.test')), 'NO');
  const line = lines.find((l) => typeof l.msg === 'string' && l.msg.startsWith('auth failure'));
  assert.equal(
    line?.msg,
    'auth failure: [user=bob] [service=smtp] [realm=ldap.test] [mech=ldap] [route=ldap.test] [reason=Invalid password]',
  );
  assert.deepEqual([line?.mech, line?.route], ['ldap', 'ldap.test']);
});

test('a throttle refusal is answered with the refusal text of the route the realm takes', async () => {
  let calls = 0;
  const b: Backend = {
    name: 'routes',
    refusalText: 'NO',
    refusalFor: (realm) => (realm === '' ? 'NO Incorrect password' : 'NO'),
    authenticate: async (r) => {
      calls++;
      return denied(r.realm === '' ? 'NO Incorrect password' : 'NO');
    },
  };
  const cfg: ThrottleConfig = { ...DEFAULT_THROTTLE, freeFailures: 1, refuseAfter: 2, delayMs: 1, maxDelayMs: 1 };
  const store = new MemoryStore({
    windowMs: cfg.windowMs,
    knownGoodTtlMs: 86_400_000,
    knownGoodMax: 1000,
    trackedMax: 1000,
    penaltyAfter: cfg.freeFailures,
  });
  const a = new Authenticator({
    backend: b,
    concatRealm: false,
    timeoutMs: 1000,
    log: silent,
    throttle: new Throttle(cfg, store, silent),
  });
  for (const realm of ['', 'ldap.test']) {
    const before = calls;
    const answers: string[] = [];
    for (let i = 0; i < 4; i++) answers.push(await ask(a, req('bob', `wrong${i}`, 'smtp', realm)));
    assert.ok(calls - before < 4, 'some attempts were refused without the backend');
    assert.deepEqual(new Set(answers), new Set([realm === '' ? 'NO Incorrect password' : 'NO']));
  }
});
