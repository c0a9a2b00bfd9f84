import { test } from 'node:test';
import assert from 'node:assert/strict';
import { RequestDecoder, type DecodeResult } from '../../../src/protocol/decoder';
import { encodeReply, encodeRequest, decodeReply, countedString } from '../../../src/protocol/encoder';

function feedWhole(bytes: Buffer): DecodeResult {
  return new RequestDecoder().push(bytes);
}

function feedBytewise(bytes: Buffer): DecodeResult[] {
  const d = new RequestDecoder();
  const out: DecodeResult[] = [];
  for (let i = 0; i < bytes.length; i++) out.push(d.push(bytes.subarray(i, i + 1)));
  return out;
}

function feedRandomSplits(bytes: Buffer, seed: number): DecodeResult {
  const d = new RequestDecoder();
  let x = seed;
  let i = 0;
  let last: DecodeResult = { kind: 'incomplete' };
  while (i < bytes.length) {
    x = (x * 1103515245 + 12345) & 0x7fffffff;
    const n = 1 + (x % 7);
    const r = d.push(bytes.subarray(i, i + n));
    if (r.kind !== 'incomplete') last = r;
    i += n;
  }
  return last;
}

function asStrings(r: DecodeResult): Record<string, string | undefined> {
  assert.equal(r.kind, 'request');
  if (r.kind !== 'request') throw new Error('unreachable');
  return {
    login: r.request.login.toString(),
    password: r.request.password.toString(),
    service: r.request.service.toString(),
    realm: r.request.realm.toString(),
    clientAddr: r.request.clientAddr?.toString(),
  };
}

const testsaslauthdBytes = Buffer.from('\0\x08sasltest\0\x07Secr3t!\0\x04imap\0\0', 'latin1');

test('decodes the exact 27 bytes testsaslauthd sends', () => {
  assert.equal(testsaslauthdBytes.length, 27);
  assert.deepEqual(asStrings(feedWhole(testsaslauthdBytes)), {
    login: 'sasltest',
    password: 'Secr3t!',
    service: 'imap',
    realm: '',
    clientAddr: undefined,
  });
});

test('decodes a request fed one byte at a time, completing only on the last byte', () => {
  const results = feedBytewise(testsaslauthdBytes);
  assert.ok(results.slice(0, -1).every((r) => r.kind === 'incomplete'));
  assert.equal(asStrings(results.at(-1)!).login, 'sasltest');
});

test('decodes the same request under many random chunkings', () => {
  const bytes = encodeRequest({ login: 'bob', password: 'pässwörd', service: 'smtp', realm: 'example.org' });
  for (let seed = 1; seed <= 200; seed++) {
    assert.deepEqual(asStrings(feedRandomSplits(bytes, seed)), {
      login: 'bob',
      password: 'pässwörd',
      service: 'smtp',
      realm: 'example.org',
      clientAddr: undefined,
    });
  }
});

test('reports incomplete for every strict prefix of a request', () => {
  for (let n = 0; n < testsaslauthdBytes.length; n++) {
    assert.equal(feedWhole(testsaslauthdBytes.subarray(0, n)).kind, 'incomplete', `prefix of ${n} bytes`);
  }
});

test('accepts a field of exactly 256 bytes', () => {
  const pw = 'p'.repeat(256);
  const r = feedWhole(encodeRequest({ login: 'u', password: pw, service: 's', realm: '' }));
  assert.equal(asStrings(r).password, pw);
});

for (const [i, name] of (['login', 'password', 'service', 'realm'] as const).entries()) {
  test(`rejects a ${name} whose length exceeds 256 bytes as soon as the length is read`, () => {
    const fields = ['u', 'p', 's', 'r'].map((v) => countedString(v));
    const prefix = Buffer.concat([...fields.slice(0, i), Buffer.from([0x01, 0x01])]); // 257, no payload
    for (const r of [feedWhole(prefix), feedBytewise(prefix).at(-1)!]) {
      assert.deepEqual(r, { kind: 'oversize', field: name, length: 257 });
    }
  });
}

test('ignores input after an oversize result', () => {
  const d = new RequestDecoder();
  assert.equal(d.push(Buffer.from([0xff, 0xff])).kind, 'oversize');
  assert.equal(d.push(encodeRequest({ login: 'a', password: 'b', service: '', realm: '' })).kind, 'incomplete');
});

