// The credentials' fingerprint in JavaScript, for a door that decodes its
// requests here (the Dovecot door): the same construction and the same key as
// the native listener's (src/native/fingerprint.cc), so the cache and the
// throttle see one fingerprint for one login, realm and password whichever
// door they came through. HMAC-SHA256 over the login and realm, each
// preceded by its length (two bytes, big-endian), then the password.
import crypto from 'node:crypto';

export class Fingerprinter {
  private readonly key: crypto.KeyObject;

  /** key: the bytes given to native.setFingerprintKey (at least 16). */
  constructor(key: Buffer) {
    if (key.length < 16) throw new RangeError('the fingerprint key must be at least 16 bytes');
    this.key = crypto.createSecretKey(Buffer.from(key));
  }

  /** login and realm as the bytes the client sent (Latin-1 strings: one character per byte). */
  of(login: string, realm: string, password: Buffer): Buffer {
    return fingerprint(this.key, Buffer.from(login, 'latin1'), Buffer.from(realm, 'latin1'), password);
  }
}

function lengthOf(b: Buffer): Buffer {
  return Buffer.from([(b.length >> 8) & 0xff, b.length & 0xff]);
}

export function fingerprint(key: crypto.KeyObject | Buffer, login: Buffer, realm: Buffer, password: Buffer): Buffer {
  return crypto
    .createHmac('sha256', key)
    .update(lengthOf(login))
    .update(login)
    .update(lengthOf(realm))
    .update(realm)
    .update(password)
    .digest();
}
