// TLS for the ldap mechanism against a real slapd: ldaps:// and StartTLS with
// the test CA (file or directory), refusal of a certificate the configured CA
// did not sign, ldap_tls_check_peer: no, and client certificates.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { startSlapd, USERS, type Slapd } from '../helpers/slapd';
import { type ConfValues, expectStartupFailure, serviceConf, startLdapDaemon } from '../helpers/ldap';

const alice = USERS.alice;

/** Start a daemon, check alice's right and wrong password, stop it. */
async function expectWorks(values: ConfValues): Promise<void> {
  const d = await startLdapDaemon(values);
  try {
    assert.equal(await d.ask('alice', alice.password), 'OK');
    const wrong = await d.explain('alice', `${alice.password}x`);
    assert.deepEqual(wrong, { reply: 'NO', result: 'denied', reason: 'Invalid password' });
  } finally {
    await d.stop();
  }
}

/** Start a daemon, check that even the right password is refused for lack of a trusted connection. */
async function expectRefused(values: ConfValues, reason: RegExp): Promise<void> {
  const d = await startLdapDaemon(values);
  try {
    const r = await d.explain('alice', alice.password);
    assert.equal(r.reply, 'NO');
    assert.equal(r.result, 'unavailable');
    assert.match(r.reason, reason);
  } finally {
    await d.stop();
  }
}

describe('ldap TLS', () => {
  let slapd: Slapd;
  before(async () => {
    slapd = await startSlapd();
  });
  after(async () => {
    await slapd?.cleanup();
  });

  test('ldaps:// works with ldap_tls_cacert_file', async () => {
    await expectWorks(serviceConf(slapd.ldapsUrl, { ldap_tls_cacert_file: slapd.caFile }));
  });

  test('ldaps:// works with ldap_tls_cacert_dir', async () => {
    await expectWorks(serviceConf(slapd.ldapsUrl, { ldap_tls_cacert_dir: slapd.caDir }));
  });

  test('StartTLS works with the CA, for every method', async () => {
    for (const method of ['bind', 'custom', 'fastbind']) {
      await expectWorks(
        serviceConf(slapd.ldapUrl, {
          ldap_start_tls: 'yes',
          ldap_tls_cacert_file: slapd.caFile,
          ldap_auth_method: method,
          ...(method === 'fastbind' ? { ldap_filter: alice.dn.replace('uid=alice', 'uid=%u') } : {}),
        }),
      );
    }
  });

  test('ldaps:// refuses a certificate the configured CA did not sign', async () => {
    await expectRefused(serviceConf(slapd.ldapsUrl, { ldap_tls_cacert_file: slapd.otherCaFile }), /TLS: .*certificate/i);
  });

  test('StartTLS refuses a certificate the configured CA did not sign', async () => {
    await expectRefused(
      serviceConf(slapd.ldapUrl, { ldap_start_tls: 'yes', ldap_tls_cacert_file: slapd.otherCaFile }),
      /TLS: .*certificate/i,
    );
  });

  test('with no CA configured, a private CA is not trusted (verification is on by default)', async () => {
    await expectRefused(serviceConf(slapd.ldapsUrl), /TLS: .*certificate/i);
  });

  test('ldap_tls_check_peer: yes refuses it too', async () => {
    await expectRefused(serviceConf(slapd.ldapsUrl, { ldap_tls_check_peer: 'yes' }), /TLS: .*certificate/i);
  });

  test('ldap_tls_check_peer: no accepts an unverified certificate', async () => {
    await expectWorks(serviceConf(slapd.ldapsUrl, { ldap_tls_cacert_file: slapd.otherCaFile, ldap_tls_check_peer: 'no' }));
  });

  test('ldap_tls_check_peer: no is logged at warn at startup and again at every SIGHUP', async () => {
    const values = serviceConf(slapd.ldapsUrl, { ldap_tls_cacert_file: slapd.otherCaFile, ldap_tls_check_peer: 'no' });
    const d = await startLdapDaemon(values);
    try {
      const warnings = (): string[] =>
        d.d
          .output()
          .split('\n')
          .filter((l) => /ldap_tls_check_peer: no: the directory's TLS certificate is not verified/.test(l));
      await d.d.waitForLog(/ldap_tls_check_peer: no:/);
      assert.equal(warnings().length, 1);
      assert.match(warnings()[0] ?? '', /"level":40/);
      await d.reload(values);
      assert.equal(warnings().length, 2);
      assert.match(warnings()[1] ?? '', /"level":40/);
    } finally {
      await d.stop();
    }
  });

  test('an ldap_tls_check_peer value nobody can read stops the daemon instead of verifying nothing', async () => {
    const r = await expectStartupFailure(serviceConf(slapd.ldapsUrl, { ldap_tls_check_peer: 'demand' }));
    assert.equal(r.code, 1);
    assert.match(
      r.stderr,
      /saslauthd\.conf:\d+: ldap_tls_check_peer: 'demand' is not a yes\/no value \(accepted: yes, true, on, 1, y, t, no, false, off, 0, n, f\)/,
    );
  });

  test('an ldap_start_tls value nobody can read stops the daemon instead of skipping StartTLS', async () => {
    const r = await expectStartupFailure(serviceConf(slapd.ldapUrl, { ldap_start_tls: 'required' }));
    assert.equal(r.code, 1);
    assert.match(r.stderr, /saslauthd\.conf:\d+: ldap_start_tls: 'required' is not a yes\/no value/);
  });

  test('a host name the certificate names (localhost) works as well as its IP address', async () => {
    await expectWorks(serviceConf(`ldaps://localhost:${slapd.ldapsPort}/`, { ldap_tls_cacert_file: slapd.caFile }));
  });

  test('ldap_tls_ciphers with an OpenSSL cipher list still connects', async () => {
    await expectWorks(serviceConf(slapd.ldapsUrl, { ldap_tls_cacert_file: slapd.caFile, ldap_tls_ciphers: 'HIGH:!aNULL' }));
  });

  test('a plain ldap:// server is not upgraded without ldap_start_tls', async () => {
    // An ldaps-only port spoken to in clear text cannot answer.
    await expectRefused(
      serviceConf(`ldap://127.0.0.1:${slapd.ldapsPort}/`, { ldap_timeout: 1 }),
      /Cannot connect to ldap server/,
    );
  });
});

describe('ldap TLS client certificates', () => {
  let slapd: Slapd;
  before(async () => {
    slapd = await startSlapd({ requireClientCert: true });
  });
  after(async () => {
    await slapd?.cleanup();
  });

  test('a server demanding a client certificate refuses a client without one', async () => {
    await expectRefused(serviceConf(slapd.ldapsUrl, { ldap_tls_cacert_file: slapd.caFile }), /Cannot connect to ldap server/);
  });

  test('ldap_tls_cert and ldap_tls_key present the client certificate', async () => {
    await expectWorks(
      serviceConf(slapd.ldapsUrl, {
        ldap_tls_cacert_file: slapd.caFile,
        ldap_tls_cert: slapd.clientCertFile,
        ldap_tls_key: slapd.clientKeyFile,
      }),
    );
  });
});
