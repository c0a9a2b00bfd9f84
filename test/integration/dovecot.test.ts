// The daemon's Dovecot door with real mechanisms, without Postfix: many
// requests over persistent connections answered out of order, the two doors
// sharing one cache (their fingerprints agree), the shadow mechanism's job
// path answering as the native one does, the throttle counting per address,
// idle and half-open connections by the thousand, and --workers.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { sendRequest } from '../../src/client/request';
import { startDaemon, type RunningDaemon } from '../helpers/daemon';
import { DovecotAuthClient, type Reply } from '../helpers/dovecot-auth-client';
import { openConnections } from '../helpers/procs';
import { createUser, removeAllUsers, setExpired, userName, type TestUser } from '../helpers/users';

let tmp: string;
const sockets = (): string => fs.mkdtempSync(path.join(tmp, 'd-'));

before(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'dovecot-door-'));
});

after(() => {
  removeAllUsers();
  fs.rmSync(tmp, { recursive: true, force: true });
});

/** Auth result lines (JSON) of the daemon. */
function results(
  d: RunningDaemon,
): Array<{ msg: string; user?: string; remote?: string; result?: string; reason?: string; cached?: boolean }> {
  return d
    .output()
    .split('\n')
    .filter((l) => l.startsWith('{') && l.includes('"msg":"auth '))
    .map((l) => JSON.parse(l) as { msg: string });
}

