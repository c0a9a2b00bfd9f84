// The LDAP mechanism's configuration: keys, aliases, defaults, warnings,
// errors, and the --check entry point.
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { formatIssue } from '../../../../src/config/saslauthd-conf';
import { checkLdapConfig, LDAP_KEYS, ldapConfigFromText, parseServerUri } from '../../../../src/backends/ldap/config';

const F = '/etc/saslauthd.conf';
const build = (text: string) => ldapConfigFromText(text, F);
const messages = (text: string, severity?: 'error' | 'warning') =>
  build(text)
    .issues.filter((i) => severity === undefined || i.severity === severity)
    .map(formatIssue);

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'sts-ldapconf-'));
after(() => fs.rmSync(tmp, { recursive: true, force: true }));

describe('ldap config', () => {
  test('an empty file gives Cyrus defaults', () => {
    const { config, issues } = build('');
    assert.deepEqual(issues, []);
    assert.ok(config);
    assert.deepEqual(
      config.servers.map((s) => s.uri),
      ['ldap://localhost/'],
    );
    assert.equal(config.bindDn, '');
    assert.equal(config.bindPassword, '');
    assert.equal(config.filter, '(uid=%u)');
    assert.equal(config.passwordAttr, 'userPassword');
    assert.equal(config.authMethod, 'bind');
    assert.equal(config.scope, 'sub');
    assert.equal(config.groupAttr, 'uniqueMember');
    assert.equal(config.groupMatchMethod, 'attr');
    assert.equal(config.groupScope, 'sub');
    assert.equal(config.timeoutMs, 5000);
    assert.equal(config.timeLimit, 5);
    assert.equal(config.sizeLimit, 1);
    assert.equal(config.deref, 'never');
    assert.equal(config.referrals, false);
    assert.equal(config.tls.startTls, false);
    assert.equal(config.tls.checkPeer, undefined);
  });

  test('reads every documented key', () => {
    const { config, issues } = build(
      [
        'ldap_servers: ldap://a:1389/ ldaps://b/ ldapi://%2Frun%2Fldapi',
        'ldap_bind_dn: cn=svc,dc=x',
        'ldap_password: pw',
        'ldap_search_base: ou=people,dc=%1',
        'ldap_filter: (mail=%u)',
        'ldap_password_attr: userPassword',
        'ldap_auth_method: custom',
        'ldap_scope: one',
        'ldap_group_dn: cn=g,dc=x',
        'ldap_group_attr: member',
        'ldap_group_match_method: filter',
        'ldap_group_filter: (member=%D)',
        'ldap_group_search_base: ou=groups,dc=x',
        'ldap_group_scope: base',
        'ldap_default_realm: example.org',
        'ldap_timeout: 2',
        'ldap_time_limit: 3',
        'ldap_size_limit: 4',
        'ldap_deref: always',
        'ldap_referrals: yes',
        'ldap_restart: no',
        'ldap_start_tls: yes',
        'ldap_tls_check_peer: no',
        'ldap_version: 3',
        'ldap_debug: 0',
      ].join('\n'),
    );
    assert.deepEqual(
      issues.filter((i) => i.severity === 'error'),
      [],
    );
    assert.ok(config);
    assert.deepEqual(
      config.servers.map((s) => [s.scheme, s.host, s.port, s.socketPath]),
      [
        ['ldap', 'a', 1389, undefined],
        ['ldaps', 'b', 636, undefined],
        ['ldapi', 'localhost', 0, '/run/ldapi'],
      ],
    );
    assert.equal(config.bindDn, 'cn=svc,dc=x');
    assert.equal(config.bindPassword, 'pw');
    assert.equal(config.searchBase, 'ou=people,dc=%1');
    assert.equal(config.authMethod, 'custom');
    assert.equal(config.scope, 'one');
    assert.equal(config.groupMatchMethod, 'filter');
    assert.equal(config.groupSearchBase, 'ou=groups,dc=x');
    assert.equal(config.groupScope, 'base');
    assert.equal(config.defaultRealm, 'example.org');
    assert.equal(config.timeoutMs, 2000);
    assert.equal(config.timeLimit, 3);
    assert.equal(config.sizeLimit, 4);
    assert.equal(config.deref, 'always');
    assert.equal(config.referrals, true);
    assert.equal(config.tls.startTls, true);
    assert.equal(config.tls.checkPeer, false);
  });

  test('accepts the aliases ldap_bind_pw and ldap_default_domain', () => {
    const { config } = build('ldap_bind_pw: secret\nldap_default_domain: example.net\n');
    assert.equal(config?.bindPassword, 'secret');
    assert.equal(config?.defaultRealm, 'example.net');
  });

  test('an unknown key within two edits of a known one is an error that suggests the known one', () => {
    const r = build('ldap_timeout: 3\nldap_goup_dn: cn=mailusers,dc=x\n');
    assert.equal(r.config, undefined);
    assert.deepEqual(r.issues.map(formatIssue), [
      '/etc/saslauthd.conf:2: ldap_goup_dn: unknown key (did you mean ldap_group_dn?); Cyrus ignores it silently, so the setting it was meant to make is not in force; correct the name or remove the line',
    ]);
    assert.equal(r.issues[0]?.severity, 'error');
  });

  test('an unknown key far from every known key is a warning and is ignored, as Cyrus ignores it', () => {
    const r = build('ldap_timeout: 3\nldap_frobnicate_level: 2\n');
    assert.ok(r.config);
    assert.deepEqual(r.issues.map(formatIssue), ['/etc/saslauthd.conf:2: ldap_frobnicate_level: unknown key; ignored']);
    assert.equal(r.issues[0]?.severity, 'warning');
  });

  test('a key set twice warns and the last one wins', () => {
    const r = build('ldap_password: a\nldap_bind_pw: b\n');
    assert.equal(r.config?.bindPassword, 'b');
    assert.deepEqual(r.issues.map(formatIssue), [
      '/etc/saslauthd.conf:2: ldap_bind_pw: also set on line 1 as ldap_password; the last one wins, as in Cyrus',
    ]);
  });

  test('booleans take yes/no/true/false/on/off/1/0 in any case', () => {
    for (const v of ['yes', 'Y', 'true', 'On', '1', 't']) assert.equal(build(`ldap_referrals: ${v}`).config?.referrals, true, v);
    for (const v of ['no', 'N', 'false', 'OFF', '0', 'f'])
      assert.equal(build(`ldap_referrals: ${v}`).config?.referrals, false, v);
    assert.deepEqual(messages('ldap_referrals: yes\n'), []);
  });

  test('an unrecognised boolean warns and follows Cyrus (first letter decides)', () => {
    const r = build('ldap_referrals: maybe\n');
    assert.equal(r.config?.referrals, false);
    assert.deepEqual(r.issues.map(formatIssue), [
      "/etc/saslauthd.conf:1: ldap_referrals: 'maybe' is not yes/no/true/false/on/off/1/0; read as no, as Cyrus does",
    ]);
  });

  test('ldap_tls_check_peer unset means verify; no turns verification off', () => {
    assert.equal(build('').config?.tls.checkPeer, undefined);
    assert.equal(build('ldap_tls_check_peer: yes').config?.tls.checkPeer, true);
    assert.equal(build('ldap_tls_check_peer: no').config?.tls.checkPeer, false);
  });

  test('ldap_tls_check_peer: no is a warning naming the line, so every start and reload logs it', () => {
    const r = build('ldap_servers: ldaps://x/\nldap_tls_check_peer: no\n');
    assert.ok(r.config);
    assert.deepEqual(
      r.issues.map((i) => [i.severity, formatIssue(i)]),
      [
        [
          'warning',
          "/etc/saslauthd.conf:2: ldap_tls_check_peer: no: the directory's TLS certificate is not verified, so anyone on the network path can pose as the directory, read the passwords and answer OK; set ldap_tls_cacert_file to the CA that signed it and remove this line",
        ],
      ],
    );
    assert.deepEqual(messages('ldap_tls_check_peer: yes\n'), []);
  });

  test('an unreadable ldap_tls_check_peer value is an error naming file, line and the accepted values', () => {
    const r = build('ldap_servers: ldaps://x/\nldap_tls_check_peer: demand\n');
    assert.equal(r.config, undefined);
    assert.deepEqual(r.issues.map(formatIssue), [
      "/etc/saslauthd.conf:2: ldap_tls_check_peer: 'demand' is not a yes/no value (accepted: yes, true, on, 1, y, t, no, false, off, 0, n, f); Cyrus would read it as no, but a security setting must say what it means; write one of them",
    ]);
  });

  test('an unreadable ldap_start_tls value is an error, not a silent "no"', () => {
    const r = build('ldap_start_tls: required\n');
    assert.equal(r.config, undefined);
    assert.match(
      formatIssue(r.issues[0]!),
      /^\/etc\/saslauthd\.conf:1: ldap_start_tls: 'required' is not a yes\/no value \(accepted: yes, true, on, 1, y, t, no, false, off, 0, n, f\)/,
    );
  });

  test('an unknown ldap_group_match_method is an error naming the accepted values', () => {
    const r = build('ldap_group_match_method: filters\nldap_group_filter: (member=%D)\n');
    assert.equal(r.config, undefined);
    assert.equal(r.issues[0]?.severity, 'error');
    assert.match(
      formatIssue(r.issues[0]),
      /^\/etc\/saslauthd\.conf:1: ldap_group_match_method: 'filters' is not one of attr, filter; Cyrus 2\.1\.28 would silently use the default attr/,
    );
  });

  test('an unknown ldap_group_scope is an error naming the accepted values', () => {
    const r = build('ldap_group_scope: subtree\n');
    assert.equal(r.config, undefined);
    assert.match(
      formatIssue(r.issues[0]!),
      /^\/etc\/saslauthd\.conf:1: ldap_group_scope: 'subtree' is not one of sub, one, base;/,
    );
  });

  test('a bad number warns and keeps the default', () => {
    const r = build('ldap_timeout: soon\n');
    assert.equal(r.config?.timeoutMs, 5000);
    assert.match(formatIssue(r.issues[0]!), /:1: ldap_timeout: 'soon' is not a number; using the default 5/);
    assert.equal(build('ldap_timeout: 0').config?.timeoutMs, 5000);
    assert.equal(build('ldap_timeout: 7s').config?.timeoutMs, 7000);
  });

  test('a bad choice warns and keeps the default, as Cyrus 2.1.28 does', () => {
    const r = build('ldap_scope: subtree\nldap_auth_method: kerberos\n');
    assert.equal(r.config?.scope, 'sub');
    assert.equal(r.config?.authMethod, 'bind');
    assert.deepEqual(r.issues.map(formatIssue), [
      "/etc/saslauthd.conf:1: ldap_scope: 'subtree' is not one of sub, one, base; using the default sub, as Cyrus 2.1.28 does",
      "/etc/saslauthd.conf:2: ldap_auth_method: 'kerberos' is not one of bind, custom, fastbind; using the default bind, as Cyrus 2.1.28 does",
    ]);
  });

  test('trailing whitespace warns; it is kept in strings and ignored in typed values', () => {
    const r = build('ldap_search_base: dc=x \nldap_scope: one \n');
    assert.equal(r.config?.searchBase, 'dc=x ');
    assert.equal(r.config?.scope, 'one');
    assert.equal(r.issues.length, 2);
    assert.ok(r.issues.every((i) => i.severity === 'warning'));
  });

  test('a bad server URI is skipped with a warning; none left is an error', () => {
    const r = build('ldap_servers: ldaps//x ldap://ok/\n');
    assert.deepEqual(
      r.config?.servers.map((s) => s.uri),
      ['ldap://ok/'],
    );
    assert.match(formatIssue(r.issues[0]!), /^\/etc\/saslauthd\.conf:1: ldap_servers: 'ldaps\/\/x' is not an LDAP URI/);
    const bad = build('ldap_servers: ldaps//x\n');
    assert.equal(bad.config, undefined);
    assert.ok(bad.issues.some((i) => i.severity === 'error'));
  });

  test('parses IPv6 hosts and ports', () => {
    assert.deepEqual(parseServerUri('ldap://[::1]:3389/'), {
      uri: 'ldap://[::1]:3389/',
      scheme: 'ldap',
      host: '::1',
      port: 3389,
    });
    assert.equal(typeof parseServerUri('ldap://host:99999/'), 'string');
  });

  test('ldap_use_sasl: yes is refused with a clear error', () => {
    const r = build('ldap_use_sasl: yes\nldap_mech: GSSAPI\n');
    assert.equal(r.config, undefined);
    assert.deepEqual(r.issues.filter((i) => i.severity === 'error').map(formatIssue), [
      '/etc/saslauthd.conf:1: ldap_use_sasl: SASL binds are not supported by saslauthd-ts; set ldap_use_sasl: no and use simple binds (ldap_auth_method: bind, custom or fastbind)',
    ]);
  });

  test('SASL keys without ldap_use_sasl only warn', () => {
    const r = build('ldap_sasl_mech: DIGEST-MD5\nldap_id: u\n');
    assert.ok(r.config);
    assert.deepEqual(r.issues.map(formatIssue), [
      '/etc/saslauthd.conf:1: ldap_sasl_mech: has no effect without ldap_use_sasl; ignored, as Cyrus does',
      '/etc/saslauthd.conf:2: ldap_id: has no effect without ldap_use_sasl; ignored, as Cyrus does',
    ]);
  });

  test('a syntax error is an error', () => {
    const r = build('ldap_servers : ldap://x/\n');
    assert.equal(r.config, undefined);
  });

  test('a group filter without match method filter warns that everyone fails', () => {
    const msgs = messages('ldap_group_filter: (member=%D)\n', 'warning');
    assert.match(msgs[0] ?? '', /every user fails the group check, as in Cyrus; add ldap_group_match_method: filter/);
  });

  test('the group search base defaults to the search base', () => {
    const r = build('ldap_search_base: dc=x\nldap_group_match_method: filter\nldap_group_filter: (member=%D)\n');
    assert.equal(r.config?.groupSearchBase, 'dc=x');
  });

  test('an invalid filter warns', () => {
    assert.match(messages('ldap_filter: (uid=%u\n')[0] ?? '', /ldap_filter: not a valid LDAP filter/);
  });

  test('fastbind with a filter-looking ldap_filter warns that it is a DN template', () => {
    assert.match(messages('ldap_auth_method: fastbind\n')[0] ?? '', /bind DN template/);
    assert.deepEqual(messages('ldap_auth_method: fastbind\nldap_filter: uid=%U,dc=x\n'), []);
  });

  test('fastbind with a DN template made of tokens only is an error: the login would be the whole DN', () => {
    for (const template of ['%u', '%U', ' %r ', '%U%R']) {
      const r = build(`ldap_auth_method: fastbind\nldap_filter: ${template}\n`);
      assert.equal(r.config, undefined, template);
      assert.match(
        formatIssue(r.issues.find((i) => i.severity === 'error')!),
        /^\/etc\/saslauthd\.conf:2: ldap_filter: with ldap_auth_method: fastbind this is the bind DN template, but '.*' is made of tokens only: the login would be the whole DN; write a DN such as uid=%U,ou=people,dc=example,dc=org$/,
        template,
      );
    }
  });

  test('an ldap_bind_dn that is a SASL mechanism name is an error, in any case', () => {
    for (const dn of ['EXTERNAL', 'plain', 'Digest-MD5', 'SCRAM-SHA-1']) {
      const r = build(`ldap_bind_dn: ${dn}\n`);
      assert.equal(r.config, undefined, dn);
      assert.match(
        formatIssue(r.issues[0]!),
        new RegExp(`^/etc/saslauthd\\.conf:1: ldap_bind_dn: '${dn}' is a SASL mechanism name, not a DN`),
        dn,
      );
    }
  });

  test('a GnuTLS priority string in ldap_tls_ciphers warns and is ignored', () => {
    const r = build('ldap_tls_ciphers: NORMAL:-VERS-TLS1.0\n');
    assert.ok(r.config);
    assert.match(formatIssue(r.issues[0]!), /is not an OpenSSL cipher list/);
    assert.deepEqual(messages('ldap_tls_ciphers: HIGH:!aNULL\n'), []);
  });

  test('an unreadable CA file is an error when TLS is used, a warning otherwise', () => {
    const missing = path.join(tmp, 'missing-ca.pem');
    const used = build(`ldap_servers: ldaps://x/\nldap_tls_cacert_file: ${missing}\n`);
    assert.equal(used.config, undefined);
    assert.match(formatIssue(used.issues[0]!), /:2: ldap_tls_cacert_file: cannot read .*missing-ca\.pem: ENOENT/);
    const unused = build(`ldap_tls_cacert_file: ${missing}\n`);
    assert.ok(unused.config);
    assert.equal(unused.issues[0]?.severity, 'warning');
  });

  test('a CA file without certificates is an error when TLS is used', () => {
    const f = path.join(tmp, 'empty.pem');
    fs.writeFileSync(f, 'nothing here\n');
    assert.equal(build(`ldap_start_tls: yes\nldap_tls_cacert_file: ${f}\n`).config, undefined);
  });

  test('the key table lists every Cyrus key and alias', () => {
    const names = Object.entries(LDAP_KEYS).flatMap(([k, d]) => [k, ...(d.aliases ?? [])]);
    for (const k of [
      'ldap_servers',
      'ldap_bind_dn',
      'ldap_password',
      'ldap_bind_pw',
      'ldap_version',
      'ldap_search_base',
      'ldap_filter',
      'ldap_password_attr',
      'ldap_auth_method',
      'ldap_scope',
      'ldap_group_dn',
      'ldap_group_attr',
      'ldap_group_match_method',
      'ldap_group_filter',
      'ldap_group_search_base',
      'ldap_group_scope',
      'ldap_default_realm',
      'ldap_default_domain',
      'ldap_timeout',
      'ldap_time_limit',
      'ldap_size_limit',
      'ldap_deref',
      'ldap_referrals',
      'ldap_restart',
      'ldap_use_sasl',
      'ldap_id',
      'ldap_sasl_authc_id',
      'ldap_authz_id',
      'ldap_sasl_authz_id',
      'ldap_mech',
      'ldap_sasl_mech',
      'ldap_realm',
      'ldap_sasl_realm',
      'ldap_sasl_secprops',
      'ldap_start_tls',
      'ldap_tls_check_peer',
      'ldap_tls_cacert_file',
      'ldap_tls_cacert_dir',
      'ldap_tls_ciphers',
      'ldap_tls_cert',
      'ldap_tls_key',
      'ldap_debug',
    ]) {
      assert.ok(names.includes(k), k);
    }
  });
});

