// The ldap mechanism's three auth methods, group checks, token expansion,
// escaping and referrals against a real slapd, through our client and
// Debian's real testsaslauthd.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { BASE_DN, DUP_STAFF_PASSWORD, GROUP_DN, PEOPLE, startSlapd, USERS, type Slapd } from '../helpers/slapd';
import { type ConfValues, type LdapDaemon, serviceConf, startLdapDaemon } from '../helpers/ldap';
import { NO_LINE, OK_LINE, testsaslauthd } from '../helpers/testsaslauthd';

type Method = 'bind' | 'custom' | 'fastbind';
const METHODS: Method[] = ['bind', 'custom', 'fastbind'];

function methodConf(slapd: Slapd, method: Method, extra: ConfValues = {}): ConfValues {
  return serviceConf(slapd.ldapUrl, {
    ldap_auth_method: method,
    ...(method === 'fastbind' ? { ldap_filter: `uid=%u,${PEOPLE}` } : {}),
    ...extra,
  });
}

let slapd: Slapd;
before(async () => {
  slapd = await startSlapd();
});
after(async () => {
  await slapd?.cleanup();
});

for (const method of METHODS) {
  describe(`ldap_auth_method: ${method}`, () => {
    let d: LdapDaemon;
    before(async () => {
      d = await startLdapDaemon(methodConf(slapd, method));
    });
    after(async () => {
      await d?.stop();
    });

    test('accepts the right password of {SSHA}, {CRYPT}, cleartext and {SSHA512} users', async () => {
      for (const u of [USERS.alice, USERS.bob, USERS.carol, USERS.dave]) {
        assert.equal(await d.ask(u.uid, u.password), 'OK', u.uid);
      }
    });

    test('refuses a wrong password with a bare NO and logs Invalid password', async () => {
      for (const u of [USERS.alice, USERS.bob, USERS.carol, USERS.dave]) {
        const r = await d.explain(u.uid, `${u.password}x`);
        assert.deepEqual(r, { reply: 'NO', result: 'denied', reason: 'Invalid password' }, u.uid);
      }
    });

    test('refuses an unknown user', async () => {
      const r = await d.explain('nosuchuser', 'whatever-1');
      assert.equal(r.reply, 'NO');
      assert.equal(r.result, 'denied');
      assert.match(r.reason, method === 'fastbind' ? /^Invalid password/ : /^User not found/);
    });

    if (method === 'fastbind') {
      test('binds only the DN its template names, never another entry with the same uid', async () => {
        assert.equal(await d.ask('dup', USERS.dup.password), 'OK');
        assert.equal(await d.ask('dup', DUP_STAFF_PASSWORD), 'NO');
      });
    } else {
      test('refuses a login that matches two entries, whichever password', async () => {
        assert.equal(await d.ask('dup', USERS.dup.password), 'NO');
        const r = await d.explain('dup', DUP_STAFF_PASSWORD);
        assert.equal(r.reply, 'NO');
        assert.match(r.reason, /^User not found \(more than one entry matches/);
      });
    }

    test('refuses filter and DN injection attempts', async () => {
      const pw = USERS.alice.password;
      for (const login of ['*', ')(uid=*', 'alice)(uid=*', '*)(|(uid=*', 'al*', 'alice,ou=people', `alice,${PEOPLE}`]) {
        assert.equal(await d.ask(login, pw), 'NO', login);
      }
    });

    test('finds a login with DN special characters ("a,b+c")', async () => {
      assert.equal(await d.ask(USERS.comma.uid, USERS.comma.password), 'OK');
      assert.equal(await d.ask(USERS.comma.uid, `${USERS.comma.password}x`), 'NO');
    });

    test('refuses the old password on the next request after the directory changes it', async () => {
      const uid = `chg-${method}-${process.pid}`;
      const dn = `uid=${uid},${PEOPLE}`;
      await slapd.modify(
        `dn: ${dn}\nchangetype: add\nobjectClass: inetOrgPerson\nuid: ${uid}\ncn: ${uid}\nsn: ${uid}\nuserPassword: first-Pass1\n`,
      );
      assert.equal(await d.ask(uid, 'first-Pass1'), 'OK');
      // ldappasswd: the server stores a new {SSHA} hash.
      await slapd.setPassword(dn, 'second-Pass2');
      assert.equal(await d.ask(uid, 'first-Pass1'), 'NO');
      assert.equal(await d.ask(uid, 'second-Pass2'), 'OK');
      // ldapmodify replace, straight back to a value the old one does not match.
      await slapd.modify(`dn: ${dn}\nchangetype: modify\nreplace: userPassword\nuserPassword: third-Pass3\n`);
      assert.equal(await d.ask(uid, 'second-Pass2'), 'NO');
      assert.equal(await d.ask(uid, 'third-Pass3'), 'OK');
      assert.equal(await d.ask(uid, 'third-Pass3'), 'OK');
      await slapd.modify(`dn: ${dn}\nchangetype: delete\n`);
      assert.equal(await d.ask(uid, 'third-Pass3'), 'NO');
    });

    test('answers through the real testsaslauthd', async () => {
      const good = await testsaslauthd({ socket: d.d.socketPath, user: 'alice', password: USERS.alice.password });
      assert.equal(good.stdout, OK_LINE);
      assert.equal(good.code, 0);
      const bad = await testsaslauthd({ socket: d.d.socketPath, user: 'alice', password: 'wrong-password' });
      assert.equal(bad.stdout, NO_LINE);
    });
  });
}

describe('group checks', () => {
  const groupFilter = {
    ldap_group_match_method: 'filter',
    ldap_group_filter: '(&(objectClass=groupOfUniqueNames)(cn=mailusers)(uniqueMember=%D))',
    ldap_group_search_base: `ou=groups,${BASE_DN}`,
  };
  for (const method of METHODS) {
    for (const [kind, extra] of [
      ['attr', { ldap_group_dn: GROUP_DN }],
      ['filter', groupFilter],
    ] as const) {
      test(`${method} with a ${kind} group check: member OK, non-member NO`, async () => {
        const d = await startLdapDaemon(methodConf(slapd, method, extra));
        try {
          assert.equal(await d.ask('alice', USERS.alice.password), 'OK');
          assert.equal(await d.ask(USERS.comma.uid, USERS.comma.password), 'OK');
          const nonMember = await d.explain('erin', USERS.erin.password);
          assert.equal(nonMember.reply, 'NO');
          assert.match(nonMember.reason, /^Group member check failed/);
          const wrong = await d.explain('alice', `${USERS.alice.password}x`);
          assert.equal(wrong.reply, 'NO');
          assert.match(wrong.reason, /^Invalid password/);
        } finally {
          await d.stop();
        }
      });
    }
  }

  test('a group filter without match method filter fails everyone, as Cyrus, and says so at startup', async () => {
    const d = await startLdapDaemon(methodConf(slapd, 'bind', { ldap_group_filter: groupFilter.ldap_group_filter }));
    try {
      await d.d.waitForLog(/every user fails the group check/);
      assert.equal(await d.ask('alice', USERS.alice.password), 'NO');
    } finally {
      await d.stop();
    }
  });

  test('a group that does not exist fails the check', async () => {
    const d = await startLdapDaemon(methodConf(slapd, 'bind', { ldap_group_dn: `cn=nosuch,ou=groups,${BASE_DN}` }));
    try {
      const r = await d.explain('alice', USERS.alice.password);
      assert.equal(r.reply, 'NO');
      assert.match(r.reason, /^Group member check failed/);
    } finally {
      await d.stop();
    }
  });
});

describe('custom: local password schemes', () => {
  test('verifies {MD5} locally and refuses a value compared against its own hash', async () => {
    const d = await startLdapDaemon(methodConf(slapd, 'custom'));
    try {
      assert.equal(await d.ask('erin', USERS.erin.password), 'OK');
      // Sending the stored {SSHA} string itself must not work (no plaintext fallback for hashes).
      const uid = `hash-${process.pid}`;
      const stored = '{PBKDF2-SHA256}10000$c2FsdA$aGFzaA';
      await slapd.modify(
        `dn: uid=${uid},${PEOPLE}\nchangetype: add\nobjectClass: inetOrgPerson\nuid: ${uid}\ncn: x\nsn: x\nuserPassword: ${stored}\n`,
      );
      const r = await d.explain(uid, stored);
      assert.equal(r.reply, 'NO');
      assert.match(r.reason, /unsupported password scheme \{PBKDF2-SHA256\}/);
    } finally {
      await d.stop();
    }
  });
});

describe('search settings, tokens, realms and referrals', () => {
  test('expands %1/%2 from the realm, the default realm, or the login domain', async () => {
    const d = await startLdapDaemon(
      serviceConf(slapd.ldapUrl, { ldap_search_base: 'ou=people,dc=%2,dc=%1', ldap_default_realm: 'example.org' }),
    );
    try {
      assert.equal(await d.ask('alice', USERS.alice.password), 'OK');
      assert.equal(await d.ask('alice', USERS.alice.password, { realm: 'example.org' }), 'OK');
      // alice is not under dc=example,dc=net; remy is.
      assert.equal(await d.ask('alice', USERS.alice.password, { realm: 'example.net' }), 'NO');
      assert.equal(await d.ask('remy', USERS.remy.password, { realm: 'example.net' }), 'OK');
      // A realm that names no subtree: no such base, no such user.
      const r = await d.explain('alice', USERS.alice.password, { realm: 'nowhere.test' });
      assert.equal(r.reply, 'NO');
      assert.match(r.reason, /^User not found/);
    } finally {
      await d.stop();
    }
  });

  test('matches %u against mail and %U against uid', async () => {
    const d = await startLdapDaemon(serviceConf(slapd.ldapUrl, { ldap_filter: '(&(uid=%U)(mail=%u))' }));
    try {
      assert.equal(await d.ask('alice@example.org', USERS.alice.password), 'OK');
      assert.equal(await d.ask('alice@example.net', USERS.alice.password), 'NO');
    } finally {
      await d.stop();
    }
  });

  test('fastbind builds the DN from %U and the login domain labels', async () => {
    const d = await startLdapDaemon(
      serviceConf(slapd.ldapUrl, { ldap_auth_method: 'fastbind', ldap_filter: 'uid=%U,ou=people,dc=%2,dc=%1' }),
    );
    try {
      assert.equal(await d.ask('alice@example.org', USERS.alice.password), 'OK');
      assert.equal(await d.ask('remy@example.net', USERS.remy.password), 'OK');
      assert.equal(await d.ask('alice@example.net', USERS.alice.password), 'NO');
    } finally {
      await d.stop();
    }
  });

  test('follows a search reference with ldap_referrals: yes, and ignores it by default', async () => {
    const off = await startLdapDaemon(serviceConf(slapd.ldapUrl));
    try {
      assert.equal(await off.ask('remy', USERS.remy.password), 'NO');
    } finally {
      await off.stop();
    }
    const on = await startLdapDaemon(serviceConf(slapd.ldapUrl, { ldap_referrals: 'yes' }));
    try {
      assert.equal(await on.ask('remy', USERS.remy.password), 'OK');
      assert.equal(await on.ask('remy', `${USERS.remy.password}x`), 'NO');
      assert.equal(await on.ask('alice', USERS.alice.password), 'OK');
    } finally {
      await on.stop();
    }
  });

  test('ldap_scope one and base limit the search', async () => {
    const d = await startLdapDaemon(serviceConf(slapd.ldapUrl, { ldap_scope: 'one' }));
    try {
      // alice is two levels below dc=example,dc=org.
      assert.equal(await d.ask('alice', USERS.alice.password), 'NO');
      await d.reload(serviceConf(slapd.ldapUrl, { ldap_scope: 'one', ldap_search_base: PEOPLE }));
      assert.equal(await d.ask('alice', USERS.alice.password), 'OK');
      // Only the "one" dup is in ou=people: no longer ambiguous.
      assert.equal(await d.ask('dup', USERS.dup.password), 'OK');
      await d.reload(
        serviceConf(slapd.ldapUrl, { ldap_scope: 'base', ldap_search_base: USERS.bob.dn, ldap_filter: '(objectClass=*)' }),
      );
      assert.equal(await d.ask('anyone', USERS.bob.password), 'OK');
      assert.equal(await d.ask('anyone', USERS.alice.password), 'NO');
    } finally {
      await d.stop();
    }
  });

  test('talks to slapd over ldapi://', async () => {
    const d = await startLdapDaemon(serviceConf(slapd.ldapiUrl));
    try {
      assert.equal(await d.ask('alice', USERS.alice.password), 'OK');
      assert.equal(await d.ask('alice', 'wrong-pass'), 'NO');
    } finally {
      await d.stop();
    }
  });

  test('binds anonymously for the search when ldap_bind_dn is empty', async () => {
    const d = await startLdapDaemon({ ldap_servers: slapd.ldapUrl, ldap_search_base: BASE_DN });
    try {
      assert.equal(await d.ask('alice', USERS.alice.password), 'OK');
      assert.equal(await d.ask('alice', 'wrong-pass'), 'NO');
    } finally {
      await d.stop();
    }
  });

  test('a wrong service password is unavailable, not denied', async () => {
    const d = await startLdapDaemon(serviceConf(slapd.ldapUrl, { ldap_password: 'not-the-service-password' }));
    try {
      const r = await d.explain('alice', USERS.alice.password);
      assert.equal(r.reply, 'NO');
      assert.equal(r.result, 'unavailable');
      assert.match(r.reason, /^Bind to ldap server failed/);
    } finally {
      await d.stop();
    }
  });
});
