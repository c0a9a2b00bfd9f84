// Property tests of the Dovecot door's protocol layer (src/protocol/dovecot):
// the line decoder against a model that splits the whole input at once, the
// base64 decoder against Node's, TAB escapes, and the session state machine
// fed arbitrary lines. The door runs as root and reads bytes from any client
// that can reach its socket, so "never throws, never answers malformed,
// never keeps going after a violation" is checked on arbitrary input, not
// only on what Postfix sends.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { LineDecoder } from '../../../src/protocol/dovecot/line-decoder';
import { DovecotSession, type SessionOutput } from '../../../src/protocol/dovecot/session';
import { decodeBase64, tabEscape, tabUnescape } from '../../../src/protocol/dovecot/wire';

const RUNS = 1000;
const b64 = (b: Uint8Array | string): string => Buffer.from(b).toString('base64');

/** A byte stream cut into chunks at arbitrary points. */
const chunked = (bytes: fc.Arbitrary<Uint8Array>): fc.Arbitrary<Uint8Array[]> =>
  bytes.chain((all) =>
    fc.uniqueArray(fc.integer({ min: 0, max: all.length }), { maxLength: 8 }).map((cuts) => {
      const points = [0, ...cuts.sort((a, b) => a - b), all.length];
      const out: Uint8Array[] = [];
      for (let i = 1; i < points.length; i++) out.push(all.subarray(points[i - 1], points[i]));
      return out;
    }),
  );

/** Lines of every length around the limit, some ending in CR LF, with TABs, CRs and other bytes inside. */
const lineBytes: fc.Arbitrary<Uint8Array> = fc
  .array(
    fc.tuple(
      fc.integer({ min: 0, max: 24 }).chain((n) => fc.uint8Array({ minLength: n, maxLength: n })),
      fc.constantFrom('\n', '\r\n', ''),
    ),
    { maxLength: 8 },
  )
  .map((parts) =>
    Buffer.concat(
      parts.map(([body, end]) => Buffer.concat([Buffer.from(body.map((b) => (b === 0x0a ? 0x09 : b))), Buffer.from(end)])),
    ),
  );

describe('LineDecoder', () => {
  const MAX = 16;

  test('any chunking gives the lines of splitting the whole at LF (a CR before it dropped), or overlong exactly when a line is too long', () => {
    fc.assert(
      fc.property(chunked(lineBytes), (chunks) => {
        const all = Buffer.concat(chunks.map((c) => Buffer.from(c)));
        const pieces: Buffer[] = [];
        let from = 0;
        for (let lf = all.indexOf(0x0a); lf >= 0; lf = all.indexOf(0x0a, from)) {
          pieces.push(all.subarray(from, lf));
          from = lf + 1;
        }
        const tail = all.subarray(from);
        const firstLong = pieces.findIndex((p) => p.length > MAX);
        const expectOverlong = firstLong >= 0 || tail.length > MAX;
        const modelLines = (firstLong >= 0 ? pieces.slice(0, firstLong) : pieces).map((p) =>
          p.length > 0 && p[p.length - 1] === 0x0d ? p.subarray(0, p.length - 1) : p,
        );

        const d = new LineDecoder(MAX);
        const got: Buffer[] = [];
        let overlong = false;
        for (const c of chunks) {
          const r = d.push(Buffer.from(c));
          if (r.kind === 'overlong') {
            overlong = true;
            break;
          }
          got.push(...r.lines);
        }
        assert.equal(overlong, expectOverlong);
        if (overlong) {
          // Lines completed in earlier chunks came out; the rest were dropped with the connection.
          assert.ok(got.length <= modelLines.length);
          got.forEach((l, i) => assert.deepEqual(l, modelLines[i]));
          assert.equal(d.pending, 0);
        } else {
          assert.deepEqual(got, modelLines);
          assert.equal(d.pending, tail.length);
        }
      }),
      { numRuns: RUNS },
    );
  });
});

describe('decodeBase64', () => {
  test('decodes what Node encodes, padded or not', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 300 }), (bytes) => {
        const text = b64(bytes);
        assert.deepEqual(decodeBase64(Buffer.from(text)), Buffer.from(bytes));
        assert.deepEqual(decodeBase64(Buffer.from(text.replace(/=+$/, ''))), Buffer.from(bytes));
      }),
      { numRuns: RUNS },
    );
  });

  test('accepts exactly the strict alphabet with proper padding, and then agrees with Node', () => {
    const alphabet = fc.constantFrom(...'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=-_ .\t\n\0é'.split(''));
    fc.assert(
      fc.property(fc.array(alphabet, { maxLength: 40 }), (cs) => {
        const text = cs.join('');
        const got = decodeBase64(Buffer.from(text, 'latin1'));
        const body = text.replace(/={1,2}$/, '');
        const pad = text.length - body.length;
        const valid = /^[A-Za-z0-9+/]*$/.test(body) && body.length % 4 !== 1 && (pad === 0 || text.length % 4 === 0);
        assert.equal(got !== undefined, valid, JSON.stringify(text));
        if (got !== undefined) assert.deepEqual(got, Buffer.from(text, 'base64'));
      }),
      { numRuns: RUNS * 2 },
    );
  });
});

