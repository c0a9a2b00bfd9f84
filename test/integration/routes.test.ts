// --routes: one daemon, one socket, four realms on four backends. System
// accounts (no realm) on shadow, ldap.test on one slapd, imap.test on a
// Dovecot (rimap), *.corp.test on a second slapd searching another suffix.
// Each realm authenticates its own users; a user sent with another realm's
// name gets NO, and his own backend never sees the request (slapd's -d stats
// log, Dovecot's auth_verbose log).
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { startDaemon, type RunningDaemon } from '../helpers/daemon';
import { lastResult as lastResultOf, resultLines as resultLinesOf } from '../helpers/result-lines';
import { bindsAs, startSlapd, type Slapd, USERS, PEOPLE, REMOTE_BASE_DN } from '../helpers/slapd';
import { DovecotAuthClient } from '../helpers/dovecot-auth-client';
import { scrape } from '../helpers/metrics';
import { startDovecot, type Dovecot } from '../helpers/dovecot';
import { createUser, removeAllUsers, userName, type TestUser } from '../helpers/users';
import { assertNoSecrets } from '../helpers/ldap';
import { testsaslauthd, OK_LINE, NO_LINE } from '../helpers/testsaslauthd';
import { sendRequest } from '../../src/client/request';

const IMAP_USER = { name: 'ivan', password: 'Ivan-Imap-Secret1' };
const WRONG = 'not-The-password7';

let ldapA: Slapd;
let ldapB: Slapd;
let dovecot: Dovecot;
let d: RunningDaemon;
let sys: TestUser;
let routes: string;

/** Searches a slapd logged for this uid. */
const searchesFor = (s: Slapd, uid: string): number =>
  s
    .output()
    .split('\n')
    .filter((l) => l.includes(`(uid=${uid})`)).length;
/** Lines of Dovecot's log naming this login. */
const dovecotSaw = (login: string): number =>
  dovecot
    .log()
    .split('\n')
    .filter((l) => l.includes(login)).length;

const lastResult = (user: string, result: string): Promise<Record<string, unknown> | undefined> => lastResultOf(d, user, result);

const ask = (login: string, password: string, realm: string, service = 'smtp'): Promise<string> =>
  sendRequest(d.socketPath, { login, password, service, realm }, 20_000);

function ldapConf(s: Slapd, base: string, name: string): string {
  const file = path.join(s.dir, name);
  fs.writeFileSync(
    file,
    [`ldap_servers: ${s.ldapUrl}`, `ldap_search_base: ${base}`, 'ldap_filter: (uid=%u)', 'ldap_timeout: 3', ''].join('\n'),
  );
  return file;
}

before(async () => {
  [ldapA, ldapB, dovecot] = await Promise.all([
    startSlapd({ logStats: true }),
    startSlapd({ logStats: true }),
    startDovecot([IMAP_USER]),
  ]);
  sys = createUser(userName('rte'), 'Sys-Route-Secret2');
  routes = path.join(ldapA.dir, 'routes');
  fs.writeFileSync(
    routes,
    [
      '# realm        chain',
      '-              shadow',
      `ldap.test      ldap:${ldapConf(ldapA, PEOPLE, 'a.conf')}`,
      `imap.test      rimap:127.0.0.1/${dovecot.imapPort}`,
      `*.corp.test    ldap:${ldapConf(ldapB, `ou=people,${REMOTE_BASE_DN}`, 'b.conf')}`,
      '',
    ].join('\n'),
  );
  d = await startDaemon({ args: ['--routes', routes, '-V', '--throttle', 'off', '--auth-timeout', '10'] });
});

after(async () => {
  await d?.stop();
  removeAllUsers();
  await Promise.all([ldapA?.cleanup(), ldapB?.cleanup(), dovecot?.stop()]);
});

test('a system account without a realm authenticates against shadow', async () => {
  const r = await testsaslauthd({ socket: d.socketPath, user: sys.name, password: sys.password });
  assert.equal(r.stdout, OK_LINE);
  const last = await lastResult(sys.name, 'ok');
  assert.deepEqual([last?.mech, last?.route], ['shadow', '-']);
  assert.equal(await ask(sys.name, WRONG, ''), 'NO Incorrect password');
});

test('ldap.test users authenticate against the first slapd', async () => {
  const r = await testsaslauthd({
    socket: d.socketPath,
    user: USERS.alice.uid,
    password: USERS.alice.password,
    realm: 'ldap.test',
  });
  assert.equal(r.stdout, OK_LINE);
  const last = await lastResult(USERS.alice.uid, 'ok');
  assert.deepEqual([last?.mech, last?.route], ['ldap', 'ldap.test']);
  assert.equal(await ask(USERS.alice.uid, WRONG, 'ldap.test'), 'NO');
});

