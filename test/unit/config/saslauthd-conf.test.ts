// Cyrus's saslauthd.conf line rules (lak.c lak_config_read).
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ConfReadError, formatIssue, parseConfText, readConfFile } from '../../../src/config/saslauthd-conf';

const F = '/etc/saslauthd.conf';

describe('saslauthd.conf parser', () => {
  test('reads key: value lines with their line numbers', () => {
    const r = parseConfText('ldap_servers: ldap://a/\nldap_search_base: dc=x\n', F);
    assert.deepEqual(r.entries, [
      { key: 'ldap_servers', value: 'ldap://a/', line: 1 },
      { key: 'ldap_search_base', value: 'dc=x', line: 2 },
    ]);
    assert.deepEqual(r.issues, []);
  });

  test('lower-cases the key but not the value', () => {
    const r = parseConfText('LDAP_Filter: (UID=%u)', F);
    assert.deepEqual(r.entries, [{ key: 'ldap_filter', value: '(UID=%u)', line: 1 }]);
  });

  test('skips blank lines, comments and leading blanks', () => {
    const r = parseConfText('# comment\n\n   \n\t# indented comment\n   ldap_timeout: 3\n', F);
    assert.deepEqual(r.entries, [{ key: 'ldap_timeout', value: '3', line: 5 }]);
  });

  test('skips blanks after the colon and keeps trailing whitespace', () => {
    const r = parseConfText('ldap_bind_dn:   \t cn=svc,dc=x  \t\n', F);
    assert.equal(r.entries[0]?.value, 'cn=svc,dc=x  \t');
  });

  test('keeps a carriage return of a CRLF file in the value, as Cyrus does', () => {
    const r = parseConfText('ldap_timeout: 3\r\n', F);
    assert.equal(r.entries[0]?.value, '3\r');
  });

  test('keeps a # after the colon as part of the value', () => {
    const r = parseConfText('ldap_password: se#cret', F);
    assert.equal(r.entries[0]?.value, 'se#cret');
  });

  test('rejects a blank between key and colon, naming file, line and key', () => {
    const r = parseConfText('ldap_timeout: 3\nldap_servers : ldap://x/\n', F);
    assert.equal(r.entries.length, 1);
    assert.equal(r.issues.length, 1);
    assert.equal(r.issues[0]?.severity, 'error');
    assert.match(
      formatIssue(r.issues[0]),
      /^\/etc\/saslauthd\.conf:2: ldap_servers: syntax error: the colon must follow the key/,
    );
  });

  test('rejects an empty value', () => {
    const r = parseConfText('ldap_filter:   \n', F);
    assert.deepEqual(r.entries, []);
    assert.equal(formatIssue(r.issues[0]!), '/etc/saslauthd.conf:1: ldap_filter: empty value');
    assert.equal(r.issues[0]?.severity, 'error');
  });

  test('rejects a line without a colon, without quoting what may be a password', () => {
    const r = parseConfText('hunter2 is the password\n', F);
    assert.equal(r.issues[0]?.severity, 'error');
    assert.equal(formatIssue(r.issues[0]), '/etc/saslauthd.conf:1: syntax error: expected "key: value"');
  });

  test('rejects a key with characters outside [A-Za-z0-9_-]', () => {
    const r = parseConfText('ldap.servers: x\n', F);
    assert.equal(r.issues[0]?.severity, 'error');
  });

  test('accepts digits, dashes and underscores in keys', () => {
    const r = parseConfText('a-b_9: v\n', F);
    assert.deepEqual(r.entries, [{ key: 'a-b_9', value: 'v', line: 1 }]);
  });

  test('warns about a line longer than Cyrus reads', () => {
    const r = parseConfText(`ldap_filter: (uid=${'x'.repeat(5000)})\n`, F);
    assert.equal(r.entries.length, 1);
    assert.equal(r.issues[0]?.severity, 'warning');
  });

  test('formats an issue without a line or key', () => {
    assert.equal(formatIssue({ severity: 'error', file: F, message: 'boom' }), '/etc/saslauthd.conf: boom');
  });

  test('an unreadable file throws ConfReadError naming the file', () => {
    const missing = path.join(os.tmpdir(), `no-such-saslauthd-${process.pid}.conf`);
    assert.throws(
      () => readConfFile(missing),
      (err: unknown) => {
        assert.ok(err instanceof ConfReadError);
        assert.equal(err.code, 'SASLAUTHD_CONF_UNREADABLE');
        assert.equal(err.message, `${missing}: cannot read the configuration file: no such file or directory (ENOENT)`);
        return true;
      },
    );
  });

  test('reads a file from disk', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sts-conf-'));
    try {
      const f = path.join(dir, 'saslauthd.conf');
      fs.writeFileSync(f, 'ldap_timeout: 7\n');
      assert.deepEqual(readConfFile(f).entries, [{ key: 'ldap_timeout', value: '7', line: 1 }]);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
