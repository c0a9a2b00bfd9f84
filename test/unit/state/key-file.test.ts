import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { deriveKeys, KeyFileError, readKeyFile } from '../../../src/state/key-file';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'saslauthd-ts-keyfile-'));

function file(name: string, bytes: number, mode: number): string {
  const p = path.join(dir, name);
  fs.writeFileSync(p, Buffer.alloc(bytes, 7), { mode });
  fs.chmodSync(p, mode);
  return p;
}

describe('--state-key files', () => {
  after(() => fs.rmSync(dir, { recursive: true, force: true }));

  test('a root-owned 0600 file of 32 bytes is read whole', () => {
    assert.equal(readKeyFile(file('good', 32, 0o600)).length, 32);
    assert.equal(readKeyFile(file('ro', 64, 0o400)).length, 64);
  });

  test('refuses a file group or others can read, naming the file and the chmod', () => {
    for (const mode of [0o640, 0o604, 0o660, 0o610]) {
      const p = file(`mode${mode.toString(8)}`, 32, mode);
      assert.throws(
        () => readKeyFile(p),
        (err: Error) => err instanceof KeyFileError && err.message.includes(`chmod 0600 ${p}`),
      );
    }
  });

  test('refuses a short file, a missing one, a directory and a symbolic link, saying how to make one', () => {
    const short = file('short', 31, 0o600);
    assert.throws(
      () => readKeyFile(short),
      /31 bytes; at least 32 are needed; create one with: \(umask 077; head -c 32 \/dev\/urandom/,
    );
    assert.throws(() => readKeyFile(path.join(dir, 'missing')), /no such file; create one with/);
    assert.throws(() => readKeyFile(dir), /not a regular file/);
    const link = path.join(dir, 'link');
    fs.symlinkSync(path.join(dir, 'good'), link);
    assert.throws(() => readKeyFile(link), /symbolic link/);
  });

  test('refuses a file owned by another user', () => {
    const p = file('owned', 32, 0o600);
    fs.chownSync(p, 65534, 65534);
    assert.throws(() => readKeyFile(p), /owned by uid 65534; it must be owned by root: chown root:root/);
  });

  test('derives distinct keys for fingerprints and key names, the same on every host', () => {
    const secret = Buffer.alloc(32, 1);
    const a = deriveKeys(secret);
    const b = deriveKeys(Buffer.from(secret));
    assert.deepEqual(a, b);
    assert.notDeepEqual(a.fingerprint, a.names);
    assert.notDeepEqual(a.fingerprint, secret);
  });
});
