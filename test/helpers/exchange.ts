// A request as the mux listener hands it over, without a socket: for unit
// tests of the authenticator. The fingerprint is built as the listener builds
// it (src/native/fingerprint.cc, rebuilt in src/auth/fingerprint.ts for the
// Dovecot door), so cache and throttle see what they would see.
import crypto from 'node:crypto';
import { fingerprint as hmacFingerprint } from '../../src/auth/fingerprint';
import type { NativeListener, NativeShadowVerdict } from '../../src/native/binding';
import { MuxExchange } from '../../src/server/mux-exchange';

export const TEST_KEY = crypto.randomBytes(32);

export interface FakeRequest {
  login: string | Buffer;
  password: string | Buffer;
  service?: string | Buffer;
  realm?: string | Buffer;
  clientAddr?: string | Buffer;
}

const bytes = (v: string | Buffer | undefined): Buffer =>
  v === undefined ? Buffer.alloc(0) : Buffer.isBuffer(v) ? v : Buffer.from(v, 'utf8');

export function fingerprint(login: Buffer, realm: Buffer, password: Buffer, key = TEST_KEY): Buffer {
  return hmacFingerprint(key, login, realm, password);
}

export interface FakeExchange {
  x: MuxExchange;
  /** The answer, once sent. */
  answer: Promise<string>;
  /** Every password copy handed out (to check they are wiped). */
  copies: Buffer[];
}

let nextId = 1;

export function fakeExchange(r: FakeRequest): FakeExchange {
  const login = bytes(r.login);
  const password = bytes(r.password);
  const realm = bytes(r.realm);
  const copies: Buffer[] = [];
  let resolve!: (s: string) => void;
  const answer = new Promise<string>((res) => (resolve = res));
  let answered = false;
  const listener: NativeListener = {
    open: () => undefined,
    reply: (_id, b) => {
      if (answered) return false;
      answered = true;
      resolve(b.subarray(2).toString('latin1'));
      return true;
    },
    password: () => {
      if (answered) return undefined;
      const copy = Buffer.from(password);
      copies.push(copy);
      return copy;
    },
    checkShadow: (): Promise<NativeShadowVerdict> | undefined => undefined,
    destroy: () => undefined,
    stopAccepting: () => undefined,
    destroyAll: () => undefined,
    count: 0,
    busy: 0,
  };
  const x = new MuxExchange(
    listener,
    nextId++,
    login.toString('latin1'),
    bytes(r.service ?? 'smtp').toString('latin1'),
    realm.toString('latin1'),
    r.clientAddr === undefined ? undefined : bytes(r.clientAddr).toString('latin1'),
    fingerprint(login, realm, password),
  );
  return { x, answer, copies };
}