test('imap.test users authenticate against Dovecot', async () => {
  assert.equal(await ask(IMAP_USER.name, IMAP_USER.password, 'imap.test', 'imap'), 'OK remote authentication successful');
  const last = await lastResult(IMAP_USER.name, 'ok');
  assert.deepEqual([last?.mech, last?.route], ['rimap', 'imap.test']);
});

test('any subdomain of corp.test authenticates against the second slapd and its own suffix', async () => {
  const { remy } = USERS;
  assert.equal(await ask(remy.uid, remy.password, 'eu.corp.test'), 'OK');
  assert.equal(await ask(remy.uid, remy.password, 'x.y.corp.test'), 'OK');
  assert.equal((await lastResult(remy.uid, 'ok'))?.route, '*.corp.test');
});

test('a user sent with another realm name gets NO, and his own backend never sees the request', async () => {
  const bob = USERS.bob; // only in ldapA's ou=people
  const remy = USERS.remy; // only in ldapB's suffix
  const [bobAtB, remyAtA, ivanAtA, sysAtImap] = [
    searchesFor(ldapA, bob.uid),
    searchesFor(ldapB, remy.uid),
    dovecotSaw(IMAP_USER.name),
    dovecotSaw(sys.name),
  ];
  assert.equal(await ask(bob.uid, bob.password, 'eu.corp.test'), 'NO');
  assert.equal(await ask(remy.uid, remy.password, 'ldap.test'), 'NO');
  assert.equal(await ask(IMAP_USER.name, IMAP_USER.password, 'ldap.test'), 'NO');
  const r = await testsaslauthd({ socket: d.socketPath, user: sys.name, password: sys.password, realm: 'imap.test' });
  assert.equal(r.stdout, NO_LINE);
  assert.equal(
    await ask(USERS.alice.uid, USERS.alice.password, ''),
    'NO Invalid username',
    'ldap.test user without the realm goes to shadow',
  );
  // Each request reached only the backend of the realm it named:
  assert.equal(searchesFor(ldapA, bob.uid), bobAtB, 'bob@eu.corp.test never reached ldap.test slapd');
  assert.equal(searchesFor(ldapB, remy.uid), remyAtA, 'remy@ldap.test never reached corp.test slapd');
  assert.equal(dovecotSaw(IMAP_USER.name), ivanAtA, 'ivan@ldap.test never reached Dovecot');
  assert.ok(searchesFor(ldapA, IMAP_USER.name) > 0, 'ivan@ldap.test was asked of ldap.test slapd');
  assert.ok(dovecotSaw(sys.name) > sysAtImap, 'the system user sent as imap.test went to Dovecot');
  assert.equal(searchesFor(ldapA, sys.name) + searchesFor(ldapB, sys.name), 0);
});

test('a realm with no route gets NO and a log line naming the realm', async () => {
  assert.equal(await ask(USERS.alice.uid, USERS.alice.password, 'nowhere.test'), 'NO');
  const line = await d.waitForLog(/no route for realm 'nowhere.test'/);
  assert.match(line, /"route":"\(none\)"/);
  assert.equal(searchesFor(ldapB, USERS.alice.uid), 0);
});

test('each directory has its own failover state: with the corp.test slapd stopped, only its realm is turned away', async () => {
  const { alice, remy } = USERS;
  await ldapB.stop();
  try {
    assert.equal(await ask(remy.uid, remy.password, 'eu.corp.test'), 'NO');
    const last = await lastResult(remy.uid, 'unavailable');
    assert.deepEqual([last?.mech, last?.route], ['ldap', '*.corp.test']);
    assert.equal(await ask(alice.uid, alice.password, 'ldap.test'), 'OK', 'the other directory is not in back-off');
    assert.equal(await ask(sys.name, sys.password, ''), 'OK');
  } finally {
    await ldapB.start();
  }
  assert.equal(await ask(remy.uid, remy.password, 'eu.corp.test'), 'OK', 'answered again once its server is back');
});

test("SIGHUP re-reads each instance's own configuration: one directory's change leaves the other alone", async () => {
  const { alice, remy } = USERS;
  const conf = path.join(ldapA.dir, 'a.conf');
  const original = fs.readFileSync(conf, 'utf8');
  const reread = async (): Promise<void> => {
    const from = d.output().length;
    d.child.kill('SIGHUP');
    for (let i = 0; i < 200 && !/routes: .* re-read/.test(d.output().slice(from)); i++) await sleep(50);
    assert.match(d.output().slice(from), /routes: .* re-read/);
  };
  try {
    fs.writeFileSync(conf, original.replace('ldap_filter: (uid=%u)', 'ldap_filter: (uid=renamed-%u)'));
    await reread();
    assert.equal(await ask(alice.uid, alice.password, 'ldap.test'), 'NO', "ldap.test's new filter finds no alice");
    assert.equal(await ask(remy.uid, remy.password, 'eu.corp.test'), 'OK', 'the corp.test instance kept its own');
  } finally {
    fs.writeFileSync(conf, original);
    await reread();
  }
  assert.equal(await ask(alice.uid, alice.password, 'ldap.test'), 'OK');
});

