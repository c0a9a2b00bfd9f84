// The Dovecot door's protocol state machine, case by case: the handshake as
// Postfix's xsasl_dovecot_server.c needs it, PLAIN and LOGIN as Dovecot's
// mech-plain.c and mech-login.c read them, and what closes the connection
// (a violation) against what fails one request.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { MECHANISMS } from '../../../src/protocol/dovecot/sasl';
import { DovecotSession, type SessionOutput } from '../../../src/protocol/dovecot/session';
import { failLine, handshake, okLine } from '../../../src/protocol/dovecot/wire';

const b64 = (s: string | Buffer): string => Buffer.from(s).toString('base64');
const plain = (authzid: string, authcid: string, pw: string): string => b64(`${authzid}\0${authcid}\0${pw}`);

/** A session past the handshake (client protocol 1.minor). */
function ready(minor = 0, maxRequests = 8): DovecotSession {
  const s = new DovecotSession({ maxRequests });
  assert.deepEqual(s.line(Buffer.from(`VERSION\t1\t${minor}`), 0), []);
  assert.deepEqual(s.line(Buffer.from('CPID\t4242'), 0), []);
  assert.equal(s.state, 'ready');
  return s;
}

/** Outputs as text: sent/refused lines, 'request <id> <authcid> <password>', 'drop <id>', 'close <why>'. */
function show(outs: SessionOutput[]): string[] {
  return outs.map((o) => {
    switch (o.kind) {
      case 'send':
      case 'refuse':
        return o.bytes.toString('latin1').replace(/\n$/, '');
      case 'request':
        return `request ${o.request.id} ${o.request.authcid.toString('latin1')} ${o.request.password.toString('latin1')}`;
      case 'drop':
        return `drop ${o.id}`;
      case 'close':
        return `close ${o.why}`;
    }
  });
}

const say = (s: DovecotSession, line: string, now = 0): string[] => show(s.line(Buffer.from(line, 'latin1'), now));

describe('the server handshake', () => {
  test('announces PLAIN and LOGIN as plaintext, with the MECH lines before SPID and CUID, and ends with DONE', () => {
    const lines = handshake(MECHANISMS, 123, 7, 'ab'.repeat(16)).toString().split('\n');
    assert.deepEqual(lines, [
      'VERSION\t1\t2',
      'MECH\tPLAIN\tplaintext',
      'MECH\tLOGIN\tplaintext',
      'SPID\t123',
      'CUID\t7',
      `COOKIE\t${'ab'.repeat(16)}`,
      'DONE',
      '',
    ]);
  });
});

describe('the client handshake', () => {
  test('VERSION 1.x then CPID make the session ready', () => {
    ready();
  });

  test('a first line other than VERSION closes the connection', () => {
    const s = new DovecotSession({ maxRequests: 8 });
    assert.deepEqual(say(s, `AUTH\t1\tPLAIN\tservice=smtp\tresp=${plain('', 'a', 'b')}`), ['close bad-version-line']);
    assert.equal(s.state, 'closed');
    assert.deepEqual(say(s, 'VERSION\t1\t0'), []);
  });

  test('another major version closes the connection', () => {
    const s = new DovecotSession({ maxRequests: 8 });
    assert.deepEqual(say(s, 'VERSION\t2\t0'), ['close version-mismatch']);
  });

  test('AUTH before CPID closes the connection', () => {
    const s = new DovecotSession({ maxRequests: 8 });
    say(s, 'VERSION\t1\t0');
    assert.deepEqual(say(s, `AUTH\t1\tPLAIN\tservice=smtp`), ['close handshake-order']);
  });

  test('VERSION again after the handshake closes the connection', () => {
    assert.deepEqual(say(ready(), 'VERSION\t1\t0'), ['close handshake-order']);
  });
});

