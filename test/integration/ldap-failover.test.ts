// ldap_servers failover and outages against a real slapd: a dead or hung
// first server, back-off, slapd killed or frozen mid-run and restarted with no
// daemon restart, and 100 concurrent authentications.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { freePorts, startSlapd, USERS, type Slapd } from '../helpers/slapd';
import { serviceConf, startLdapDaemon } from '../helpers/ldap';
import { startSilentServer } from '../helpers/tcp';

const alice = USERS.alice;
const TIMEOUT_S = 2;
const TIMEOUT_MS = TIMEOUT_S * 1000;

/** Accepts TCP connections and never says a word, like a frozen server. */
describe('ldap failover and outages', () => {
  let slapd: Slapd;
  let deadPort: number;
  before(async () => {
    slapd = await startSlapd();
    // A port nobody listens on: connections are refused.
    [deadPort] = (await freePorts(1)) as [number];
  });
  after(async () => {
    await slapd?.cleanup();
  });

  test('a dead first server: every request succeeds within ldap_timeout', async () => {
    const d = await startLdapDaemon(
      serviceConf(`ldap://127.0.0.1:${deadPort}/ ${slapd.ldapUrl}`, { ldap_timeout: TIMEOUT_S }),
    );
    try {
      for (let i = 0; i < 10; i++) {
        const r = await d.timed('alice', alice.password);
        assert.equal(r.reply, 'OK');
        assert.ok(r.ms < TIMEOUT_MS, `request ${i} took ${r.ms} ms`);
      }
      assert.equal((await d.timed('alice', 'wrong-pass')).reply, 'NO');
    } finally {
      await d.stop();
    }
  });

  test('a hung first server: the next one answers within ldap_timeout, and the hung one is left alone', async () => {
    const hung = await startSilentServer();
    const d = await startLdapDaemon(
      serviceConf(`ldap://127.0.0.1:${hung.port}/ ${slapd.ldapUrl}`, { ldap_timeout: TIMEOUT_S }),
    );
    try {
      const first = await d.timed('alice', alice.password);
      assert.equal(first.reply, 'OK');
      assert.ok(first.ms < TIMEOUT_MS, `first request took ${first.ms} ms`);
      // In back-off now: the following requests go straight to slapd.
      const triedBefore = hung.accepted();
      const started = Date.now();
      for (let i = 0; i < 10; i++) {
        const r = await d.timed('alice', alice.password);
        assert.equal(r.reply, 'OK');
        assert.ok(r.ms < TIMEOUT_MS, `request ${i} took ${r.ms} ms`);
      }
      // Ten requests in far less than ten stagger delays, and at most one retry of the hung server.
      assert.ok(Date.now() - started < 1500, `10 requests took ${Date.now() - started} ms`);
      assert.ok(hung.accepted() - triedBefore <= 1, `hung server tried ${hung.accepted() - triedBefore} more times`);
      await d.d.waitForLog(/failed \(.*no answer|slower than/);
    } finally {
      await d.stop();
      await hung.close();
    }
  });

  test('slapd killed mid-run: NO within the deadline, then OK after it restarts, same daemon', async () => {
    const d = await startLdapDaemon(serviceConf(slapd.ldapUrl, { ldap_timeout: TIMEOUT_S }));
    try {
      assert.equal(await d.ask('alice', alice.password), 'OK');
      // Requests in flight while slapd dies.
      const during = Array.from({ length: 20 }, (_, i) => d.timed(i % 2 ? 'alice' : 'bob', i % 2 ? alice.password : USERS.bob.password));
      await slapd.kill();
      for (const r of await Promise.all(during)) {
        assert.ok(r.reply === 'OK' || r.reply === 'NO', r.reply);
        assert.ok(r.ms < 2 * TIMEOUT_MS + 1000, `took ${r.ms} ms`);
      }
      const down = await d.explain('alice', alice.password);
      assert.equal(down.reply, 'NO');
      assert.equal(down.result, 'unavailable');
      assert.match(down.reason, /^Cannot connect to ldap server/);
      const t = await d.timed('alice', alice.password);
      assert.equal(t.reply, 'NO');
      assert.ok(t.ms < TIMEOUT_MS, `took ${t.ms} ms`);

      await slapd.start();
      assert.equal(await d.ask('alice', alice.password), 'OK');
      assert.equal(await d.ask('alice', 'wrong-pass'), 'NO');
    } finally {
      if (!slapd.running()) await slapd.start();
      await d.stop();
    }
  });

  test('slapd frozen (accepts, never answers): a bare NO within the deadline, then OK once it thaws', async () => {
    const d = await startLdapDaemon(serviceConf(slapd.ldapUrl, { ldap_timeout: TIMEOUT_S }));
    try {
      assert.equal(await d.ask('alice', alice.password), 'OK');
      slapd.pause();
      const r = await d.timed('alice', alice.password);
      // A bare NO from the mechanism, not the daemon's own deadline alert.
      assert.equal(r.reply, 'NO');
      assert.ok(r.ms < TIMEOUT_MS + 1000, `took ${r.ms} ms`);
      slapd.resume();
      assert.equal(await d.ask('alice', alice.password), 'OK');
    } finally {
      slapd.resume();
      await d.stop();
    }
  });

  test("the daemon's own deadline (--auth-timeout) cuts a longer ldap_timeout short", async () => {
    const d = await startLdapDaemon(serviceConf(slapd.ldapUrl, { ldap_timeout: 10 }), ['--auth-timeout', '1']);
    try {
      slapd.pause();
      const r = await d.timed('alice', alice.password);
      assert.match(r.reply, /^NO/);
      assert.ok(r.ms < 2500, `took ${r.ms} ms`);
      slapd.resume();
      assert.equal(await d.ask('alice', alice.password), 'OK');
    } finally {
      slapd.resume();
      await d.stop();
    }
  });

  for (const method of ['bind', 'custom', 'fastbind'] as const) {
    test(`100 concurrent authentications are all answered correctly (${method})`, async () => {
      const d = await startLdapDaemon(
        serviceConf(slapd.ldapUrl, {
          ldap_auth_method: method,
          ...(method === 'fastbind' ? { ldap_filter: alice.dn.replace('uid=alice', 'uid=%u') } : {}),
        }),
      );
      try {
        const users = [USERS.alice, USERS.bob, USERS.carol, USERS.dave];
        const cases = Array.from({ length: 100 }, (_, i) => {
          const u = users[i % users.length]!;
          const kind = i % 3;
          if (kind === 0) return { login: u.uid, password: u.password, want: 'OK' };
          if (kind === 1) return { login: u.uid, password: `${u.password}-${i}`, want: 'NO' };
          return { login: `nobody${i}`, password: u.password, want: 'NO' };
        });
        const started = Date.now();
        const replies = await Promise.all(cases.map((c) => d.ask(c.login, c.password, { timeoutMs: 20_000 })));
        const elapsed = Date.now() - started;
        cases.forEach((c, i) => assert.equal(replies[i], c.want, `${i}: ${c.login}`));
        assert.ok(elapsed < 10_000, `took ${elapsed} ms`);
      } finally {
        await d.stop();
      }
    });
  }
});
