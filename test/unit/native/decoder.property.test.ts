// Property tests of the daemon's only request decoder (src/native/
// request_decoder.cc, through the addon's decodeRequestForTest): for any
// bytes, cut into chunks any way, it must agree with a model of Cyrus
// 2.1.28's do_request written here from the rules alone, and with the
// JavaScript reference decoder (src/protocol/decoder.ts). Every value the
// listener could be fed is a case: the decoder runs as root on bytes from any
// local user, so "it never throws, never reads past the frame" is checked on
// arbitrary bytes, not only on frames a client would send.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { native, type DecodedForTest } from '../../../src/native/binding';
import { RequestDecoder } from '../../../src/protocol/decoder';

const MAX = 256;
const NAMES = ['login', 'password', 'service', 'realm'] as const;
const KEYS = ['login', 'password', 'service', 'realm', 'clientAddr'] as const;

// fast-check's runs per property: each length class (0, 256, 257, NULs, a
// cut inside a prefix, a 5th field) comes up hundreds of times, and the
// whole file takes a few seconds.
const RUNS = 2000;

/** The bytes of chunks, concatenated. */
const concat = (chunks: Uint8Array[]): Buffer => Buffer.concat(chunks.map((c) => Buffer.from(c)));

const cString = (b: Buffer): Buffer => {
  const nul = b.indexOf(0);
  return nul === -1 ? b : b.subarray(0, nul);
};

/**
 * The rules, on the whole input at once (no incremental state, so a bug in
 * the decoder's bookkeeping cannot be copied into it):
 * - four counted strings, each a 2-byte big-endian length then the bytes;
 * - a length over 256 ends the request at once: oversize, naming the field,
 *   whether or not any of its bytes follow; exactly 256 is a field;
 * - a field is cut at its first NUL;
 * - a 5th field (client address) counts only if all of it, at most 256
 *   bytes, had arrived by the end of the chunk in which the realm completed;
 * - bytes after that are never looked at; `received` counts every byte.
 */
function model(chunks: Uint8Array[]): DecodedForTest {
  const all = concat(chunks);
  const received = all.length;
  const fields: Buffer[] = [];
  let pos = 0;
  for (const name of NAMES) {
    if (all.length < pos + 2) return { kind: 'incomplete', received };
    const len = all.readUInt16BE(pos);
    if (len > MAX) return { kind: 'oversize', field: name, length: len, received };
    if (all.length < pos + 2 + len) return { kind: 'incomplete', received };
    fields.push(cString(all.subarray(pos + 2, pos + 2 + len)));
    pos += 2 + len;
  }
  // What was buffered when the realm completed: up to the end of its chunk.
  let buffered = 0;
  for (const c of chunks) {
    buffered += c.length;
    if (buffered >= pos) break;
  }
  const [login, password, service, realm] = fields as [Buffer, Buffer, Buffer, Buffer];
  const out: DecodedForTest = { kind: 'request', login, password, service, realm, received };
  if (buffered >= pos + 2) {
    const len = all.readUInt16BE(pos);
    if (len <= MAX && buffered >= pos + 2 + len) out.clientAddr = cString(all.subarray(pos + 2, pos + 2 + len));
  }
  return out;
}

/** The JavaScript reference decoder's first final answer over chunks, in the binding's shape. */
function reference(chunks: Uint8Array[]): DecodedForTest {
  const d = new RequestDecoder();
  const received = chunks.reduce((n, c) => n + c.length, 0);
  for (const c of chunks) {
    const r = d.push(Buffer.from(c));
    if (r.kind === 'oversize') return { kind: 'oversize', field: r.field, length: r.length, received };
    if (r.kind === 'request') {
      const { login, password, service, realm, clientAddr } = r.request;
      const out: DecodedForTest = { kind: 'request', login, password, service, realm, received };
      if (clientAddr !== undefined) out.clientAddr = clientAddr;
      return out;
    }
  }
  return { kind: 'incomplete', received };
}

const decode = (chunks: Uint8Array[]): DecodedForTest => native.decodeRequestForTest(chunks.map((c) => Buffer.from(c)));

/** Plain objects with hex strings, so a failure prints readable bytes and deepEqual compares values. */
function show(r: DecodedForTest): Record<string, unknown> {
  const o: Record<string, unknown> = { ...r };
  for (const k of KEYS) {
    const v = o[k];
    if (Buffer.isBuffer(v)) o[k] = v.toString('hex');
  }
  return o;
}

// ---- generators -----------------------------------------------------------

/** Cuts bytes at arbitrary points; repeated points give empty writes, which the listener never sees but must not matter. */
function splitAt(bytes: Uint8Array, cuts: number[]): Uint8Array[] {
  const points = [...cuts.map((c) => c % (bytes.length + 1)), bytes.length].sort((a, b) => a - b);
  const out: Uint8Array[] = [];
  let from = 0;
  for (const p of points) {
    out.push(bytes.subarray(from, p));
    from = p;
  }
  return out;
}

