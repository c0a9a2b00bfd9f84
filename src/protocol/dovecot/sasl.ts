// The two SASL mechanisms the Dovecot door offers, PLAIN (RFC 4616) and
// LOGIN (the de facto one), as Dovecot's mech-plain.c and mech-login.c read
// them. Both hand over a password in the clear, which is all a mechanism
// that checks passwords can use.
import type { Mechanism } from './wire';

export type MechName = 'PLAIN' | 'LOGIN';

export const MECHANISMS: readonly Mechanism[] = [
  { name: 'PLAIN', params: ['plaintext'] },
  { name: 'LOGIN', params: ['plaintext'] },
];

/** A mechanism name as a client may write it (case does not matter, as in Dovecot). */
export function mechanismNamed(name: string): MechName | undefined {
  const upper = name.toUpperCase();
  return upper === 'PLAIN' || upper === 'LOGIN' ? upper : undefined;
}

/** LOGIN's two challenges. */
export const LOGIN_USERNAME_PROMPT = Buffer.from('Username:');
export const LOGIN_PASSWORD_PROMPT = Buffer.from('Password:');

export type PlainMessage =
  { ok: true; authzid: Buffer; authcid: Buffer; password: Buffer } | { ok: false; why: 'malformed' | 'authzid' };

/**
 * authzid NUL authcid NUL password, exactly two NULs (Dovecot refuses a
 * password with a NUL in it). An authzid other than the authcid asks to act
 * as someone else, which needs master users this daemon does not have:
 * refused before any password is checked.
 */
export function parsePlain(data: Buffer): PlainMessage {
  const first = data.indexOf(0);
  const second = first < 0 ? -1 : data.indexOf(0, first + 1);
  if (second < 0 || data.indexOf(0, second + 1) >= 0) return { ok: false, why: 'malformed' };
  const authzid = data.subarray(0, first);
  const authcid = data.subarray(first + 1, second);
  if (authzid.length > 0 && !authzid.equals(authcid)) return { ok: false, why: 'authzid' };
  return { ok: true, authzid, authcid, password: data.subarray(second + 1) };
}

/** A LOGIN answer ends at its first NUL, as Dovecot's C strings do. */
export function loginAnswer(data: Buffer): Buffer {
  const nul = data.indexOf(0);
  return nul < 0 ? data : data.subarray(0, nul);
}
