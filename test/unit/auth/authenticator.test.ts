// The authenticator's own logic (validation, -r, deadline, cache policy),
// driven by a scripted backend. The real backends have integration tests.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import pino from 'pino';
import { Authenticator, TIMEOUT_REPLY } from '../../../src/auth/authenticator';
import { CredentialCache, type CacheMode } from '../../../src/auth/cache';
import { denied, ok, unavailable, type AuthRequest, type Backend, type Outcome } from '../../../src/backends/backend';
import type { RawRequest } from '../../../src/protocol/decoder';

const silent = pino({ level: 'silent' });

function scripted(answer: (req: AuthRequest) => Outcome | Promise<Outcome>): Backend & { calls: AuthRequest[] } {
  const calls: AuthRequest[] = [];
  return {
    name: 'scripted',
    calls,
    async authenticate(req) {
      calls.push({ ...req, password: Buffer.from(req.password) });
      return answer(req);
    },
  };
}

const raw = (login: string, password: string, service = 'smtp', realm = ''): RawRequest => ({
  login: Buffer.from(login),
  password: Buffer.from(password),
  service: Buffer.from(service),
  realm: Buffer.from(realm),
});

test('empty login and empty password are refused before the backend is asked', async () => {
  const b = scripted(() => ok());
  const a = new Authenticator({ backend: b, concatRealm: false, timeoutMs: 1000, log: silent });
  assert.equal(await a.handle(raw('', 'x')), 'NO NULL login received');
  assert.equal(await a.handle(raw('bob', '')), 'NO NULL password received');
  assert.equal(b.calls.length, 0);
});

test('-r joins login and realm only when the realm is non-empty, and still passes the realm', async () => {
  const b = scripted(() => ok());
  const a = new Authenticator({ backend: b, concatRealm: true, timeoutMs: 1000, log: silent });
  await a.handle(raw('bob', 'x', 'smtp', 'example.org'));
  await a.handle(raw('bob', 'x', 'smtp', ''));
  assert.deepEqual(
    b.calls.map((c) => [c.login, c.realm]),
    [
      ['bob@example.org', 'example.org'],
      ['bob', ''],
    ],
  );
});

test('a backend that does not answer in time gets NO and an aborted signal', async () => {
  let aborted = false;
  const b: Backend = {
    name: 'hung',
    authenticate: (_req, signal) =>
      new Promise<Outcome>(() => {
        signal.addEventListener('abort', () => (aborted = true));
      }),
  };
  const a = new Authenticator({ backend: b, concatRealm: false, timeoutMs: 50, log: silent });
  assert.equal(await a.handle(raw('bob', 'x')), TIMEOUT_REPLY);
  assert.equal(aborted, true);
});

test('a reply that is neither OK nor NO becomes NO internal mechanism failure', async () => {
  const b = scripted(() => ({ ok: true, text: 'MAYBE' }));
  const a = new Authenticator({ backend: b, concatRealm: false, timeoutMs: 1000, log: silent });
  assert.equal(await a.handle(raw('bob', 'x')), 'NO internal mechanism failure');
});

test('a backend that throws gets NO internal mechanism failure', async () => {
  const b = scripted(() => {
    throw new Error('boom');
  });
  const a = new Authenticator({ backend: b, concatRealm: false, timeoutMs: 1000, log: silent });
  assert.equal(await a.handle(raw('bob', 'x')), 'NO internal mechanism failure');
});

test('the password buffer is wiped after the request', async () => {
  const b = scripted(() => ok());
  const a = new Authenticator({ backend: b, concatRealm: false, timeoutMs: 1000, log: silent });
  const r = raw('bob', 'secret');
  await a.handle(r);
  assert.deepEqual(r.password, Buffer.alloc(6));
});

function withCache(mode: CacheMode, answer: (req: AuthRequest) => Outcome) {
  const b = scripted(answer);
  const cache = new CredentialCache({ ttlMs: 60_000, mode });
  const a = new Authenticator({ backend: b, concatRealm: false, timeoutMs: 1000, log: silent, cache });
  return { a, b, cache };
}

