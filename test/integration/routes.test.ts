// --routes: one daemon, one socket, four realms on four backends. System
// accounts (no realm) on shadow, ldap.test on one slapd, imap.test on a
// Dovecot (rimap), *.corp.test on a second slapd searching another suffix.
// Each realm authenticates its own users; a user sent with another realm's
// name gets NO, and his own backend never sees the request (slapd's -d stats
// log, Dovecot's auth_verbose log).
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { startDaemon, type RunningDaemon } from '../helpers/daemon';
import { startSlapd, type Slapd, USERS, PEOPLE, REMOTE_BASE_DN } from '../helpers/slapd';
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

function resultLines(user: string): Array<Record<string, unknown>> {
  return d
    .output()
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as Record<string, unknown>)
    .filter((o) => o.user === user && typeof o.result === 'string');
}

/** The last result line for this user with this result, waiting for it (the line may follow the answer). */
async function lastResult(user: string, result: string): Promise<Record<string, unknown> | undefined> {
  await d.waitForLog(new RegExp(`"user":"${user}".*"result":"${result}"`));
  return resultLines(user)
    .filter((o) => o.result === result)
    .at(-1);
}

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

test('no password reaches the log', () => {
  assertNoSecrets(d.output(), [sys.password, WRONG, IMAP_USER.password]);
});