describe('checkLdapConfig (for --check)', () => {
  test('separates errors and warnings and masks the password', () => {
    const f = path.join(tmp, 'check.conf');
    fs.writeFileSync(f, 'ldap_password: hunter2\nldap_frobnicate_level: one\n');
    const r = checkLdapConfig(f);
    assert.deepEqual(r.errors, []);
    assert.deepEqual(r.warnings, [`${f}:2: ldap_frobnicate_level: unknown key; ignored`]);
    assert.equal(r.effective.ldap_password, '(set)');
    assert.equal(r.effective.ldap_filter, '(uid=%u)');
    assert.ok(!JSON.stringify(r).includes('hunter2'));
  });

  test('strict mode turns warnings into errors', () => {
    const f = path.join(tmp, 'strict.conf');
    fs.writeFileSync(f, 'ldap_frobnicate_level: one\n');
    const r = checkLdapConfig(f, { strict: true });
    assert.deepEqual(r.errors, [`${f}:1: ldap_frobnicate_level: unknown key; ignored`]);
    assert.deepEqual(r.warnings, []);
  });

  test('an unreadable file is an error, not an exception', () => {
    const r = checkLdapConfig(path.join(tmp, 'absent.conf'));
    assert.equal(r.errors.length, 1);
    assert.match(r.errors[0] ?? '', /absent\.conf: cannot read the configuration file: no such file or directory \(ENOENT\)/);
  });
});
