// Masking the password of user:password@ in text that gets printed.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { maskCredentials } from '../../../src/log/redact';

describe('maskCredentials', () => {
  test('masks the password of a URI userinfo and keeps scheme, user and host', () => {
    assert.equal(maskCredentials("-O 'imaps://user:secret@mail.example.org:993'"), "-O 'imaps://user:***@mail.example.org:993'");
    assert.equal(maskCredentials('ldap://cn=admin:s3cr:et@ldap/ x'), 'ldap://cn=admin:***@ldap/ x');
  });

  test('masks user:password@host without a scheme, and inside a longer token', () => {
    assert.equal(maskCredentials('user:secret@host/143'), 'user:***@host/143');
    assert.equal(maskCredentials('MECH_OPTIONS=imaps://u:pw@h'), 'MECH_OPTIONS=imaps://u:***@h');
  });

  test('masks a password that holds an @ up to the last one', () => {
    assert.equal(maskCredentials('imaps://u:p@ss@host'), 'imaps://u:***@host');
  });

  test('masks every URI in the text', () => {
    assert.equal(maskCredentials('a://u:x@h, b://v:y@k'), 'a://u:***@h, b://v:***@k');
  });

  test('leaves logins, hosts and URIs without a password alone', () => {
    for (const text of [
      '[user=alice@example.org] [service=imap]',
      'imaps://alice@mail.example.org',
      'ldap://[::1]:389/ imap://127.0.0.1:143?plain',
      'no at sign: here',
    ]) {
      assert.equal(maskCredentials(text), text);
    }
  });
});