test('normal cache: a repeat success is answered from the cache, failures never are', async () => {
  const { a, b } = withCache('normal', (req) => (req.password.toString() === 'right' ? ok() : denied('NO Incorrect password')));
  assert.equal(await a.handle(raw('bob', 'right')), 'OK');
  assert.equal(await a.handle(raw('bob', 'right')), 'OK');
  assert.equal(b.calls.length, 1);
  assert.equal(await a.handle(raw('bob', 'wrong')), 'NO Incorrect password');
  assert.equal(await a.handle(raw('bob', 'wrong')), 'NO Incorrect password');
  assert.equal(b.calls.length, 3, 'each wrong password went to the backend');
  assert.equal(await a.handle(raw('bob', 'right')), 'OK');
  assert.equal(b.calls.length, 3, 'a wrong password did not evict the entry');
});

test('normal cache: the backend’s own OK text is passed through the first time, "OK" on hits', async () => {
  const { a } = withCache('normal', () => ok('OK remote authentication successful'));
  assert.equal(await a.handle(raw('bob', 'pw')), 'OK remote authentication successful');
  assert.equal(await a.handle(raw('bob', 'pw')), 'OK');
});

test('outage cache: always asks the backend, and answers from the cache only when it is unavailable', async () => {
  let up = true;
  const { a, b } = withCache('outage', (req) =>
    !up ? unavailable('NO', 'ldap down') : req.password.toString() === 'right' ? ok() : denied('NO'),
  );
  assert.equal(await a.handle(raw('bob', 'right')), 'OK');
  assert.equal(await a.handle(raw('bob', 'right')), 'OK');
  assert.equal(b.calls.length, 2);
  up = false;
  assert.equal(await a.handle(raw('bob', 'right')), 'OK', 'served from the cache during the outage');
  assert.equal(await a.handle(raw('bob', 'wrong')), 'NO', 'a wrong password is still refused');
  assert.equal(await a.handle(raw('alice', 'right')), 'NO', 'an unknown identity is refused');
});

test('outage cache: a password the backend now refuses is forgotten', async () => {
  let current = 'old';
  let up = true;
  const { a, cache } = withCache('outage', (req) =>
    !up ? unavailable('NO', 'down') : req.password.toString() === current ? ok() : denied('NO'),
  );
  assert.equal(await a.handle(raw('bob', 'old')), 'OK');
  current = 'new';
  assert.equal(await a.handle(raw('bob', 'old')), 'NO');
  assert.equal(cache.size, 0);
  up = false;
  assert.equal(await a.handle(raw('bob', 'old')), 'NO', 'the revoked password is not served during an outage');
});

test('with the cache on, identical credentials in flight share one backend check', async () => {
  let release!: () => void;
  const gate = new Promise<void>((r) => (release = r));
  const b = scripted(async (req) => {
    await gate;
    return req.password.toString() === 'right' ? ok() : denied('NO Incorrect password');
  });
  const cache = new CredentialCache({ ttlMs: 60_000, mode: 'normal' });
  const a = new Authenticator({ backend: b, concatRealm: false, timeoutMs: 1000, log: silent, cache });
  const burst = [
    ...Array.from({ length: 10 }, () => a.handle(raw('bob', 'right'))),
    ...Array.from({ length: 5 }, () => a.handle(raw('bob', 'wrong'))),
    a.handle(raw('bob', 'right', 'imap')),
  ];
  await new Promise((r) => setImmediate(r));
  release();
  const answers = await Promise.all(burst);
  assert.deepEqual(answers, [...Array(10).fill('OK'), ...Array(5).fill('NO Incorrect password'), 'OK']);
  assert.equal(b.calls.length, 3, 'one check per distinct (login, realm, service, password)');
  assert.equal(await a.handle(raw('bob', 'wrong')), 'NO Incorrect password');
  assert.equal(b.calls.length, 4, 'a finished failure is not reused');
});