test('no password reaches the log', () => {
  assertNoSecrets(d.output(), [sys.password, WRONG, IMAP_USER.password]);
});

// The same routes behind both doors (mux and Dovecot's auth protocol, as
// Postfix's smtpd_sasl_type dovecot speaks it), with two worker processes,
// the cache, the throttle on (its defaults, but quicker to reach) and --metrics.
describe('routes through the Dovecot door, with --workers 2, the cache, the throttle and --metrics', () => {
  let d2: RunningDaemon;
  let dir: string;
  let metricsSock: string;
  let door: DovecotAuthClient;
  const BURST = 12;
  const REFUSE_AFTER = 4;

  before(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'routes-door-'));
    metricsSock = path.join(dir, 'metrics');
    d2 = await startDaemon({
      args: [
        '--routes',
        routes,
        '--workers',
        '2',
        '--metrics',
        metricsSock,
        '-c',
        '-V',
        '--auth-timeout',
        '10',
        '--throttle-free',
        '2',
        '--throttle-delay',
        '50',
        '--throttle-max-delay',
        '100',
        '--throttle-refuse',
        String(REFUSE_AFTER),
      ],
      dovecotSocket: path.join(dir, 'auth'),
    });
    door = await DovecotAuthClient.connect(path.join(dir, 'auth'));
  });

  after(async () => {
    door?.destroy();
    await d2?.stop();
    if (dir !== undefined) fs.rmSync(dir, { recursive: true, force: true });
  });

  const ask2 = (login: string, password: string, realm: string, service = 'smtp'): Promise<string> =>
    sendRequest(d2.socketPath, { login, password, service, realm }, 20_000);

  test('every realm authenticates its own users through the Dovecot door, and the others get FAIL', async () => {
    const ok = async (user: string, password: string): Promise<void> => {
      const r = await door.plain(user, password, { rip: '192.0.2.7' });
      assert.equal(r.kind, 'OK', `${user}: ${r.line}`);
    };
    const fail = async (user: string, password: string): Promise<void> => {
      const r = await door.plain(user, password, { rip: '192.0.2.7' });
      assert.equal(r.kind, 'FAIL', `${user}: ${r.line}`);
      assert.ok(!r.flags.includes('temp'), `${user}: a refusal, not an outage: ${r.line}`);
    };
    await ok(sys.name, sys.password);
    await ok(`${USERS.alice.uid}@ldap.test`, USERS.alice.password);
    await ok(`${IMAP_USER.name}@imap.test`, IMAP_USER.password);
    await ok(`${USERS.remy.uid}@eu.corp.test`, USERS.remy.password);
    const remyAtA = searchesFor(ldapB, USERS.remy.uid);
    await fail(`${USERS.remy.uid}@ldap.test`, USERS.remy.password);
    await fail(`${USERS.alice.uid}@nowhere.test`, USERS.alice.password);
    await fail(`${USERS.alice.uid}@ldap.test`, WRONG);
    assert.equal(searchesFor(ldapB, USERS.remy.uid), remyAtA, 'remy@ldap.test never reached the corp.test slapd');
    const line = await lastResultOf(d2, USERS.alice.uid, 'ok');
    assert.deepEqual([line?.mech, line?.route, line?.remote], ['ldap', 'ldap.test', '192.0.2.7']);
  });

  test("a wrong-password burst on one route is throttled: the directory sees a few binds, the refusals speak each route's text, the known-good password still passes", async () => {
    const { bob } = USERS;
    assert.equal(await ask2(bob.uid, bob.password, 'ldap.test'), 'OK', 'bob is known-good before the burst');
    assert.equal(await ask2(sys.name, sys.password, ''), 'OK');
    const binds = (): number => bindsAs(ldapA.output(), bob.dn);
    const before = binds();
    const ldapAnswers: string[] = [];
    const shadowAnswers: string[] = [];
    for (let i = 0; i < BURST; i++) {
      ldapAnswers.push(await ask2(bob.uid, `${WRONG}-${i}`, 'ldap.test'));
      shadowAnswers.push(await ask2(sys.name, `${WRONG}-${i}`, ''));
    }
    // Each route refuses with its own mechanism's wrong-password text: the bytes never tell.
    assert.deepEqual(new Set(ldapAnswers), new Set(['NO']));
    assert.deepEqual(new Set(shadowAnswers), new Set(['NO Incorrect password']));
    const wrongBinds = binds() - before;
    assert.ok(wrongBinds >= REFUSE_AFTER - 1, `the first wrong passwords were checked (${wrongBinds} binds)`);
    assert.ok(
      wrongBinds <= REFUSE_AFTER + 1,
      `${BURST} wrong passwords, ${wrongBinds} binds: past ${REFUSE_AFTER} they are refused unchecked`,
    );
    assert.ok(
      resultLinesOf(d2, bob.uid).some((o) => o.result === 'refused' && o.route === 'ldap.test'),
      'a refusal logged with its route',
    );
    assert.ok(resultLinesOf(d2, sys.name).some((o) => o.result === 'refused' && o.route === '-'));
    // Known-good credentials still pass, through the cool-off.
    assert.equal(await ask2(bob.uid, bob.password, 'ldap.test'), 'OK');
    assert.equal(await ask2(sys.name, sys.password, ''), 'OK');
    // Bob's known-good password was cached (-c): that line names its route too.
    // (The line may follow the answer.)
    const cached = await d2.waitForLog(/"user":"bob"[^\n]*"route":"ldap\.test"[^\n]*"cached":true/);
    assert.match(cached, /auth success \(cached\): .*\[route=ldap\.test\]/);
    // Another realm's users are not slowed by it.
    assert.equal(await ask2(USERS.remy.uid, USERS.remy.password, 'eu.corp.test'), 'OK');
  });

  test('the metrics count each request by the mechanism that answered and the route it took', async () => {
    const s = await scrape({ socketPath: metricsSock });
    const n = (labels: string): number => s.samples.get(`saslauthd_requests_total{${labels}}`) ?? 0;
    // Door: sys, alice, ivan, remy OK; remy@ldap.test (ldap: User not found), alice wrong; nowhere.test unrouted.
    // Mux: bob OK twice, sys OK twice, remy OK; then the burst. A repeated OK
    // may be a cache hit: counted under its route, with mech="none".
    const ok = (route: string, mech: string): number => n(`mech="${mech}",route="${route}",result="ok"`);
    assert.equal(ok('-', 'shadow') + ok('-', 'none'), 3);
    assert.equal(ok('ldap.test', 'ldap') + ok('ldap.test', 'none'), 3);
    assert.ok(ok('ldap.test', 'none') >= 1, "bob's second login was a cache hit, counted under ldap.test");
    assert.equal(ok('imap.test', 'rimap'), 1);
    assert.equal(ok('*.corp.test', 'ldap') + ok('*.corp.test', 'none'), 2);
    const hits = ['-', 'ldap.test', 'imap.test', '*.corp.test'].reduce((a, r) => a + ok(r, 'none'), 0);
    assert.equal(s.samples.get('saslauthd_cache_hits_total'), hits, 'every mech="none" OK is a cache hit');
    assert.equal(n('mech="none",route="(none)",result="denied"'), 1, 'the unrouted realm');
    const refused = n('mech="none",route="ldap.test",result="refused"');
    const deniedLdap = n('mech="ldap",route="ldap.test",result="denied"');
    assert.equal(deniedLdap + refused, 2 + BURST, 'every denial on ldap.test, checked or refused');
    assert.ok(refused >= BURST - REFUSE_AFTER - 1, `${refused} refused unchecked`);
    const refusedShadow = n('mech="none",route="-",result="refused"');
    assert.equal(n('mech="shadow",route="-",result="denied"') + refusedShadow, BURST);
    assert.ok(refusedShadow > 0);
    // Nothing counted under the old single label, and the servers are named by their own mechanism.
    assert.equal(n('mech="routes",result="ok"'), 0);
    const up = [...s.samples].filter(([k]) => k.startsWith('saslauthd_backend_up{'));
    assert.deepEqual(
      up.map(([k, v]) => `${/mech="(\w+)"/.exec(k)?.[1]} ${v}`).sort(),
      ['ldap 1', 'ldap 1', 'rimap 1'],
      'two slapds and a Dovecot, each named by its own mechanism',
    );
    assert.ok(up.some(([k]) => k.includes(`:${dovecot.imapPort}`)));
    const requests = [...s.samples.entries()].filter(([k]) => k.startsWith('saslauthd_requests_total{'));
    const total = requests.reduce((a, [, v]) => a + v, 0);
    assert.equal(total, 7 + 5 + 2 * BURST, 'every request counted once');
  });
});
