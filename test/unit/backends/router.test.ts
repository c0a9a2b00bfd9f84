// The router behind --routes and -a a,b, with scripted mechanisms as its
// factories: which instance answers which realm, the per-route realm join,
// instance sharing, and a reload beside requests in flight.
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pino from 'pino';
import { type AuthRequest, type Backend, type BackendFactory, notFound, ok, type Outcome } from '../../../src/backends/backend';
import { Router } from '../../../src/backends/router';
import { Authenticator, TIMEOUT_REPLY } from '../../../src/auth/authenticator';
import { Registry } from '../../../src/metrics/registry';
import { ServiceMetrics } from '../../../src/metrics/service';
import { CredentialCache } from '../../../src/auth/cache';
import { fakeExchange } from '../../helpers/exchange';

const silent = pino({ level: 'silent' });

interface Made {
  key: string;
  asked: string[];
  closed: boolean;
  reloads: number;
}

/** Factories whose instances answer OK for logins listed in their option ("ldap:alice+bob"), else unknown user. */
function factories(made: Made[], hold?: Promise<void>): Record<string, BackendFactory> {
  const make =
    (name: string): BackendFactory =>
    async ({ mechOption }) => {
      const m: Made = { key: `${name}:${mechOption ?? ''}`, asked: [], closed: false, reloads: 0 };
      made.push(m);
      const users = (mechOption ?? '').split('+');
      const b: Backend = {
        name,
        refusalText: `NO ${name}`,
        async authenticate(req: AuthRequest): Promise<Outcome> {
          m.asked.push(req.login);
          if (hold !== undefined) await hold;
          return users.includes(req.login.split('@')[0] ?? '') ? ok() : notFound(`NO ${name}`, 'User not found');
        },
        async reload() {
          m.reloads++;
        },
        async close() {
          m.closed = true;
        },
      };
      return b;
    };
  return { shadow: make('shadow'), ldap: make('ldap'), rimap: make('rimap') };
}

// One directory for every routes file these tests write, removed at the end.
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'routes-'));
let files = 0;
after(() => fs.rmSync(dir, { recursive: true, force: true }));

/** A file named routes (as the errors show it), in a directory of its own. */
function routesFile(text: string): string {
  const sub = path.join(dir, String(++files));
  fs.mkdirSync(sub);
  const file = path.join(sub, 'routes');
  fs.writeFileSync(file, text);
  return file;
}

const req = (login: string, realm: string): AuthRequest => ({ login, password: Buffer.from('pw'), service: 'smtp', realm });
const ask = (r: Router, login: string, realm: string): Promise<Outcome> =>
  r.authenticate(req(login, realm), new AbortController().signal);

test('each realm is answered by its own route, and a realm with no route gets NO naming the realm', async () => {
  const made: Made[] = [];
  const file = routesFile('- shadow\nldap.test ldap:bob\n*.corp.test ldap:carol\n');
  const r = await Router.fromFile(file, { factories: factories(made), log: silent, concatRealm: false });
  assert.equal((await ask(r, 'bob', 'ldap.test')).ok, true);
  assert.equal((await ask(r, 'carol', 'x.corp.test')).ok, true);
  const cross = await ask(r, 'carol', 'ldap.test');
  assert.equal(cross.ok, false);
  assert.equal(cross.route, 'ldap.test');
  const none = await ask(r, 'bob', 'nowhere.test');
  assert.equal(none.ok, false);
  assert.equal(none.text, 'NO');
  assert.equal(none.route, '(none)');
  assert.match(!none.ok ? none.reason : '', /no route for realm 'nowhere.test'/);
  // The carol directory never saw the request sent with ldap.test's name.
  assert.deepEqual(made.find((m) => m.key === 'ldap:carol')?.asked, ['carol']);
});

test('two instances of one mechanism with different options run side by side; the same option shares one', async () => {
  const made: Made[] = [];
  const file = routesFile('a.test ldap:x\nb.test ldap:y\nc.test ldap:x\n');
  await Router.fromFile(file, { factories: factories(made), log: silent, concatRealm: false });
  assert.deepEqual(made.map((m) => m.key).sort(), ['ldap:x', 'ldap:y']);
});

test('+r joins login@realm for its route only, -r never, and the rest follow the daemon -r', async () => {
  const made: Made[] = [];
  const file = routesFile('join.test ldap:a +r\nplain.test ldap:b -r\n* shadow\n');
  const r = await Router.fromFile(file, { factories: factories(made), log: silent, concatRealm: true });
  await ask(r, 'a', 'join.test');
  await ask(r, 'b', 'plain.test');
  await ask(r, 'c', 'other.test');
  assert.deepEqual(made.find((m) => m.key === 'ldap:a')?.asked, ['a@join.test']);
  assert.deepEqual(made.find((m) => m.key === 'ldap:b')?.asked, ['b']);
  assert.deepEqual(made.find((m) => m.key === 'shadow:')?.asked, ['c@other.test']);
});

