// Local verification of stored userPassword values (ldap_auth_method: custom).
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import crypto from 'node:crypto';
import { constantTimeEqual, verifyStoredPassword } from '../../../../src/backends/ldap/password';

const PW = 'pässwörd-1';
const pw = Buffer.from(PW);

function digest(algorithm: string, tag: string, salt?: Buffer): Buffer {
  const h = crypto.createHash(algorithm).update(PW);
  if (salt) h.update(salt);
  return Buffer.from(`{${tag}}${Buffer.concat([h.digest(), salt ?? Buffer.alloc(0)]).toString('base64')}`);
}

describe('stored password schemes', () => {
  const cases: Array<[string, string, boolean]> = [
    ['MD5', 'md5', false],
    ['SMD5', 'md5', true],
    ['SHA', 'sha1', false],
    ['SSHA', 'sha1', true],
    ['SHA256', 'sha256', false],
    ['SSHA256', 'sha256', true],
    ['SHA384', 'sha384', false],
    ['SSHA384', 'sha384', true],
    ['SHA512', 'sha512', false],
    ['SSHA512', 'sha512', true],
  ];
  for (const [tag, algorithm, salted] of cases) {
    test(`verifies {${tag}}`, async () => {
      const stored = digest(algorithm, tag, salted ? crypto.randomBytes(8) : undefined);
      assert.deepEqual(await verifyStoredPassword(stored, pw), { match: true, scheme: tag });
      assert.deepEqual(await verifyStoredPassword(stored, Buffer.from(`${PW}x`)), { match: false, scheme: tag });
    });
  }

  test('matches the scheme name without regard to case', async () => {
    const stored = Buffer.from(digest('sha1', 'SSHA', crypto.randomBytes(4)).toString().replace('{SSHA}', '{ssha}'));
    assert.equal((await verifyStoredPassword(stored, pw)).match, true);
  });

  test('verifies {CRYPT} and {UNIX} through crypt(3)', async () => {
    const hash = execFileSync('openssl', ['passwd', '-6', PW], { encoding: 'utf8' }).trim();
    assert.equal((await verifyStoredPassword(Buffer.from(`{CRYPT}${hash}`), pw)).match, true);
    assert.equal((await verifyStoredPassword(Buffer.from(`{crypt}${hash}`), pw)).match, true);
    assert.equal((await verifyStoredPassword(Buffer.from(`{UNIX}${hash}`), pw)).match, true);
    assert.equal((await verifyStoredPassword(Buffer.from(`{CRYPT}${hash}`), Buffer.from('nope'))).match, false);
  });

  test('compares a value without a scheme as plaintext bytes', async () => {
    assert.deepEqual(await verifyStoredPassword(Buffer.from(PW), pw), { match: true, scheme: 'plaintext' });
    assert.equal((await verifyStoredPassword(Buffer.from(PW), Buffer.from(PW.slice(0, -1)))).match, false);
  });

  test('refuses an unknown scheme instead of comparing the hash as plaintext', async () => {
    const stored = Buffer.from('{PBKDF2-SHA512}10000$abc$def');
    const v = await verifyStoredPassword(stored, stored);
    assert.equal(v.match, false);
    assert.ok('problem' in v && /unsupported password scheme \{PBKDF2-SHA512\}/.test(v.problem));
  });

  test('refuses a digest of the wrong length', async () => {
    const v = await verifyStoredPassword(Buffer.from(`{SHA}${Buffer.alloc(5).toString('base64')}`), pw);
    assert.equal(v.match, false);
    assert.ok('problem' in v);
    const noSalt = await verifyStoredPassword(Buffer.from(`{SSHA}${crypto.createHash('sha1').update(PW).digest('base64')}`), pw);
    assert.ok('problem' in noSalt);
  });

  test('constantTimeEqual compares whole byte strings', () => {
    assert.equal(constantTimeEqual(Buffer.from('abc'), Buffer.from('abc')), true);
    assert.equal(constantTimeEqual(Buffer.from('abc'), Buffer.from('abcd')), false);
    assert.equal(constantTimeEqual(Buffer.from(''), Buffer.from('')), true);
  });
});