describe('requests', () => {
  test('AUTH PLAIN with an initial response is complete at once', () => {
    const s = ready();
    assert.deepEqual(
      say(s, `AUTH\t1\tPLAIN\tservice=smtp\tnologin\tlip=127.0.0.1\trip=192.0.2.9\tsecured\tresp=${plain('', 'bob', 'pw')}`),
      ['request 1 bob pw'],
    );
    assert.equal(s.deciding, 1);
  });

  test('the request carries service, rip (TAB-unescaped) and secured', () => {
    const outs = ready().line(Buffer.from(`AUTH\t1\tplain\tservice=smtp\trip=a\x01tb\tsecured\tresp=${plain('', 'u', 'p')}`), 0);
    const r = outs[0];
    assert.equal(r?.kind, 'request');
    if (r?.kind === 'request') {
      assert.equal(r.request.mech, 'PLAIN');
      assert.equal(r.request.service, 'smtp');
      assert.equal(r.request.rip, 'a\tb');
      assert.equal(r.request.secured, true);
    }
  });

  test('an empty rip is no address', () => {
    const r = ready().line(Buffer.from(`AUTH\t1\tPLAIN\tservice=smtp\trip=\tresp=${plain('', 'u', 'p')}`), 0)[0];
    assert.equal(r?.kind === 'request' ? r.request.rip : 'x', undefined);
  });

  test('parameters after resp= are ignored, so data pasted into it cannot add any', () => {
    const r = ready().line(
      Buffer.from(`AUTH\t1\tPLAIN\tservice=smtp\tresp=${plain('', 'u', 'p')}\tservice=evil\trip=6.6.6.6`),
      0,
    )[0];
    assert.equal(r?.kind, 'request');
    if (r?.kind === 'request') {
      assert.equal(r.request.service, 'smtp');
      assert.equal(r.request.rip, undefined);
    }
  });

  test('AUTH PLAIN without an initial response asks for it with an empty CONT', () => {
    const s = ready();
    assert.deepEqual(say(s, 'AUTH\t5\tPLAIN\tservice=smtp'), ['CONT\t5\t']);
    assert.deepEqual(say(s, `CONT\t5\t${plain('', 'bob', 'pw')}`), ['request 5 bob pw']);
  });

  test('an empty resp= means "none" from a protocol 1.0 client (Exim, Postfix) and "empty" from 1.2', () => {
    assert.deepEqual(say(ready(0), 'AUTH\t1\tPLAIN\tservice=smtp\tresp='), ['CONT\t1\t']);
    assert.deepEqual(say(ready(2), 'AUTH\t1\tPLAIN\tservice=smtp\tresp='), ['FAIL\t1\treason=Invalid PLAIN message']);
    assert.deepEqual(say(ready(0), 'AUTH\t1\tPLAIN\tservice=smtp\tresp=='), ['FAIL\t1\treason=Invalid PLAIN message']);
  });

  test('AUTH LOGIN asks for the username, then the password', () => {
    const s = ready();
    assert.deepEqual(say(s, 'AUTH\t2\tLOGIN\tservice=smtp'), [`CONT\t2\t${b64('Username:')}`]);
    assert.deepEqual(say(s, `CONT\t2\t${b64('bob')}`), [`CONT\t2\t${b64('Password:')}`]);
    assert.deepEqual(say(s, `CONT\t2\t${b64('pw')}`), ['request 2 bob pw']);
  });

  test('AUTH LOGIN with an initial response takes it as the username', () => {
    const s = ready();
    assert.deepEqual(say(s, `AUTH\t2\tLOGIN\tservice=smtp\tresp=${b64('bob')}`), [`CONT\t2\t${b64('Password:')}`]);
    assert.deepEqual(say(s, `CONT\t2\t${b64('pw')}`), ['request 2 bob pw']);
  });

  test('PLAIN with an authzid equal to the authcid is accepted', () => {
    assert.deepEqual(say(ready(), `AUTH\t1\tPLAIN\tservice=smtp\tresp=${plain('bob', 'bob', 'pw')}`), ['request 1 bob pw']);
  });

  test('PLAIN with another authzid is refused before any password is checked', () => {
    const s = ready();
    assert.deepEqual(say(s, `AUTH\t1\tPLAIN\tservice=smtp\tresp=${plain('root', 'bob', 'pw')}`), [
      'FAIL\t1\treason=Authorization identity differs from authentication identity',
    ]);
    assert.equal(s.openRequests, 0);
  });

  test('PLAIN without exactly two NULs is refused', () => {
    assert.deepEqual(say(ready(), `AUTH\t1\tPLAIN\tservice=smtp\tresp=${b64('bob\0pw')}`), [
      'FAIL\t1\treason=Invalid PLAIN message',
    ]);
    assert.deepEqual(say(ready(), `AUTH\t1\tPLAIN\tservice=smtp\tresp=${b64('\0bob\0p\0w')}`), [
      'FAIL\t1\treason=Invalid PLAIN message',
    ]);
  });

  test('invalid base64 fails the request with code invalid_base64, in AUTH and in CONT', () => {
    assert.deepEqual(say(ready(), 'AUTH\t1\tPLAIN\tservice=smtp\tresp=not*base64'), [
      'FAIL\t1\tcode=invalid_base64\treason=Invalid base64 data',
    ]);
    const s = ready();
    say(s, 'AUTH\t2\tLOGIN\tservice=smtp');
    assert.deepEqual(say(s, 'CONT\t2\t@@@@'), ['FAIL\t2\tcode=invalid_base64\treason=Invalid base64 data']);
    assert.equal(s.openRequests, 0);
  });

  test('an unsupported mechanism fails the request, and the connection goes on', () => {
    const s = ready();
    assert.deepEqual(say(s, 'AUTH\t1\tCRAM-MD5\tservice=smtp'), [
      'FAIL\t1\tcode=auth_mech_invalid\treason=Unsupported authentication mechanism',
    ]);
    assert.deepEqual(say(s, `AUTH\t2\tPLAIN\tservice=smtp\tresp=${plain('', 'u', 'p')}`), ['request 2 u p']);
  });

  test('a request without service= fails', () => {
    assert.deepEqual(say(ready(), `AUTH\t1\tPLAIN\tresp=${plain('', 'u', 'p')}`), [
      'FAIL\t1\treason=Authentication request has no service',
    ]);
  });

  test('past the bound on open requests, a new AUTH fails', () => {
    const s = ready(0, 2);
    say(s, 'AUTH\t1\tLOGIN\tservice=smtp');
    say(s, `AUTH\t2\tPLAIN\tservice=smtp\tresp=${plain('', 'u', 'p')}`);
    assert.deepEqual(say(s, 'AUTH\t3\tLOGIN\tservice=smtp'), ['FAIL\t3\treason=Too many authentication requests in progress']);
    s.done(2);
    assert.deepEqual(say(s, 'AUTH\t3\tLOGIN\tservice=smtp'), [`CONT\t3\t${b64('Username:')}`]);
  });

  test('an id still open closes the connection; one that is done may be used again', () => {
    const s = ready();
    say(s, `AUTH\t1\tPLAIN\tservice=smtp\tresp=${plain('', 'u', 'p')}`);
    s.done(1);
    assert.deepEqual(say(s, `AUTH\t1\tPLAIN\tservice=smtp\tresp=${plain('', 'u', 'p')}`), ['request 1 u p']);
    assert.deepEqual(say(s, 'AUTH\t1\tLOGIN\tservice=smtp'), ['close duplicate-id']);
  });

  test('malformed commands close the connection', () => {
    for (const line of [
      'AUTH\t0\tPLAIN\tservice=smtp',
      'AUTH\t1',
      'AUTH\tx\tPLAIN',
      'AUTH\t99999999999\tPLAIN',
      'CONT\t1',
      'CANCEL',
      'CANCEL\tx',
    ]) {
      assert.deepEqual(say(ready(), line), ['close malformed-command'], line);
    }
  });

  test('an unknown command closes the connection', () => {
    assert.deepEqual(say(ready(), 'REQUEST\t1\t2\t3'), ['close unknown-command']);
    assert.deepEqual(say(ready(), ''), ['close unknown-command']);
  });

  test('CONT for an unknown id gets the FAIL Dovecot sends for a request that timed out', () => {
    assert.deepEqual(say(ready(), `CONT\t9\t${b64('x')}`), ['FAIL\t9\treason=Authentication request timed out']);
  });

  test('CONT for a request being decided drops it and fails it', () => {
    const s = ready();
    say(s, `AUTH\t1\tPLAIN\tservice=smtp\tresp=${plain('', 'u', 'p')}`);
    assert.deepEqual(say(s, `CONT\t1\t${b64('x')}`), ['drop 1', 'FAIL\t1\treason=Unexpected continuation']);
    assert.equal(s.openRequests, 0);
  });

  test('CANCEL drops a request being decided, forgets one waiting, and ignores an unknown id', () => {
    const s = ready();
    say(s, `AUTH\t1\tPLAIN\tservice=smtp\tresp=${plain('', 'u', 'p')}`);
    say(s, 'AUTH\t2\tLOGIN\tservice=smtp');
    assert.deepEqual(say(s, 'CANCEL\t1'), ['drop 1']);
    assert.deepEqual(say(s, 'CANCEL\t2'), []);
    assert.deepEqual(say(s, 'CANCEL\t3'), []);
    assert.equal(s.openRequests, 0);
  });

  test('expire forgets requests waiting for the client since before the bound, never one being decided', () => {
    const s = ready();
    say(s, 'AUTH\t1\tLOGIN\tservice=smtp', 100);
    say(s, `AUTH\t2\tPLAIN\tservice=smtp\tresp=${plain('', 'u', 'p')}`, 100);
    say(s, 'AUTH\t3\tPLAIN\tservice=smtp', 500);
    assert.equal(s.oldestWait, 100);
    assert.deepEqual(s.expire(200), [1]);
    assert.equal(s.oldestWait, 500);
    assert.equal(s.openRequests, 2);
  });

  test("LOGIN's wait starts again at each step", () => {
    const s = ready();
    say(s, 'AUTH\t1\tLOGIN\tservice=smtp', 100);
    say(s, `CONT\t1\t${b64('bob')}`, 400);
    assert.deepEqual(s.expire(300), []);
    assert.deepEqual(s.expire(401), [1]);
  });
});

describe('answers', () => {
  test('OK and FAIL escape TAB, CR, LF and \\x01 in the user name', () => {
    assert.equal(okLine(3, 'a\tb\nc').toString('latin1'), 'OK\t3\tuser=a\x01tb\x01nc\n');
    assert.equal(failLine(4, { user: 'x\ry\x01', reason: 'no' }).toString('latin1'), 'FAIL\t4\tuser=x\x01ry\x011\treason=no\n');
  });
});