async function waitUntil(cond: () => boolean, timeoutMs = 10_000): Promise<boolean> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    if (cond()) return true;
    if (Date.now() > until) return false;
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe('the Dovecot door with -a shadow -c', () => {
  let d: RunningDaemon;
  let socket: string;
  let users: TestUser[];
  let expired: TestUser;
  const clients: DovecotAuthClient[] = [];
  const connect = async (): Promise<DovecotAuthClient> => {
    const c = await DovecotAuthClient.connect(socket);
    clients.push(c);
    return c;
  };

  before(async () => {
    users = Array.from({ length: 6 }, (_, i) => createUser(userName(`dd${i}`), `Door-pw-${i}!`, 'sha512crypt'));
    expired = createUser(userName('ddx'), 'Expired-pw-1', 'sha512crypt');
    setExpired(expired.name);
    socket = path.join(sockets(), 'auth');
    d = await startDaemon({
      args: [
        '-a',
        'shadow',
        '-c',
        '-V',
        '--read-timeout',
        '1',
        '--log-failures-per-login',
        '100000',
        '--log-failures-per-second',
        '100000',
      ],
      dovecotSocket: socket,
    });
  });

  after(async () => {
    for (const c of clients) c.destroy();
    await d?.stop();
  });

  test('answers 1,000 requests over 50 persistent connections, interleaved, each correctly', async () => {
    const [hot, ...others] = users as [TestUser, ...TestUser[]];
    // hot's credentials are in the cache: its requests are answered at once,
    // ahead of hashes asked before them.
    assert.equal(await sendRequest(d.socketPath, { login: hot.name, password: hot.password, service: 'smtp', realm: '' }), 'OK');
    let unknown = 0;
    const conns = await Promise.all(Array.from({ length: 50 }, () => connect()));
    const runs = conns.map(async (c, ci) => {
      const expected = new Map<number, { kind: 'OK' | 'FAIL'; user: string }>();
      const asked: Array<Promise<Reply>> = [];
      // All twenty in one write: the daemon reads them together.
      c.socket.cork();
      for (let i = 0; i < 20; i++) {
        const id = i + 1;
        let user: string;
        let password: string;
        let kind: 'OK' | 'FAIL';
        if (i === 0 || i % 4 === 3) {
          // An unknown user, a new one each time: a (dummy) hash, and a wrong password no login is penalised for.
          user = `dd-nobody-${process.pid}-${ci}-${++unknown}`;
          password = 'whatever';
          kind = 'FAIL';
        } else if (i % 2 === 1) {
          user = hot.name;
          password = hot.password;
          kind = 'OK';
        } else {
          const u = others[(ci + i) % others.length]!;
          user = u.name;
          password = u.password;
          kind = 'OK';
        }
        expected.set(id, { kind, user });
        asked.push(
          i % 3 === 0
            ? c.login(user, password, { id, rip: `192.0.2.${ci}` })
            : c.plain(user, password, { id, rip: `192.0.2.${ci}` }),
        );
      }
      c.socket.uncork();
      const replies = await Promise.all(asked);
      for (const r of replies) {
        const e = expected.get(r.id);
        assert.ok(e !== undefined, `an answer to request ${r.id}, never asked: ${r.line}`);
        assert.equal(r.kind, e.kind, `connection ${ci} request ${r.id}: ${r.line}`);
        assert.equal(r.params.user, e.user, r.line);
      }
      return c.answeredIds;
    });
    const orders = await Promise.all(runs);
    assert.equal(
      orders.reduce((n, o) => n + o.length, 0),
      1000,
    );
    for (const o of orders)
      assert.deepEqual(
        [...o].sort((a, b) => a - b),
        Array.from({ length: 20 }, (_, i) => i + 1),
      );
    // Out of order on the wire: a cached answer overtook a hash asked before it.
    const outOfOrder = orders.filter((o) => o.some((id, i) => i > 0 && id < o[i - 1]!)).length;
    assert.ok(outOfOrder > 0, 'every connection got its answers in request order: nothing was interleaved');
  });

  test('a success through one door is a cache hit through the other: the two fingerprints agree', async () => {
    const a = users[4]!;
    const b = users[5]!;
    const c = await connect();
    assert.equal((await c.plain(a.name, a.password, { rip: '198.51.100.4' })).kind, 'OK');
    assert.equal(await sendRequest(d.socketPath, { login: a.name, password: a.password, service: 'smtp', realm: '' }), 'OK');
    assert.equal(await sendRequest(d.socketPath, { login: b.name, password: b.password, service: 'smtp', realm: '' }), 'OK');
    assert.equal((await c.plain(b.name, b.password, { rip: '198.51.100.5' })).kind, 'OK');
    assert.ok(
      await waitUntil(() => results(d).some((r) => r.msg === `auth success (cached): [user=${a.name}] [service=smtp] [realm=]`)),
      'the mux request after the Dovecot success was not a cache hit',
    );
    assert.ok(
      await waitUntil(() =>
        results(d).some((r) => r.msg === `auth success (cached): [user=${b.name}] [service=smtp] [realm=] [remote=198.51.100.5]`),
      ),
      'the Dovecot request after the mux success was not a cache hit',
    );
  });

  test("the shadow mechanism's verdicts come out the same through both doors", async () => {
    const u = users[1]!;
    const c = await connect();
    const cases: Array<[string, string, string]> = [
      [u.name, 'wrong-password', 'NO Incorrect password'],
      [`dd-none-${process.pid}`, 'whatever', 'NO Invalid username'],
      [expired.name, expired.password, 'NO Account expired'],
    ];
    for (const [login, password, mux] of cases) {
      assert.equal(await sendRequest(d.socketPath, { login, password, service: 'smtp', realm: '' }), mux);
      const r = await c.plain(login, password);
      assert.equal(r.kind, 'FAIL', r.line);
      // The client learns nothing about which: one reason for every refusal.
      assert.equal(r.params.reason, 'authentication failure');
      const reasons = (): string[] =>
        results(d)
          .filter((l) => l.user === login && l.reason !== undefined)
          .map((l) => l.reason ?? '');
      assert.ok(await waitUntil(() => reasons().length === 2), JSON.stringify(reasons()));
      assert.deepEqual(reasons(), [mux.slice(3), mux.slice(3)]);
    }
  });

  test('PLAIN asking to act as another user is refused without asking the mechanism', async () => {
    const u = users[2]!;
    const c = await connect();
    const before = results(d).filter((l) => l.user === u.name).length;
    const r = await c.plain(u.name, u.password, { authzid: 'root' });
    assert.equal(r.kind, 'FAIL');
    assert.match(r.params.reason ?? '', /Authorization identity differs/);
    assert.ok(await d.waitForLog(/dovecot socket: request \d+ refused: authzid/));
    assert.equal(results(d).filter((l) => l.user === u.name).length, before);
  });

  test('a thousand clients that never finish the handshake are cut at the read timeout; a thousand idle ones do not stop others', async () => {
    const pid = d.child.pid!;
    const silent = await Promise.all(Array.from({ length: 1000 }, () => DovecotAuthClient.connect(socket, { raw: true })));
    const idle = await Promise.all(Array.from({ length: 1000 }, () => connect()));
    const u = users[3]!;
    const c = await connect();
    assert.equal((await c.plain(u.name, u.password)).kind, 'OK');
    await Promise.all(silent.map((s) => s.closed));
    assert.ok(idle.every((i) => !i.isClosed));
    await d.waitForLog(/handshake not completed within the read timeout/);
    for (const i of idle) i.destroy();
    assert.ok(
      await waitUntil(() => openConnections(pid, socket) <= clients.length - idle.length),
      `${openConnections(pid, socket)} still open`,
    );
  });

  test('no password reaches the log', () => {
    const out = d.output();
    for (const u of [...users, expired]) assert.ok(!out.includes(u.password), `the log holds ${u.name}'s password`);
  });
});

