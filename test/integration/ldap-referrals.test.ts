// ldap_referrals: yes against a real slapd whose referral object (REFERRAL_DN)
// leads to the user remy. The user's password goes wherever the referral
// points, so a referral is followed only to a server listed in ldap_servers
// and only with at least the TLS of the server that returned it. The referral
// is pointed at a recording proxy in front of the same slapd to see whether a
// connection was made there.
import { after, afterEach, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { REFERRAL_DN, REMOTE_BASE_DN, startSlapd, USERS, type Slapd } from '../helpers/slapd';
import { serviceConf, startLdapDaemon } from '../helpers/ldap';
import { type CaptureProxy, startCaptureProxy } from '../helpers/tcp';

const remy = USERS.remy;

describe('ldap_referrals: yes', () => {
  let slapd: Slapd;
  let proxy: CaptureProxy;
  const pointReferralAt = (server: string): Promise<void> =>
    slapd.modify(`dn: ${REFERRAL_DN}\nchangetype: modify\nreplace: ref\nref: ${server}ou=people,${REMOTE_BASE_DN}\n`, {
      manageDsaIT: true,
    });

  before(async () => {
    slapd = await startSlapd();
    proxy = await startCaptureProxy(slapd.ldapPort);
  });
  afterEach(async () => {
    await pointReferralAt(slapd.ldapUrl);
  });
  after(async () => {
    await proxy?.close();
    await slapd?.cleanup();
  });

  test('a referral to a host not in ldap_servers is not followed: unavailable, logged with the referral, and no connection made there', async () => {
    const elsewhere = `ldap://127.0.0.1:${proxy.port}/`;
    await pointReferralAt(elsewhere);
    const before = proxy.connections().length;
    // -V: a success is logged too, so explain() reports it.
    const d = await startLdapDaemon(serviceConf(slapd.ldapUrl, { ldap_referrals: 'yes' }), ['-V']);
    try {
      const r = await d.explain('remy', remy.password);
      assert.equal(r.reply, 'NO');
      assert.equal(r.result, 'unavailable');
      // slapd adds the scope of the search to the reference it returns.
      const referral = `${elsewhere}ou=people,${REMOTE_BASE_DN}??sub`;
      assert.equal(
        r.reason,
        `User not found (referral ${referral} not followed: 127.0.0.1:${proxy.port} is not in ldap_servers)`,
      );
      const warning = await d.d.waitForLog(/not following the referral/);
      assert.match(warning, /"level":40/);
      assert.ok(warning.includes(referral), warning);
      assert.equal(proxy.connections().length, before, 'a connection was made to the unlisted host');
    } finally {
      await d.stop();
    }
  });

  test('a referral to a host listed in ldap_servers is followed', async () => {
    const listed = `ldap://127.0.0.1:${proxy.port}/`;
    await pointReferralAt(listed);
    const before = proxy.connections().length;
    const d = await startLdapDaemon(serviceConf(`${slapd.ldapUrl} ${listed}`, { ldap_referrals: 'yes' }));
    try {
      assert.equal(await d.ask('remy', remy.password), 'OK');
      assert.equal(await d.ask('remy', `${remy.password}x`), 'NO');
      assert.ok(proxy.connections().length > before, 'the listed host was not asked');
    } finally {
      await d.stop();
    }
  });

  test('a referral from an ldaps:// server to plain ldap:// is not followed, even to a listed host', async () => {
    const d = await startLdapDaemon(
      serviceConf(`${slapd.ldapsUrl} ${slapd.ldapUrl}`, { ldap_referrals: 'yes', ldap_tls_cacert_file: slapd.caFile }),
      ['-V'],
    );
    try {
      const r = await d.explain('remy', remy.password);
      assert.equal(r.reply, 'NO');
      assert.equal(r.result, 'unavailable');
      assert.equal(
        r.reason,
        `User not found (referral ${slapd.ldapUrl}ou=people,${REMOTE_BASE_DN}??sub not followed: ` +
          `it would not be encrypted, while ${slapd.ldapsUrl} is; set ldap_start_tls: yes or refer to ldaps://)`,
      );
    } finally {
      await d.stop();
    }
  });

  test('a referral from an ldaps:// server to a listed ldap:// host is followed when StartTLS applies there', async () => {
    const d = await startLdapDaemon(
      serviceConf(`${slapd.ldapsUrl} ${slapd.ldapUrl}`, {
        ldap_referrals: 'yes',
        ldap_start_tls: 'yes',
        ldap_tls_cacert_file: slapd.caFile,
      }),
    );
    try {
      assert.equal(await d.ask('remy', remy.password), 'OK');
      assert.equal(await d.ask('remy', `${remy.password}x`), 'NO');
    } finally {
      await d.stop();
    }
  });
});
