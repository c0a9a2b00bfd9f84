// The Dovecot door fingerprints credentials in JavaScript
// (src/auth/fingerprint.ts); the mux door's native listener in C++
// (src/native/fingerprint.cc). They must agree to the bit under the same key,
// or the cache and the throttle would see two users where there is one. The
// native side is the real listener on a real socket, reporting the
// fingerprint it hands to JavaScript.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Fingerprinter } from '../../../src/auth/fingerprint';
import { sendRequest } from '../../../src/client/request';
import { ListenerEvent, native, type NativeListener } from '../../../src/native/binding';
import { encodeReply } from '../../../src/protocol/encoder';

interface Seen {
  login: string;
  realm: string;
  fingerprint: Buffer;
}

describe('the JavaScript fingerprint', () => {
  const key = crypto.randomBytes(32);
  let dir: string;
  let socketPath: string;
  let listener: NativeListener;
  let seen: Seen[] = [];

  before(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'fp-'));
    socketPath = path.join(dir, 'mux');
    native.setFingerprintKey(key);
    listener = new native.Listener(
      (kind, id, login, _service, realm, _addr, fingerprint) => {
        if (kind !== ListenerEvent.Request) return;
        seen.push({ login: login as string, realm: realm as string, fingerprint: fingerprint as Buffer });
        listener.reply(id, encodeReply('OK'));
      },
      5000,
      1000,
      64,
      0,
    );
    listener.open(native.bindUnixSocket(socketPath, 16));
  });

  after(() => {
    listener.stopAccepting();
    listener.destroyAll();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  const cases: Array<[string, { login: Buffer; realm: Buffer; password: Buffer }]> = [
    ['a plain login, no realm', { login: Buffer.from('alice'), realm: Buffer.alloc(0), password: Buffer.from('Secret-1') }],
    ['a login and a realm', { login: Buffer.from('bob'), realm: Buffer.from('example.org'), password: Buffer.from('pw') }],
    // ("ab", "c") and ("a", "bc") must differ: the length prefixes.
    [
      'login and realm that only the length prefixes tell apart',
      { login: Buffer.from('ab'), realm: Buffer.from('c'), password: Buffer.from('x') },
    ],
    [
      'bytes that are not UTF-8',
      { login: Buffer.from([0xe9, 0x74, 0xe9]), realm: Buffer.from([0xff, 0x40]), password: Buffer.from([0x80, 0x81, 0xfe]) },
    ],
    [
      'the longest fields Cyrus accepts (256 bytes)',
      { login: Buffer.alloc(256, 0x6c), realm: Buffer.alloc(256, 0x72), password: Buffer.alloc(256, 0x70) },
    ],
  ];

  for (const [name, c] of cases) {
    test(`matches the native listener's for ${name}`, async () => {
      seen = [];
      const reply = await sendRequest(socketPath, { login: c.login, password: c.password, service: 'smtp', realm: c.realm });
      assert.equal(reply, 'OK');
      assert.equal(seen.length, 1);
      const s = seen[0]!;
      assert.deepEqual(Buffer.from(s.login, 'latin1'), c.login);
      assert.deepEqual(Buffer.from(s.realm, 'latin1'), c.realm);
      const mine = new Fingerprinter(key).of(s.login, s.realm, c.password);
      assert.equal(mine.toString('hex'), s.fingerprint.toString('hex'));
    });
  }

  // HMAC pads a key to SHA-256's 64-byte block and hashes a longer one
  // first: the native side builds the keyed states itself, so both sides of
  // the block size are checked (a fleet's key file can be any length).
  for (const len of [16, 63, 64, 65, 200]) {
    test(`matches under a key of ${len} bytes`, async () => {
      const k = crypto.randomBytes(len);
      native.setFingerprintKey(k);
      try {
        seen = [];
        const password = Buffer.from('Secret-2');
        assert.equal(await sendRequest(socketPath, { login: 'dave', password, service: 'smtp', realm: 'ex.org' }), 'OK');
        const mine = new Fingerprinter(k).of('dave', 'ex.org', password);
        assert.equal(mine.toString('hex'), seen[0]!.fingerprint.toString('hex'));
      } finally {
        native.setFingerprintKey(key);
      }
    });
  }

  test('differs under another key', async () => {
    seen = [];
    await sendRequest(socketPath, { login: 'carol', password: 'pw', service: 'smtp', realm: '' });
    const other = new Fingerprinter(crypto.randomBytes(32)).of('carol', '', Buffer.from('pw'));
    assert.notEqual(other.toString('hex'), seen[0]!.fingerprint.toString('hex'));
  });
});