test('truncates each field at an embedded NUL, as the C daemon does', () => {
  const r = feedWhole(
    encodeRequest({ login: Buffer.from('bob\0evil'), password: Buffer.from('Secr3t!\0junk'), service: 'imap', realm: '' }),
  );
  assert.equal(asStrings(r).login, 'bob');
  assert.equal(asStrings(r).password, 'Secr3t!');
});

test('a field starting with NUL decodes as empty', () => {
  const r = feedWhole(encodeRequest({ login: Buffer.from('\0bob'), password: 'x', service: '', realm: '' }));
  assert.equal(asStrings(r).login, '');
});

test('keeps empty fields as zero-length values', () => {
  const r = asStrings(feedWhole(Buffer.alloc(8)));
  assert.deepEqual(r, { login: '', password: '', service: '', realm: '', clientAddr: undefined });
});

test('takes a 5th field (client address) when it arrives with the 4th', () => {
  const bytes = encodeRequest({ login: 'u', password: 'p', service: 'smtp', realm: '', clientAddr: '192.0.2.7;2525' });
  assert.equal(asStrings(feedWhole(bytes)).clientAddr, '192.0.2.7;2525');
});

test('never waits for a 5th field: completes on the 4th when fed byte by byte', () => {
  const four = encodeRequest({ login: 'u', password: 'p', service: 'smtp', realm: '' });
  const five = encodeRequest({ login: 'u', password: 'p', service: 'smtp', realm: '', clientAddr: '192.0.2.7;2525' });
  const results = feedBytewise(five);
  const firstDone = results.findIndex((r) => r.kind === 'request');
  assert.equal(firstDone, four.length - 1);
  assert.equal(asStrings(results[firstDone]!).clientAddr, undefined);
});

test('ignores a partial 5th field that arrived with the 4th', () => {
  const four = encodeRequest({ login: 'u', password: 'p', service: 'smtp', realm: '' });
  const bytes = Buffer.concat([four, Buffer.from([0, 10, 0x31, 0x32])]);
  assert.equal(asStrings(feedWhole(bytes)).clientAddr, undefined);
});

test('ignores a 5th field longer than 256 bytes instead of rejecting the request', () => {
  const four = encodeRequest({ login: 'u', password: 'p', service: 'smtp', realm: '' });
  const r = feedWhole(Buffer.concat([four, Buffer.from([0x01, 0x01])]));
  assert.equal(asStrings(r).login, 'u');
});

test('copies the password, so wiping it never touches the caller’s chunk (and vice versa)', () => {
  const bytes = encodeRequest({ login: 'bob', password: 'secret', service: 'imap', realm: '' });
  const r = feedWhole(bytes);
  bytes.fill(0x41);
  assert.equal(asStrings(r).password, 'secret');
});

test('wipe() zeroes every chunk fed and every buffer assembled, and leaves the password copy', () => {
  const bytes = encodeRequest({ login: 'bob', password: 'hunter2-secret', service: 'smtp', realm: 'example.org' });
  const chunks = [bytes.subarray(0, 9), bytes.subarray(9, 20), bytes.subarray(20)].map((c) => Buffer.from(c));
  const d = new RequestDecoder();
  let r: DecodeResult = { kind: 'incomplete' };
  for (const c of chunks) r = d.push(c);
  assert.equal(r.kind, 'request');
  const req = r.request;
  const held = [...chunks, req.login, req.service, req.realm];
  d.wipe();
  for (const b of held)
    assert.ok(
      b.every((x) => x === 0),
      `not wiped: ${b.toString('hex')}`,
    );
  assert.equal(req.password.toString(), 'hunter2-secret');
});

test('encodes a reply as a 2-byte big-endian length and the text, no NUL', () => {
  assert.deepEqual(encodeReply('OK'), Buffer.from('\0\x02OK', 'latin1'));
  assert.deepEqual(encodeReply('NO '), Buffer.from('\0\x03NO ', 'latin1'));
  assert.deepEqual(encodeReply('NO NULL login received'), Buffer.from('\0\x16NO NULL login received', 'latin1'));
  assert.deepEqual(encodeReply('NO NULL password received').subarray(0, 2), Buffer.from([0, 0x19]));
});

test('decodes a reply only once its body is complete', () => {
  const bytes = encodeReply('NO Incorrect password');
  for (let n = 0; n < bytes.length; n++) assert.equal(decodeReply(bytes.subarray(0, n)), undefined);
  assert.equal(decodeReply(bytes)?.text, 'NO Incorrect password');
});
