// Postfix end to end through a routed daemon: Debian's chrooted smtpd, the
// seed smtpd.conf, libsasl's saslauthd client, swaks. bob@ldap.test reaches
// the LDAP route (libsasl splits the realm off and sends it), a local system
// user without a realm the shadow route, both with AUTH PLAIN.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { startDaemon, type RunningDaemon } from '../helpers/daemon';
import { startSlapd, type Slapd, USERS, PEOPLE } from '../helpers/slapd';
import { createUser, removeAllUsers, userName, type TestUser } from '../helpers/users';
import { ensureInGroup, replyTo, startPostfix, swaks, type PostfixInstance } from '../helpers/postfix';
import { assertNoSecrets } from '../helpers/ldap';

describe('Postfix SMTP AUTH through --routes', () => {
  let pf: PostfixInstance;
  let slapd: Slapd;
  let d: RunningDaemon;
  let sys: TestUser;
  let restoreGroup: () => void = () => undefined;

  before(async () => {
    restoreGroup = ensureInGroup('postfix', 'sasl');
    [pf, slapd] = await Promise.all([startPostfix({ listeners: [{}] }), startSlapd()]);
    const conf = path.join(slapd.dir, 'ldap-test.conf');
    fs.writeFileSync(conf, `ldap_servers: ${slapd.ldapUrl}\nldap_search_base: ${PEOPLE}\nldap_filter: (uid=%u)\n`);
    const routes = path.join(slapd.dir, 'routes');
    fs.writeFileSync(routes, `-  shadow\nldap.test  ldap:${conf}\n`);
    sys = createUser(userName('prt'), 'Postfix-Route-Secret3');
    d = await startDaemon({ args: ['--routes', routes, '-V'], runDir: pf.runDir });
  });

  after(async () => {
    const log = d?.output() ?? '';
    await d?.stop();
    await pf?.stop();
    await slapd?.cleanup();
    removeAllUsers();
    restoreGroup();
    assertNoSecrets(log, [sys.password]);
  });

  test('bob@ldap.test authenticates with AUTH PLAIN through the ldap.test route', async () => {
    const { bob } = USERS;
    const t = (await swaks({ port: pf.ports[0] ?? 0, auth: 'PLAIN', user: `${bob.uid}@ldap.test`, password: bob.password }))
      .stdout;
    assert.match(replyTo(t, /AUTH PLAIN/) ?? '', /^235 /, t);
    assert.match(t, /Ok: queued as/, t);
    await d.waitForLog(/"user":"bob".*"realm":"ldap.test".*"mech":"ldap".*"route":"ldap.test".*"result":"ok"/);
  });

  test('a local system user authenticates with AUTH PLAIN through the shadow route', async () => {
    const t = (await swaks({ port: pf.ports[0] ?? 0, auth: 'PLAIN', user: sys.name, password: sys.password })).stdout;
    assert.match(replyTo(t, /AUTH PLAIN/) ?? '', /^235 /, t);
    await d.waitForLog(new RegExp(`"user":"${sys.name}".*"mech":"shadow".*"route":"-".*"result":"ok"`));
  });

  test('bob with a wrong password gets 535', async () => {
    const t = (await swaks({ port: pf.ports[0] ?? 0, auth: 'PLAIN', user: 'bob@ldap.test', password: 'not-Bobs-password1' }))
      .stdout;
    assert.match(replyTo(t, /AUTH PLAIN/) ?? '', /^535 /, t);
  });
});
