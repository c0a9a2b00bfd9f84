// Bind names that ldapts would turn into SASL binds. ldapts's Client.bind(name,
// password) makes a SASL bind when name is exactly one of its mechanism names
// (EXTERNAL, PLAIN, ...), with the password as the SASL credentials. Over
// ldapi:// as root, slapd accepts an EXTERNAL bind whose authorization
// identity is the connection's own, a public string: any login that names the
// whole bind DN would then pass with that string as its password. Here against
// a real slapd on ldapi://, where root's EXTERNAL bind works.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import pino from 'pino';
import { SASL_MECHANISMS } from 'ldapts';
import type { Outcome } from '../../src/backends/backend';
import { type LdapConfig, ldapConfigFromText } from '../../src/backends/ldap/config';
import { authenticateLdap } from '../../src/backends/ldap/methods';
import { ServerPool } from '../../src/backends/ldap/pool';
import { LdapSession } from '../../src/backends/ldap/session';
import { confText, type ConfValues, expectStartupFailure, serviceConf } from '../helpers/ldap';
import { GROUP_DN, PEOPLE, startSlapd, USERS, type Slapd } from '../helpers/slapd';

/** The authorization identity slapd gives root on its ldapi:// socket: an EXTERNAL bind naming it succeeds. */
const ROOT_AUTHZID = 'dn:gidNumber=0+uidNumber=0,cn=peercred,cn=external,cn=auth';

let slapd: Slapd;
before(async () => {
  slapd = await startSlapd();
});
after(async () => {
  await slapd?.cleanup();
});

/**
 * A configuration read from a file, then changed the way no file may say
 * (the startup check refuses it): the mechanism must hold even then.
 */
function config(values: ConfValues, override: Partial<LdapConfig>): LdapConfig {
  const r = ldapConfigFromText(confText(values), '/test/saslauthd.conf');
  assert.ok(r.config, r.issues.map((i) => i.message).join('\n'));
  return { ...r.config, ...override };
}

async function authenticate(cfg: LdapConfig, login: string, password: string): Promise<Outcome> {
  const log = pino({ level: 'silent' });
  const session = new LdapSession(
    cfg,
    new ServerPool(cfg.servers, { log }),
    { login, service: 'imap', realm: '' },
    Buffer.from(password),
    new AbortController().signal,
    log,
  );
  return authenticateLdap(session);
}

const fastbind = (): ConfValues => serviceConf(slapd.ldapiUrl, { ldap_auth_method: 'fastbind', ldap_filter: `uid=%u,${PEOPLE}` });

describe('bind names that are SASL mechanism names', () => {
  test("the login EXTERNAL with a fastbind template of only %u is refused over ldapi://, even with root's own authorization identity as password", async () => {
    const cfg = config(fastbind(), { filter: '%u' });
    for (const password of [ROOT_AUTHZID, 'any-password']) {
      const r = await authenticate(cfg, 'EXTERNAL', password);
      assert.deepEqual(
        r,
        {
          ok: false,
          kind: 'denied',
          text: 'NO',
          reason:
            "Invalid password (the bind DN 'EXTERNAL' is a SASL mechanism name; refused before any bind, as the LDAP library would make a SASL bind of it)",
        },
        password,
      );
    }
  });

  test('every SASL mechanism name the LDAP library knows is refused as a user bind DN, in any case and with blanks around it', async () => {
    // Blanks in a login are DN-escaped; in the template they are not.
    for (const template of ['%u', ' %u ']) {
      const cfg = config(fastbind(), { filter: template });
      for (const mech of SASL_MECHANISMS) {
        for (const login of [mech, mech.toLowerCase()]) {
          const r = await authenticate(cfg, login, ROOT_AUTHZID);
          assert.equal(r.ok, false, `${template} ${login}`);
          assert.ok(!r.ok && r.kind === 'denied', `${template} ${login}`);
          assert.match(!r.ok ? r.reason : '', /is a SASL mechanism name; refused before any bind/, `${template} ${login}`);
        }
      }
    }
  });

  test('a service DN that is a SASL mechanism name is refused before any bind (custom), never used as a SASL bind', async () => {
    const cfg = config(serviceConf(slapd.ldapiUrl, { ldap_auth_method: 'custom' }), {
      bindDn: 'EXTERNAL',
      bindPassword: ROOT_AUTHZID,
    });
    const r = await authenticate(cfg, 'alice', USERS.alice.password);
    assert.equal(r.ok, false);
    assert.ok(!r.ok && r.kind === 'unavailable');
    assert.match(!r.ok ? r.reason : '', /service bind: the bind DN 'EXTERNAL' is a SASL mechanism name/);
  });

  test("fastbind's group check does not rebind as a SASL mechanism name", async () => {
    const cfg = config(
      serviceConf(slapd.ldapiUrl, { ldap_auth_method: 'fastbind', ldap_filter: `uid=%u,${PEOPLE}`, ldap_group_dn: GROUP_DN }),
      { bindDn: 'EXTERNAL', bindPassword: ROOT_AUTHZID },
    );
    const r = await authenticate(cfg, 'alice', USERS.alice.password);
    assert.equal(r.ok, false);
    assert.ok(!r.ok && r.kind === 'unavailable');
    assert.match(!r.ok ? r.reason : '', /service bind: the bind DN 'EXTERNAL' is a SASL mechanism name/);
  });

  test('a fastbind DN template that is only a token stops the daemon at startup', async () => {
    for (const template of ['%u', ' %U ', '%r']) {
      const r = await expectStartupFailure(serviceConf(slapd.ldapiUrl, { ldap_auth_method: 'fastbind', ldap_filter: template }));
      assert.equal(r.code, 1, template);
      assert.match(
        r.stderr,
        /saslauthd\.conf:\d+: ldap_filter: with ldap_auth_method: fastbind this is the bind DN template, but '.*' is made of tokens only: the login would be the whole DN/,
        template,
      );
    }
  });

  test('an ldap_bind_dn that is a SASL mechanism name stops the daemon at startup', async () => {
    const r = await expectStartupFailure(serviceConf(slapd.ldapiUrl, { ldap_bind_dn: 'EXTERNAL' }));
    assert.equal(r.code, 1);
    assert.match(r.stderr, /saslauthd\.conf:\d+: ldap_bind_dn: 'EXTERNAL' is a SASL mechanism name, not a DN/);
  });
});
