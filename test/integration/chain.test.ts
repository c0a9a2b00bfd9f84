// -a shadow,ldap: one daemon, system accounts first, then a real slapd. The
// next mechanism is asked only when the one before does not know the login;
// a wrong password or an outage ends the chain with NO. slapd's own
// operation log (-d stats) proves which requests reached it.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { startDaemon, type RunningDaemon } from '../helpers/daemon';
import { lastResult as lastResultOf } from '../helpers/result-lines';
import { startSlapd, type Slapd, USERS, PEOPLE } from '../helpers/slapd';
import { createUser, removeAllUsers, userName, type TestUser } from '../helpers/users';
import { testsaslauthd, OK_LINE, NO_LINE } from '../helpers/testsaslauthd';
import { assertNoSecrets } from '../helpers/ldap';
import { cleanupPam, COMMON_STACK, installService, serviceName } from '../helpers/pam';
import { sendRequest } from '../../src/client/request';

let slapd: Slapd;
let d: RunningDaemon;
let sys: TestUser;
let conf: string;

/** Searches slapd logged for this uid: any means the directory was asked about the login. */
const searchesFor = (uid: string): number =>
  slapd
    .output()
    .split('\n')
    .filter((l) => l.includes(`filter="(uid=${uid})"`)).length;

const lastResult = (user: string, result: string): Promise<Record<string, unknown> | undefined> => lastResultOf(d, user, result);

const ask = (login: string, password: string): Promise<string> =>
  sendRequest(d.socketPath, { login, password, service: 'smtp', realm: '' });

before(async () => {
  slapd = await startSlapd({ logStats: true });
  conf = path.join(slapd.dir, 'saslauthd-chain.conf');
  fs.writeFileSync(
    conf,
    [`ldap_servers: ${slapd.ldapUrl}`, `ldap_search_base: ${PEOPLE}`, 'ldap_filter: (uid=%u)', 'ldap_timeout: 2', ''].join('\n'),
  );
  sys = createUser(userName('chn'), 'Sys-Secret1');
  d = await startDaemon({ args: ['-a', 'shadow,ldap', '-O', conf, '-V', '--throttle', 'off', '--auth-timeout', '6'] });
});

after(async () => {
  await d?.stop();
  cleanupPam();
  removeAllUsers();
  await slapd?.cleanup();
});

test('a user only in LDAP gets OK, and shadow saying Invalid username is logged at debug', async () => {
  const { alice } = USERS;
  const r = await testsaslauthd({ socket: d.socketPath, user: alice.uid, password: alice.password });
  assert.equal(r.stdout, OK_LINE);
  const line = await d.waitForLog(/chain: shadow: Invalid username \[user=alice\]; asking ldap/);
  assert.equal((JSON.parse(line) as { level: number }).level, 20, 'logged at debug');
  assert.equal((await lastResult(alice.uid, 'ok'))?.mech, 'ldap');
});

test('a shadow user with a wrong password gets NO and LDAP is never asked', async () => {
  const before = searchesFor(sys.name);
  const r = await testsaslauthd({ socket: d.socketPath, user: sys.name, password: 'wrong-Password9' });
  assert.equal(r.stdout, NO_LINE);
  assert.equal(await ask(sys.name, 'wrong-Password9'), 'NO', 'a chain answers a bare NO');
  await d.waitForLog(new RegExp(`"user":"${sys.name}".*"reason":"Incorrect password"`));
  assert.equal((await lastResult(sys.name, 'denied'))?.mech, 'shadow');
  // A login LDAP was asked about in this run shows up within a request; none did.
  await ask(USERS.bob.uid, 'wrong-Password9');
  assert.ok(searchesFor(USERS.bob.uid) > 0, "slapd's log shows the searches it served");
  assert.equal(searchesFor(sys.name), before);
  assert.equal(searchesFor(sys.name), 0);
});

test('a shadow user with the right password gets OK from shadow', async () => {
  assert.equal(await ask(sys.name, sys.password), 'OK');
  assert.equal((await lastResult(sys.name, 'ok'))?.mech, 'shadow');
  assert.equal(searchesFor(sys.name), 0);
});

test('a user in neither gets NO, answered by the last mechanism as User not found', async () => {
  assert.equal(await ask('nobody-here', 'whatever-1'), 'NO');
  const last = await lastResult('nobody-here', 'denied');
  assert.equal(last?.mech, 'ldap');
  assert.equal(last?.reason, 'User not found');
});

test('with slapd stopped an LDAP-only user gets NO logged as unavailable, and a shadow user is unaffected', async () => {
  await slapd.stop();
  try {
    const { carol } = USERS;
    assert.equal(await ask(carol.uid, carol.password), 'NO');
    assert.equal((await lastResult(carol.uid, 'unavailable'))?.mech, 'ldap');
    assert.equal(await ask(sys.name, sys.password), 'OK');
    assert.equal(await ask(sys.name, 'wrong-Password9'), 'NO');
  } finally {
    await slapd.start();
  }
});

test('no password reaches the log', () => {
  assertNoSecrets(d.output(), [sys.password, 'wrong-Password9', 'whatever-1']);
});

describe('-a pam,ldap: PAM goes on only on PAM_USER_UNKNOWN', () => {
  let p: RunningDaemon;
  let debianStack: string;
  let unixOnly: string;
  const askAs = (service: string, login: string, password: string): Promise<string> =>
    sendRequest(p.socketPath, { login, password, service, realm: '' }, 20_000);

  before(async () => {
    // Debian's stack: pam_unix [success=1 default=ignore], then pam_deny.
    debianStack = installService(serviceName('dbn'), COMMON_STACK);
    // pam_unix alone has the last word, so its PAM_USER_UNKNOWN comes through.
    unixOnly = installService(serviceName('unx'), ['auth required pam_unix.so', 'account required pam_unix.so']);
    p = await startDaemon({ args: ['-a', 'pam,ldap', '-O', conf, '-V', '--throttle', 'off', '--auth-timeout', '10'] });
  });
  after(async () => {
    await p?.stop();
  });

  const pamLines = (user: string): string[] =>
    p
      .output()
      .split('\n')
      .filter((l) => l.includes('auth_pam:') && l.includes(`"user":"${user}"`));

  test("through Debian's common-auth an unknown user is PAM_AUTH_ERR: NO, and LDAP is never asked", async () => {
    const { dave } = USERS;
    const before = searchesFor(dave.uid);
    assert.equal(await askAs(debianStack, dave.uid, dave.password), 'NO');
    await p.waitForLog(/"user":"dave".*"result":"denied"/);
    assert.match(pamLines(dave.uid).at(-1) ?? '', /"pamCode":7/);
    assert.equal(searchesFor(dave.uid), before);
  });

  test('through a stack where pam_unix has the last word an unknown user is PAM_USER_UNKNOWN and LDAP answers', async () => {
    const { erin } = USERS;
    assert.equal(await askAs(unixOnly, erin.uid, erin.password), 'OK');
    assert.match(pamLines(erin.uid).at(-1) ?? '', /"pamCode":10/);
    await p.waitForLog(/chain: pam: PAM auth error \[user=erin\]; asking ldap/);
    assert.ok(searchesFor(erin.uid) > 0);
  });

  test('a system user with a wrong password through pam gets NO, and LDAP is never asked', async () => {
    assert.equal(await askAs(unixOnly, sys.name, 'wrong-Password9'), 'NO');
    assert.equal(await askAs(unixOnly, sys.name, sys.password), 'OK');
    assert.equal(searchesFor(sys.name), 0);
  });
});
