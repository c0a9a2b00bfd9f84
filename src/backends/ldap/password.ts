// Local check of a stored userPassword value for ldap_auth_method: custom
// (Cyrus lak.c lak_check_password). The {SCHEME} prefix is matched without
// regard to case. {CRYPT}/{UNIX} go through the system's crypt(3); the
// digest schemes are recomputed here; every comparison is constant-time.
// Differences from Cyrus: {SHA256}/{SSHA256}/{SHA384}/{SSHA384}/{SHA512}/
// {SSHA512} are verified rather than compared as plaintext, and any other
// {SCHEME} is refused rather than compared as plaintext (which would accept
// the stored hash itself as the password).
import crypto from 'node:crypto';
import { native } from '../../native/binding';

export type PasswordVerdict =
  | { match: boolean; scheme: string }
  /** The stored value cannot be checked: unknown scheme, malformed digest. */
  | { match: false; scheme: string; problem: string };

interface DigestScheme {
  algorithm: string;
  length: number;
  salted: boolean;
}

const DIGESTS: Readonly<Record<string, DigestScheme>> = {
  MD5: { algorithm: 'md5', length: 16, salted: false },
  SMD5: { algorithm: 'md5', length: 16, salted: true },
  SHA: { algorithm: 'sha1', length: 20, salted: false },
  SSHA: { algorithm: 'sha1', length: 20, salted: true },
  SHA256: { algorithm: 'sha256', length: 32, salted: false },
  SSHA256: { algorithm: 'sha256', length: 32, salted: true },
  SHA384: { algorithm: 'sha384', length: 48, salted: false },
  SSHA384: { algorithm: 'sha384', length: 48, salted: true },
  SHA512: { algorithm: 'sha512', length: 64, salted: false },
  SSHA512: { algorithm: 'sha512', length: 64, salted: true },
};

/** Constant-time equality of two byte strings of any lengths. */
export function constantTimeEqual(a: Buffer, b: Buffer): boolean {
  const ha = crypto.createHash('sha256').update(a).digest();
  const hb = crypto.createHash('sha256').update(b).digest();
  return crypto.timingSafeEqual(ha, hb) && a.length === b.length;
}

function checkDigest(def: DigestScheme, scheme: string, encoded: string, password: Buffer): PasswordVerdict {
  const text = encoded.trim();
  if (!/^[A-Za-z0-9+/]*={0,2}$/.test(text)) return { match: false, scheme, problem: `{${scheme}} value is not base64` };
  const raw = Buffer.from(text, 'base64');
  if (def.salted ? raw.length <= def.length : raw.length !== def.length) {
    return {
      match: false,
      scheme,
      problem: `{${scheme}} value has ${raw.length} bytes, not a ${def.algorithm} digest${def.salted ? ' plus salt' : ''}`,
    };
  }
  const digest = raw.subarray(0, def.length);
  const salt = raw.subarray(def.length);
  const computed = crypto.createHash(def.algorithm).update(password).update(salt).digest();
  return { match: crypto.timingSafeEqual(computed, digest), scheme };
}

/** Check password against one stored userPassword value. */
export async function verifyStoredPassword(stored: Buffer, password: Buffer): Promise<PasswordVerdict> {
  const text = stored.toString('latin1');
  const m = /^\{([^}]*)\}/.exec(text);
  if (m === null) return { match: constantTimeEqual(stored, password), scheme: 'plaintext' };
  const scheme = (m[1] ?? '').toUpperCase();
  const rest = text.slice(m[0].length);
  if (scheme === 'CRYPT' || scheme === 'UNIX') {
    // crypt(3) settings are ASCII; the addon compares in constant time.
    return { match: await native.cryptVerify(password, rest), scheme };
  }
  const def = DIGESTS[scheme];
  if (def !== undefined) return checkDigest(def, scheme, rest, password);
  return { match: false, scheme, problem: `unsupported password scheme {${m[1] ?? ''}}` };
}