const chunked = (bytes: fc.Arbitrary<Uint8Array>): fc.Arbitrary<Uint8Array[]> =>
  fc.oneof(
    fc.tuple(bytes, fc.array(fc.nat(), { maxLength: 12 })).map(([b, cuts]) => splitAt(b, cuts)),
    // One byte per write: the dripping client.
    bytes.map((b) => Array.from(b, (x) => Uint8Array.of(x))),
  );

/** Field contents around the limit and with NULs in them. */
const fieldBody: fc.Arbitrary<Uint8Array> = fc.oneof(
  fc.uint8Array({ maxLength: 8 }),
  fc.constantFrom(0, 1, 255, 256).chain((n) => fc.uint8Array({ minLength: n, maxLength: n })),
  fc.tuple(fc.uint8Array({ maxLength: 6 }), fc.uint8Array({ maxLength: 6 })).map(([a, b]) => Uint8Array.from([...a, 0, ...b])),
  fc.uint8Array({ minLength: 200, maxLength: 256 }),
);

const prefix = (n: number): Uint8Array => Uint8Array.of(n >> 8, n & 0xff);
const counted = (b: Uint8Array): Uint8Array => Uint8Array.from([...prefix(b.length), ...b]);

/** A length the server must refuse, with none, some or all of its bytes. */
const oversized: fc.Arbitrary<Uint8Array> = fc
  .tuple(fc.oneof(fc.constantFrom(257, 258, 0x100 | 0xff, 0xffff), fc.integer({ min: 257, max: 0xffff })), fc.nat(300))
  .map(([len, sent]) => Uint8Array.from([...prefix(len), ...new Uint8Array(Math.min(sent, len)).fill(0x41)]));

/**
 * Frames a client might send, or a hostile one: 4 or 5 fields, any of them
 * replaced by an oversized length, cut short anywhere, trailing junk after.
 */
const structured: fc.Arbitrary<Uint8Array> = fc
  .tuple(
    fc.array(fc.oneof({ weight: 12, arbitrary: fieldBody.map(counted) }, { weight: 1, arbitrary: oversized }), {
      minLength: 4,
      maxLength: 6,
    }),
    fc.oneof({ weight: 2, arbitrary: fc.constant(undefined) }, { weight: 1, arbitrary: fc.nat() }),
    fc.uint8Array({ maxLength: 20 }),
  )
  .map(([fields, cut, junk]) => {
    const whole = Uint8Array.from([...fields.flatMap((f) => [...f]), ...junk]);
    return cut === undefined ? whole : whole.subarray(0, cut % (whole.length + 1));
  });

/**
 * Arbitrary bytes: uniform ones (whose first length is nearly always over
 * 256), and ones rich in 0, 1 and 4 so that random lengths are often small
 * and random input often parses some way into the fields. Sizes reach past
 * the most a request can need buffered (5 x 258 bytes).
 */
const anyBytes: fc.Arbitrary<Uint8Array> = fc.oneof(
  fc.uint8Array({ maxLength: 1400, size: 'max' }),
  fc.array(fc.oneof(fc.nat(255), fc.constantFrom(0, 1, 4)), { maxLength: 1400, size: 'max' }).map((a) => Uint8Array.from(a)),
  fc.array(fc.constantFrom(0, 1, 2, 0x41), { maxLength: 40 }).map((a) => Uint8Array.from(a)),
);

// ---- properties -----------------------------------------------------------

describe('the native request decoder against a model of Cyrus do_request', () => {
  test('agrees with the model on arbitrary bytes in arbitrary chunks', () => {
    fc.assert(
      fc.property(chunked(anyBytes), (chunks) => {
        assert.deepEqual(show(decode(chunks)), show(model(chunks)));
      }),
      { numRuns: RUNS },
    );
  });

  test('agrees with the model on valid, truncated, oversized, NUL-holding and 5-field frames in arbitrary chunks', () => {
    fc.assert(
      fc.property(chunked(structured), (chunks) => {
        assert.deepEqual(show(decode(chunks)), show(model(chunks)));
      }),
      { numRuns: RUNS },
    );
  });

  test('agrees with the JavaScript reference decoder on any input', () => {
    fc.assert(
      fc.property(chunked(fc.oneof(structured, anyBytes)), (chunks) => {
        assert.deepEqual(show(decode(chunks)), show(reference(chunks)));
      }),
      { numRuns: RUNS },
    );
  });

  test('gives the same request however a frame is chunked, when the last chunk holds the whole 5th field', () => {
    fc.assert(
      fc.property(fc.array(fieldBody, { minLength: 5, maxLength: 5 }), fc.array(fc.nat(), { maxLength: 12 }), (bodies, cuts) => {
        const frame = Uint8Array.from(bodies.flatMap((b) => [...counted(b)]));
        const realmEnd = bodies.slice(0, 4).reduce((n, b) => n + 2 + b.length, 0);
        // Cuts only before the realm's end: the 5th field arrives with it.
        const chunks = splitAt(
          frame,
          cuts.map((c) => c % realmEnd),
        );
        const whole = decode([frame]);
        assert.deepEqual(show(decode(chunks)), show(whole));
        assert.equal(whole.kind, 'request');
        assert.deepEqual(show(whole), show(model([frame])));
      }),
      { numRuns: RUNS },
    );
  });

  test('never looks past the frame: later chunks change nothing but the byte count', () => {
    fc.assert(
      fc.property(
        chunked(fc.oneof(structured, anyBytes)),
        fc.array(fc.uint8Array({ maxLength: 300 }), { maxLength: 4 }),
        (chunks, later) => {
          const first = decode(chunks);
          fc.pre(first.kind !== 'incomplete');
          const more = decode([...chunks, ...later]);
          const extra = later.reduce((n, c) => n + c.length, 0);
          assert.deepEqual(show(more), show({ ...first, received: first.received + extra }));
        },
      ),
      { numRuns: RUNS },
    );
  });

  test('never throws on writes far larger than any request, and still agrees with the model', () => {
    // A frame (or noise) followed by up to 70 KB in the same write and the
    // next: more than the decoder ever buffers (5 x 258 bytes) and more than
    // any length prefix can announce. The filler is cheap to make; its bytes
    // are never looked at unless they are part of the frame.
    const big = fc
      .tuple(fc.oneof(structured, anyBytes), fc.nat(70_000), fc.nat(255), fc.nat(70_000))
      .map(([head, n, fill, m]) => [Buffer.concat([head, Buffer.alloc(n, fill)]), Buffer.alloc(m, fill)]);
    fc.assert(
      fc.property(big, (chunks) => {
        assert.deepEqual(show(decode(chunks)), show(model(chunks)));
      }),
      { numRuns: 300 },
    );
  });
});