describe('TAB escapes', () => {
  test('unescape(escape(s)) is s, and the escaped form has no TAB, CR or LF', () => {
    fc.assert(
      fc.property(
        fc.string({ unit: fc.integer({ min: 0, max: 255 }).map((n) => String.fromCharCode(n)), maxLength: 60 }),
        (s) => {
          const e = tabEscape(s);
          assert.doesNotMatch(e, /[\t\r\n]/);
          assert.equal(tabUnescape(Buffer.from(e, 'latin1')), s);
        },
      ),
      { numRuns: RUNS },
    );
  });
});

// ---- the session -------------------------------------------------------------

const HANDSHAKE = [Buffer.from('VERSION\t1\t0'), Buffer.from('CPID\t42')];

/** Lines a client might send, well-formed or not: command names, ids, parameters and base64 from small pools. */
/** Requests that open, continue or cancel one of a few ids, so that many are open at once. */
const requestLine: fc.Arbitrary<Buffer> = fc
  .tuple(
    fc.constantFrom('AUTH', 'CONT', 'CANCEL'),
    fc.integer({ min: 1, max: 8 }),
    fc.constantFrom('PLAIN', 'LOGIN'),
    fc.option(fc.uint8Array({ maxLength: 30 }), { nil: undefined }),
  )
  .map(([cmd, id, mech, data]) =>
    Buffer.from(
      cmd === 'AUTH'
        ? `AUTH\t${id}\t${mech}\tservice=smtp${data === undefined ? '' : `\tresp=${b64(data)}`}`
        : cmd === 'CONT'
          ? `CONT\t${id}\t${b64(data ?? new Uint8Array())}`
          : `CANCEL\t${id}`,
    ),
  );

const anyLine: fc.Arbitrary<Buffer> = fc.oneof(
  fc.uint8Array({ maxLength: 60 }).map((a) => Buffer.from(a.filter((b) => b !== 0x0a))),
  { weight: 8, arbitrary: requestLine },
  fc
    .tuple(
      fc.constantFrom('AUTH', 'CONT', 'CANCEL', 'VERSION', 'CPID', 'auth', 'NOPE', ''),
      fc.constantFrom('1', '2', '3', '0', '4294967295', '4294967296', '-1', 'x', ''),
      fc.array(
        fc.oneof(
          fc.constantFrom(
            'PLAIN',
            'LOGIN',
            'plain',
            'CRAM-MD5',
            'service=smtp',
            'service=',
            'rip=192.0.2.1',
            'secured',
            'nologin',
            'lip=::1',
          ),
          fc.uint8Array({ maxLength: 40 }).map((a) => `resp=${b64(a)}`),
          fc.uint8Array({ maxLength: 40 }).map((a) => b64(a)),
          fc.constantFrom('resp=', 'resp==', 'resp=!!!', 'resp=QQ', 'resp=QQ=', '=', 'a\x01tb'),
        ),
        { maxLength: 5 },
      ),
    )
    .map(([cmd, id, rest]) => Buffer.from([cmd, id, ...rest].join('\t'), 'latin1')),
);

/** Every output is well-formed: one line, LF-terminated; FAIL/CONT/OK name a request id. */
function checkOutputs(outs: SessionOutput[]): void {
  for (const o of outs) {
    if (o.kind === 'send' || o.kind === 'refuse') {
      const text = o.bytes.toString('latin1');
      assert.ok(text.endsWith('\n') && text.indexOf('\n') === text.length - 1, JSON.stringify(text));
      assert.match(text, /^(CONT|FAIL|OK)\t\d+(\t|\n)/);
      if (o.kind === 'refuse') assert.ok(text.startsWith(`FAIL\t${o.id}\t`));
    }
  }
}

