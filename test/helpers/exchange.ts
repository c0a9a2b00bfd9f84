// A request as the listener hands it over, without a socket: for unit tests
// of the authenticator. The fingerprint is built as the listener builds it
// (src/native/fingerprint.cc: HMAC-SHA256 over the length-prefixed login and
// realm, then the password), so cache and throttle see what they would see.
import crypto from 'node:crypto';
import type { NativeListener, NativeShadowVerdict } from '../../src/native/binding';
import { Exchange } from '../../src/server/exchange';

export const TEST_KEY = crypto.randomBytes(32);

export interface FakeRequest {
  login: string | Buffer;
  password: string | Buffer;
  service?: string | Buffer;
  realm?: string | Buffer;
  clientAddr?: string | Buffer;
}

const bytes = (v: string | Buffer | undefined): Buffer => (v === undefined ? Buffer.alloc(0) : Buffer.isBuffer(v) ? v : Buffer.from(v, 'utf8'));

export function fingerprint(login: Buffer, realm: Buffer, password: Buffer, key = TEST_KEY): Buffer {
  const len = (b: Buffer): Buffer => Buffer.from([(b.length >> 8) & 0xff, b.length & 0xff]);
  return crypto.createHmac('sha256', key).update(len(login)).update(login).update(len(realm)).update(realm).update(password).digest();
}

export interface FakeExchange {
  x: Exchange;
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
  const x = new Exchange(
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