describe('the Dovecot door and the throttle', () => {
  let d: RunningDaemon;
  let u: TestUser;
  let socket: string;

  before(async () => {
    u = createUser(userName('ddt'), 'Throttle-pw-1', 'sha512crypt');
    socket = path.join(sockets(), 'auth');
    d = await startDaemon({
      args: [
        '-a',
        'shadow',
        '--throttle-free',
        '1',
        '--throttle-refuse',
        '2',
        '--throttle-delay',
        '1',
        '--throttle-max-delay',
        '1',
      ],
      dovecotSocket: socket,
    });
  });

  after(async () => {
    await d?.stop();
  });

  test("counts failures per client address: refused from the guesser's address, answered from another", async () => {
    const c = await DovecotAuthClient.connect(socket);
    try {
      for (let i = 0; i < 3; i++) assert.equal((await c.plain(u.name, `guess-${i}`, { rip: '203.0.113.66' })).kind, 'FAIL');
      // The right password, from the guesser's address: refused unchecked.
      assert.equal((await c.plain(u.name, u.password, { rip: '203.0.113.66' })).kind, 'FAIL');
      await d.waitForLog(/"result":"refused".*\[remote=203\.0\.113\.66\]/);
      // From another address the user gets in.
      assert.equal((await c.plain(u.name, u.password, { rip: '203.0.113.7' })).kind, 'OK');
    } finally {
      c.destroy();
    }
  });
});

describe('--workers 2 with --dovecot-socket', () => {
  test('both sockets are served by the workers, and both are removed when the daemon stops', async () => {
    const u = createUser(userName('ddw'), 'Workers-pw-1', 'sha512crypt');
    const socket = path.join(sockets(), 'auth');
    const d = await startDaemon({ args: ['-a', 'shadow', '--workers', '2'], dovecotSocket: socket });
    try {
      await d.waitForLog(/listening on dovecot socket: .* worker processes/);
      const replies = await Promise.all(
        Array.from({ length: 8 }, async () => {
          const c = await DovecotAuthClient.connect(socket);
          try {
            return (await c.plain(u.name, u.password)).kind;
          } finally {
            c.destroy();
          }
        }),
      );
      assert.deepEqual(replies, Array(8).fill('OK'));
      assert.equal(await sendRequest(d.socketPath, { login: u.name, password: u.password, service: 'smtp', realm: '' }), 'OK');
    } finally {
      assert.equal(await d.stop(), 0);
    }
    assert.equal(fs.existsSync(socket), false);
  });
});
