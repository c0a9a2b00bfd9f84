// ldap_servers failover and outages against a real slapd: a dead or hung
// first server, back-off, slapd killed or frozen mid-run and restarted with no
// daemon restart, and 100 concurrent authentications.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { freePorts, startSlapd, USERS, type Slapd } from '../helpers/slapd';
import { serviceConf, startLdapDaemon } from '../helpers/ldap';
import { connectionsHeld } from '../helpers/procs';
import { startSilentServer } from '../helpers/tcp';
import { TIMEOUT_REPLY } from '../../src/backends/backend';

const alice = USERS.alice;
/** For tests where ldap_timeout must fire: short, so they are quick. */
const TIMEOUT_S = 2;
const TIMEOUT_MS = TIMEOUT_S * 1000;
/**
 * For tests where it must not: an answer well before it shows the timeout
 * was not waited for, with room for any machine's speed (the work itself
 * is milliseconds; the staggered start of the next server is at most 1 s).
 */
const LONG_TIMEOUT_S = 10;
const LONG_TIMEOUT_MS = LONG_TIMEOUT_S * 1000;

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

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
      serviceConf(`ldap://127.0.0.1:${deadPort}/ ${slapd.ldapUrl}`, { ldap_timeout: LONG_TIMEOUT_S }),
    );
    try {
      for (let i = 0; i < 10; i++) {
        const r = await d.timed('alice', alice.password);
        assert.equal(r.reply, 'OK');
        assert.ok(r.ms < LONG_TIMEOUT_MS, `request ${i} took ${r.ms} ms`);
      }
      assert.equal((await d.timed('alice', 'wrong-pass')).reply, 'NO');
    } finally {
      await d.stop();
    }
  });

  test('a hung first server: the next one answers within ldap_timeout, and the hung one is left alone', async () => {
    const hung = await startSilentServer();
    const d = await startLdapDaemon(
      serviceConf(`ldap://127.0.0.1:${hung.port}/ ${slapd.ldapUrl}`, { ldap_timeout: LONG_TIMEOUT_S }),
    );
    try {
      const first = await d.timed('alice', alice.password);
      assert.equal(first.reply, 'OK');
      assert.ok(first.ms < LONG_TIMEOUT_MS, `first request took ${first.ms} ms`);
      // In back-off now: the following requests go straight to slapd. Had
      // each tried the hung server first, it would have seen ten more
      // connections; counted, not timed.
      const triedBefore = hung.accepted();
      for (let i = 0; i < 10; i++) {
        const r = await d.timed('alice', alice.password);
        assert.equal(r.reply, 'OK');
        assert.ok(r.ms < LONG_TIMEOUT_MS, `request ${i} took ${r.ms} ms`);
      }
      assert.ok(hung.accepted() - triedBefore <= 1, `hung server tried ${hung.accepted() - triedBefore} more times`);
      await d.d.waitForLog(/failed \(.*no answer|slower than/);
    } finally {
      await d.stop();
      await hung.close();
    }
  });

  test('slapd killed mid-run: the requests it holds are answered NO, then OK after it restarts, same daemon', async () => {
    // ldap_timeout and the request deadline (15 s) outlast the test's steps:
    // only slapd's death can end the requests it holds.
    const d = await startLdapDaemon(serviceConf(slapd.ldapUrl, { ldap_timeout: LONG_TIMEOUT_S }));
    try {
      assert.equal(await d.ask('alice', alice.password), 'OK');
      // Stopped, slapd answers none of these: all 20 are held, none can succeed.
      slapd.pause();
      const during = Array.from({ length: 20 }, (_, i) =>
        d.explain(i % 2 ? 'alice' : 'bob', i % 2 ? alice.password : USERS.bob.password),
      );
      const pid = d.d.child.pid!;
      // All 20 accepted before slapd dies (the bound only guards against a hang).
      for (const end = Date.now() + 30_000; connectionsHeld(pid, d.d.socketPath) < 20; await sleep(10)) {
        if (Date.now() > end) throw new Error(`the daemon holds ${connectionsHeld(pid, d.d.socketPath)} of 20 requests`);
      }
      await slapd.kill();
      for (const r of await Promise.all(during)) {
        assert.deepEqual([r.reply, r.result], ['NO', 'unavailable'], r.reason);
      }
      const down = await d.explain('alice', alice.password);
      assert.equal(down.reply, 'NO');
      assert.equal(down.result, 'unavailable');
      assert.match(down.reason, /^Cannot connect to ldap server/);

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
      // A bare NO from the mechanism at ldap_timeout, not the daemon's own
      // deadline alert (15 s): the answer says which timer fired.
      assert.equal(r.reply, 'NO');
      assert.ok(r.ms >= TIMEOUT_MS - 50, `took ${r.ms} ms, less than ldap_timeout`);
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
      // The deadline's own answer, not ldap_timeout's bare NO (10 s).
      assert.equal(r.reply, TIMEOUT_REPLY);
      assert.ok(r.ms >= 1000 - 50, `took ${r.ms} ms, less than --auth-timeout`);
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
        // The client's timeout only guards against a hang; how long 100
        // binds take depends on the machine, and is not what is tested.
        const replies = await Promise.all(cases.map((c) => d.ask(c.login, c.password, { timeoutMs: 60_000 })));
        cases.forEach((c, i) => assert.equal(replies[i], c.want, `${i}: ${c.login}`));
      } finally {
        await d.stop();
      }
    });
  }
});