describe('DovecotSession', () => {
  test('never throws on any lines; answers are well-formed; nothing follows a close; open requests stay within the bound', () => {
    fc.assert(
      fc.property(fc.boolean(), fc.array(anyLine, { maxLength: 40 }), (handshake, lines) => {
        const s = new DovecotSession({ maxRequests: 4 });
        let closed = false;
        let now = 0;
        for (const l of [...(handshake ? HANDSHAKE : []), ...lines]) {
          const outs = s.line(l, now++);
          if (closed) assert.deepEqual(outs, []);
          checkOutputs(outs);
          if (outs.some((o) => o.kind === 'close')) {
            closed = true;
            assert.equal(s.state, 'closed');
            assert.equal(outs.length, 1);
          }
          assert.ok(s.openRequests <= 4);
          for (const o of outs) {
            if (o.kind === 'request') {
              assert.equal(s.state, 'ready');
              assert.ok(o.request.id > 0);
              assert.ok(o.request.service.length > 0);
            }
          }
        }
      }),
      { numRuns: RUNS * 2 },
    );
  });

  test('never has more requests open than its bound, however many a client opens', () => {
    fc.assert(
      fc.property(fc.array(requestLine, { maxLength: 60 }), (lines) => {
        const s = new DovecotSession({ maxRequests: 4 });
        for (const l of HANDSHAKE) s.line(l, 0);
        for (const l of lines) {
          const outs = s.line(l, 0);
          assert.ok(s.openRequests <= 4, `${s.openRequests} open`);
          for (const o of outs) if (o.kind === 'refuse' && o.why === 'too-many-requests') assert.equal(s.openRequests, 4);
        }
      }),
      { numRuns: RUNS },
    );
  });

  test('PLAIN hands over exactly the bytes sent, refuses another authzid and a NUL in the password', () => {
    const noNul = fc.uint8Array({ maxLength: 30 }).map((a) => Buffer.from(a.map((b) => (b === 0 ? 1 : b))));
    fc.assert(
      fc.property(
        noNul,
        noNul,
        fc.uint8Array({ maxLength: 30 }),
        fc.constantFrom('same', 'empty', 'other'),
        fc.boolean(),
        (authcid, other, password, az, initial) => {
          const authzid = az === 'same' ? authcid : az === 'empty' ? Buffer.alloc(0) : other;
          const message = Buffer.concat([authzid, Buffer.of(0), authcid, Buffer.of(0), Buffer.from(password)]);
          const s = new DovecotSession({ maxRequests: 4 });
          for (const l of HANDSHAKE) s.line(l, 0);
          let outs = s.line(Buffer.from(`AUTH\t7\tPLAIN\tservice=smtp${initial ? `\tresp=${b64(message)}` : ''}`), 0);
          if (!initial) {
            assert.deepEqual(
              outs.map((o) => (o.kind === 'send' ? o.bytes.toString() : o.kind)),
              ['CONT\t7\t\n'],
            );
            outs = s.line(Buffer.from(`CONT\t7\t${b64(message)}`), 0);
          }
          assert.equal(outs.length, 1);
          const o = outs[0]!;
          const authzidOk = authzid.length === 0 || authzid.equals(authcid);
          const pwOk = !Buffer.from(password).includes(0);
          if (authzidOk && pwOk) {
            assert.equal(o.kind, 'request');
            if (o.kind === 'request') {
              assert.deepEqual(o.request.authcid, authcid);
              assert.deepEqual(o.request.password, Buffer.from(password));
            }
          } else {
            assert.equal(o.kind, 'refuse');
            if (o.kind === 'refuse') assert.equal(o.why, pwOk ? 'authzid' : 'malformed-plain');
          }
        },
      ),
      { numRuns: RUNS },
    );
  });

  test('LOGIN hands over the username and password up to their first NUL', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 30 }), fc.uint8Array({ maxLength: 30 }), (user, password) => {
        const s = new DovecotSession({ maxRequests: 4 });
        for (const l of HANDSHAKE) s.line(l, 0);
        s.line(Buffer.from('AUTH\t3\tLOGIN\tservice=smtp'), 0);
        s.line(Buffer.from(`CONT\t3\t${b64(user)}`), 0);
        const outs = s.line(Buffer.from(`CONT\t3\t${b64(password)}`), 0);
        const cut = (b: Uint8Array): Buffer => {
          const buf = Buffer.from(b);
          const nul = buf.indexOf(0);
          return nul < 0 ? buf : buf.subarray(0, nul);
        };
        assert.equal(outs.length, 1);
        const o = outs[0]!;
        assert.equal(o.kind, 'request');
        if (o.kind === 'request') {
          assert.deepEqual(o.request.authcid, cut(user));
          assert.deepEqual(o.request.password, cut(password));
        }
      }),
      { numRuns: RUNS },
    );
  });
});