// ---- the limit rules, one by one -------------------------------------------

const frameOf = (...bodies: (string | Buffer)[]): Buffer =>
  Buffer.concat(bodies.map((b) => Buffer.from(counted(typeof b === 'string' ? Buffer.from(b, 'latin1') : b))));

describe('the native request decoder applies the limits exactly', () => {
  for (const [i, name] of NAMES.entries()) {
    test(`accepts a ${name} of exactly 256 bytes`, () => {
      const bodies = ['u', 'p', 's', 'r'].map((v, j) => (j === i ? Buffer.alloc(256, 0x61 + j) : v));
      const r = decode([frameOf(...bodies)]);
      assert.equal(r.kind, 'request');
      if (r.kind !== 'request') return;
      assert.equal(r[name].length, 256);
    });

    test(`refuses a ${name} of 257 bytes as oversize, naming the ${name}, before any of its bytes arrive`, () => {
      const before = ['u', 'p', 's'].slice(0, i);
      const r = decode([frameOf(...before), Buffer.from(prefix(257))]);
      assert.deepEqual(show(r), { kind: 'oversize', field: name, length: 257, received: r.received });
    });
  }

  test('cuts every field at its first NUL', () => {
    const r = decode([frameOf('us\0er', 'pw\0x', 'imap\0', '\0realm', '1.2.3.4;25\0junk')]);
    assert.deepEqual(
      show(r),
      show({
        kind: 'request',
        login: Buffer.from('us'),
        password: Buffer.from('pw'),
        service: Buffer.from('imap'),
        realm: Buffer.alloc(0),
        clientAddr: Buffer.from('1.2.3.4;25'),
        received: r.received,
      }),
    );
  });

  test('takes the 5th field when it arrives with the realm', () => {
    const r = decode([frameOf('u', 'p', 's', '', '10.0.0.1;143')]);
    assert.equal(r.kind === 'request' && r.clientAddr?.toString(), '10.0.0.1;143');
  });

  test('completes without a 5th field that arrives in a later chunk, or only in part', () => {
    const four = frameOf('u', 'p', 's', '');
    const addr = frameOf('10.0.0.1;143');
    const later = decode([four, addr]);
    assert.equal(later.kind, 'request');
    assert.equal(later.kind === 'request' && later.clientAddr, undefined);
    const partial = decode([Buffer.concat([four, addr.subarray(0, addr.length - 1)])]);
    assert.equal(partial.kind, 'request');
    assert.equal(partial.kind === 'request' && partial.clientAddr, undefined);
  });

  test('ignores a 5th field longer than 256 bytes instead of refusing the request', () => {
    const r = decode([Buffer.concat([frameOf('u', 'p', 's', ''), frameOf(Buffer.alloc(257, 0x31))])]);
    assert.equal(r.kind, 'request');
    assert.equal(r.kind === 'request' && r.clientAddr, undefined);
  });

  test('stays incomplete until the last byte of the realm, fed one byte at a time', () => {
    const frame = frameOf('user', 'pw', 'imap', 'realm');
    for (let n = 0; n < frame.length; n++) {
      assert.equal(decode(Array.from(frame.subarray(0, n), (x) => Buffer.of(x))).kind, 'incomplete', `after ${n} bytes`);
    }
    assert.equal(decode(Array.from(frame, (x) => Buffer.of(x))).kind, 'request');
  });
});