test('a reload swaps the table for the next request, reuses kept instances and closes a dropped one after its last request', async () => {
  const made: Made[] = [];
  let release!: () => void;
  const hold = new Promise<void>((res) => (release = res));
  const file = routesFile('a.test ldap:alice\nb.test ldap:bob\n');
  const r = await Router.fromFile(file, { factories: factories(made, hold), log: silent, concatRealm: false });
  const inFlight = ask(r, 'bob', 'b.test');
  fs.writeFileSync(file, 'a.test ldap:alice\nb.test ldap:bobby+bob\n');
  await r.reload();
  const old = made.find((m) => m.key === 'ldap:bob')!;
  assert.equal(old.closed, false, 'closed under a request in flight');
  release();
  assert.equal((await inFlight).ok, true);
  assert.equal(old.closed, true);
  assert.equal(made.find((m) => m.key === 'ldap:alice')?.reloads, 1);
  assert.equal((await ask(r, 'bobby', 'b.test')).ok, true);
});

test('an invalid new routes file keeps the old table and says why', async () => {
  const made: Made[] = [];
  const file = routesFile('a.test ldap:alice\n');
  const r = await Router.fromFile(file, { factories: factories(made), log: silent, concatRealm: false });
  fs.writeFileSync(file, 'a.test ldap:alice\na.test kerberos5\n');
  await assert.rejects(r.reload(), /routes:2:1: realm 'a.test' is routed twice.*2:8: unknown mechanism 'kerberos5'/);
  assert.equal((await ask(r, 'alice', 'a.test')).ok, true);
  assert.deepEqual(r.describe(), ['a.test ldap:alice']);
});

test('-a a,b asks the second when the first does not know the login, without a route in the outcome', async () => {
  const made: Made[] = [];
  const f = factories(made);
  const r = await Router.chain(['shadow', 'ldap'], 'bob', { factories: f, log: silent, concatRealm: false });
  const out = await ask(r, 'bob', 'x.test');
  assert.equal(out.ok, true);
  assert.equal(out.mech, 'ldap');
  assert.equal(out.route, undefined);
  assert.deepEqual(
    made.map((m) => m.key),
    ['shadow:', 'ldap:bob'],
  );
});

test('the servers of every instance are reported, for the metrics and the status line', async () => {
  const make =
    (uri: string): BackendFactory =>
    async ({ mechOption }) => ({
      name: 'ldap',
      refusalText: 'NO',
      authenticate: async () => ok(),
      servers: () => [{ name: `${uri}${mechOption ?? ''}`, up: true }],
    });
  const file = routesFile('a.test ldap:/a\nb.test ldap:/b\nc.test ldap:/a\n');
  const r = await Router.fromFile(file, { factories: { ldap: make('ldap://x') }, log: silent, concatRealm: false });
  assert.deepEqual(
    r
      .servers()
      .map((s) => s.name)
      .sort(),
    ['ldap://x/a', 'ldap://x/b'],
  );
});

test('the cache is per request whatever the route: an entry of one realm never answers another', async () => {
  const made: Made[] = [];
  const file = routesFile('a.test ldap:bob\nb.test ldap:carol\n');
  const r = await Router.fromFile(file, { factories: factories(made), log: silent, concatRealm: false });
  const cache = new CredentialCache({ ttlMs: 60_000, sizeKb: undefined, mode: 'normal' });
  const a = new Authenticator({ backend: r, concatRealm: false, timeoutMs: 1000, log: silent, cache });
  const send = (realm: string): Promise<string> => {
    const f = fakeExchange({ login: 'bob', password: 'pw', service: 'smtp', realm });
    a.handle(f.x);
    return f.answer;
  };
  assert.equal(await send('a.test'), 'OK');
  assert.equal(await send('a.test'), 'OK');
  assert.equal(await send('b.test'), 'NO ldap');
  const bobDir = made.find((m) => m.key === 'ldap:bob');
  const carolDir = made.find((m) => m.key === 'ldap:carol');
  assert.deepEqual([bobDir?.asked.length, carolDir?.asked.length], [1, 1], 'the repeat was a cache hit; b.test was asked');
});

test('a request the deadline cuts short is logged and counted under the mechanism the chain was asking', async () => {
  const made: Made[] = [];
  const never = new Promise<void>(() => undefined);
  const hanging = factories(made, never);
  // shadow does not know alice and answers at once; ldap never answers.
  const fs2: Record<string, BackendFactory> = { ...hanging, shadow: factories(made).shadow as BackendFactory };
  const router = await Router.fromFile(routesFile('*  shadow ldap:bob\n'), { factories: fs2, log: silent, concatRealm: false });
  const lines: Array<Record<string, unknown>> = [];
  const log = pino({ level: 'info' }, { write: (s: string) => void lines.push(JSON.parse(s) as Record<string, unknown>) });
  const metrics = new ServiceMetrics('routes', false, new Registry(), 'routes');
  const a = new Authenticator({ backend: router, concatRealm: false, timeoutMs: 50, log, metrics });
  const f = fakeExchange({ login: 'alice', password: 'pw', service: 'smtp', realm: 'example.org' });
  a.handle(f.x);
  assert.equal(await f.answer, TIMEOUT_REPLY);
  const line = lines.find((l) => l.result === 'timeout');
  assert.deepEqual([line?.mech, line?.route], ['ldap', '*']);
  const fam = (await metrics.registry.snapshot(false)).find((x) => x.name === 'saslauthd_requests_total');
  const counted = fam?.series.filter((s) => 'value' in s && s.value > 0).map((s) => s.labels);
  assert.deepEqual(counted, ['mech="ldap",route="*",result="timeout"']);
});
