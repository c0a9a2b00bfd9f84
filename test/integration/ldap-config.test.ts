// How the daemon treats its LDAP configuration: read at startup (an
// unusable file stops it with a clear message), warnings logged with file,
// line and key, SIGHUP re-reads it (keeping the old one if the new one is
// bad), and no password ever reaches the log, even at debug level.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { SERVICE_PASSWORD, startSlapd, USERS, type Slapd } from '../helpers/slapd';
import { assertNoSecrets, confText, expectStartupFailure, serviceConf, startLdapDaemon } from '../helpers/ldap';

describe('ldap configuration in the daemon', () => {
  let slapd: Slapd;
  before(async () => {
    slapd = await startSlapd();
  });
  after(async () => {
    await slapd?.cleanup();
  });

  test('an unreadable config file stops the daemon at startup', async () => {
    const r = await expectStartupFailure(undefined, 'missing.conf');
    assert.equal(r.code, 1);
    assert.match(
      r.stderr,
      /failed to initialize mechanism ldap: \/.*\/missing\.conf: cannot read the configuration file: no such file or directory \(ENOENT\)/,
    );
  });

  test('a syntax error stops the daemon and names file, line and key', async () => {
    const r = await expectStartupFailure(`ldap_timeout: 3\nldap_servers : ${slapd.ldapUrl}\n`);
    assert.equal(r.code, 1);
    assert.match(
      r.stderr,
      /failed to initialize mechanism ldap: \/.*saslauthd\.conf:2: ldap_servers: syntax error: the colon must follow the key/,
    );
  });

  test('ldap_use_sasl: yes stops the daemon with a clear message', async () => {
    const r = await expectStartupFailure(confText(serviceConf(slapd.ldapUrl, { ldap_use_sasl: 'yes' })));
    assert.equal(r.code, 1);
    assert.match(r.stderr, /ldap_use_sasl: SASL binds are not supported by saslauthd-ts; set ldap_use_sasl: no/);
    assert.ok(!r.stderr.includes(SERVICE_PASSWORD));
  });

  test('a misspelt key close to a known one stops the daemon and names the key it was meant to be', async () => {
    const r = await expectStartupFailure(
      confText(serviceConf(slapd.ldapUrl)) + 'ldap_goup_dn: cn=mailusers,ou=groups,dc=example,dc=org\n',
    );
    assert.equal(r.code, 1);
    assert.match(
      r.stderr,
      /failed to initialize mechanism ldap: \/.*saslauthd\.conf:6: ldap_goup_dn: unknown key \(did you mean ldap_group_dn\?\)/,
    );
  });

  test('an unknown key is logged as a warning with file, line and key, and the daemon runs', async () => {
    const d = await startLdapDaemon(confText(serviceConf(slapd.ldapUrl)) + 'ldap_frobnicate_level: one\n');
    try {
      const line = await d.d.waitForLog(/ldap_frobnicate_level: unknown key/);
      assert.match(line, /"level":40/);
      assert.ok(line.includes(`${d.confPath}:6: ldap_frobnicate_level: unknown key; ignored`));
      assert.equal(await d.ask('alice', USERS.alice.password), 'OK');
    } finally {
      await d.stop();
    }
  });

  test('SIGHUP re-reads the file; a broken file is refused and the old config kept', async () => {
    const d = await startLdapDaemon(serviceConf(slapd.ldapUrl));
    try {
      assert.equal(await d.ask('alice', USERS.alice.password), 'OK');
      assert.equal(await d.ask('carol', USERS.carol.password), 'OK');
      // Only carol passes the new filter.
      assert.match(
        await d.reload(serviceConf(slapd.ldapUrl, { ldap_filter: '(&(uid=%u)(uid=carol))' })),
        /configuration re-read/,
      );
      assert.equal(await d.ask('alice', USERS.alice.password), 'NO');
      assert.equal(await d.ask('carol', USERS.carol.password), 'OK');
      // A broken file: the daemon says why and keeps the filter above.
      const refused = await d.reload('ldap_servers : nowhere\n');
      assert.match(refused, /configuration not re-read, keeping the old one: .*saslauthd\.conf:1: ldap_servers: syntax error/);
      assert.equal(await d.ask('alice', USERS.alice.password), 'NO');
      assert.equal(await d.ask('carol', USERS.carol.password), 'OK');
      // A missing file too.
      const missing = await d.reload(null);
      assert.match(missing, /keeping the old one: .*saslauthd\.conf: cannot read the configuration file/);
      assert.equal(await d.ask('alice', USERS.alice.password), 'NO');
      // And a good one again.
      assert.match(await d.reload(serviceConf(slapd.ldapUrl)), /configuration re-read/);
      assert.equal(await d.ask('alice', USERS.alice.password), 'OK');
    } finally {
      await d.stop();
    }
  });

  test('SIGHUP with requests in flight: every request is answered, none dropped', async () => {
    const d = await startLdapDaemon(serviceConf(slapd.ldapUrl));
    try {
      const before = Array.from({ length: 60 }, (_, i) => {
        const u = i % 2 === 0 ? USERS.alice : USERS.bob;
        return d.ask(u.uid, u.password);
      });
      d.d.child.kill('SIGHUP');
      const during = Array.from({ length: 20 }, () => d.ask('carol', USERS.carol.password));
      const answers = await Promise.all([...before, ...during]);
      assert.deepEqual(new Set(answers), new Set(['OK']));
      await d.d.waitForLog(/SIGHUP: configuration re-read/);
      assert.equal(await d.ask('alice', USERS.alice.password), 'OK');
    } finally {
      await d.stop();
    }
  });

  test('no password reaches the log at debug level, in any outcome', async () => {
    const d = await startLdapDaemon(serviceConf(slapd.ldapUrl, { ldap_group_dn: `cn=nosuch,${'dc=example,dc=org'}` }), ['-V']);
    try {
      for (const u of Object.values(USERS)) {
        await d.ask(u.uid, u.password);
        await d.ask(u.uid, `${u.password}-wrong`);
      }
      await d.ask('alice', 'another-Secret-42');
      await d.d.stop();
      const out = d.d.output();
      assert.match(out, /"level":20/, 'debug output is on');
      assertNoSecrets(out, ['another-Secret-42']);
    } finally {
      await d.stop();
    }
  });
});
