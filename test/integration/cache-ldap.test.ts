// --cache-mode outage against a real slapd: the cache answers only while the
// directory is unreachable, and never for a password the directory refused.
import { after, before, test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { startDaemon, type RunningDaemon } from '../helpers/daemon';
import { startSlapd, type Slapd, USERS, PEOPLE } from '../helpers/slapd';
import { sendRequest } from '../../src/client/request';

let slapd: Slapd;
let conf: string;

before(async () => {
  slapd = await startSlapd();
  conf = path.join(slapd.dir, 'saslauthd-outage.conf');
  fs.writeFileSync(
    conf,
    [`ldap_servers: ${slapd.ldapUrl}`, `ldap_search_base: ${PEOPLE}`, 'ldap_filter: (uid=%u)', 'ldap_timeout: 2', ''].join('\n'),
  );
});

after(async () => {
  await slapd?.cleanup();
});

/**
 * Each test gets a daemon of its own (an empty cache) and a running slapd,
 * and leaves slapd running whatever happens, so none depends on another.
 */
async function outageDaemon(
  t: TestContext,
): Promise<{ d: RunningDaemon; ask: (login: string, password: string) => Promise<string> }> {
  if (!slapd.running()) await slapd.start();
  const d = await startDaemon({ args: ['-a', 'ldap', '-O', conf, '-c', '--cache-mode', 'outage', '--auth-timeout', '6'] });
  t.after(async () => {
    await d.stop();
    if (!slapd.running()) await slapd.start();
  });
  return { d, ask: (login, password) => sendRequest(d.socketPath, { login, password, service: 'smtp', realm: '' }) };
}

test('outage mode serves a recent success while the directory is down, and nothing else', async (t) => {
  const { d, ask } = await outageDaemon(t);
  const { alice, bob } = USERS;
  assert.equal(await ask(alice.uid, alice.password), 'OK');
  await slapd.stop();
  assert.equal(await ask(alice.uid, alice.password), 'OK', 'answered from the cache during the outage');
  await d.waitForLog(/auth success \(cached, mechanism unavailable\): \[user=alice\]/);
  assert.equal(await ask(alice.uid, 'not-her-password'), 'NO', 'a wrong password is refused');
  assert.equal(await ask(bob.uid, bob.password), 'NO', 'no entry for bob: refused');
  await slapd.start();
  assert.equal(await ask(bob.uid, bob.password), 'OK');
});

test('outage mode asks the directory every time: a changed password is refused at once, even in a later outage', async (t) => {
  const { ask } = await outageDaemon(t);
  const { carol } = USERS;
  // Carol's fixture password comes back afterwards, for any test after this one.
  t.after(async () => {
    if (!slapd.running()) await slapd.start();
    await slapd.setPassword(carol.dn, carol.password);
  });
  assert.equal(await ask(carol.uid, carol.password), 'OK');
  await slapd.setPassword(carol.dn, 'carol-New-1');
  assert.equal(await ask(carol.uid, carol.password), 'NO', 'old password refused right after the change');
  await slapd.stop();
  assert.equal(await ask(carol.uid, carol.password), 'NO', 'and not served from the cache during an outage');
  await slapd.start();
  assert.equal(await ask(carol.uid, 'carol-New-1'), 'OK');
});
