// The Dovecot door's server layer in-process, on a real UNIX socket, with
// the test as the authenticator: what each outcome puts on the wire, how a
// request reaches the authenticator (the user@realm split, the address, the
// fingerprint), the deadlines, the temporary-failure close, and the socket
// file it makes in a directory it does not own.
import { after, afterEach, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import { execFileSync } from 'node:child_process';
import os from 'node:os';
import path from 'node:path';
import pino from 'pino';
import { Fingerprinter } from '../../../src/auth/fingerprint';
import type { Exchange } from '../../../src/server/exchange';
import { DovecotServer } from '../../../src/server/dovecot/listener';
import { StartupError } from '../../../src/server/server';
import { userIds } from '../../../src/server/dovecot/socket-file';
import { DovecotAuthClient } from '../../helpers/dovecot-auth-client';

const KEY = crypto.randomBytes(32);

interface Door {
  server: DovecotServer;
  socketPath: string;
  /** Requests handed to the "authenticator", in arrival order. */
  got: Exchange[];
  /** Resolves with the next request handed over. */
  next(): Promise<Exchange>;
  logs: string[];
}

let dir: string;
const doors: Door[] = [];
const clients: DovecotAuthClient[] = [];

async function door(
  opts: {
    readTimeoutMs?: number;
    idleTimeoutMs?: number;
    continuationTimeoutMs?: number;
    answer?: (x: Exchange) => void;
    protocolErrors?: string[];
  } = {},
): Promise<Door> {
  const socketPath = path.join(dir, `door${doors.length}`);
  const logs: string[] = [];
  const log = pino({ level: 'debug' }, { write: (s: string) => logs.push(s) });
  const got: Exchange[] = [];
  const waiters: Array<(x: Exchange) => void> = [];
  const server = new DovecotServer({
    socketPath,
    readTimeoutMs: opts.readTimeoutMs ?? 5000,
    maxConnections: 64,
    fingerprintKey: KEY,
    idleTimeoutMs: opts.idleTimeoutMs,
    continuationTimeoutMs: opts.continuationTimeoutMs,
    onProtocolError: opts.protocolErrors === undefined ? undefined : (reason) => opts.protocolErrors?.push(reason),
    handle: (x) => {
      got.push(x);
      waiters.shift()?.(x);
      opts.answer?.(x);
    },
    log,
  });
  await server.listen();
  const d: Door = {
    server,
    socketPath,
    got,
    logs,
    next: () => new Promise((resolve) => waiters.push(resolve)),
  };
  doors.push(d);
  return d;
}

async function client(d: Door): Promise<DovecotAuthClient> {
  const c = await DovecotAuthClient.connect(d.socketPath);
  clients.push(c);
  return c;
}

async function rawClient(d: Door): Promise<DovecotAuthClient> {
  const c = await DovecotAuthClient.connect(d.socketPath, { raw: true });
  clients.push(c);
  return c;
}

const b64 = (s: string | Buffer): string => Buffer.from(s).toString('base64');

before(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'door-'));
});

afterEach(async () => {
  for (const c of clients.splice(0)) c.destroy();
  for (const d of doors.splice(0)) await d.server.close(0);
});

after(() => {
  fs.rmSync(dir, { recursive: true, force: true });
});

describe('answers', () => {
  test('each request is answered as soon as it is decided, not in the order asked', async () => {
    const d = await door();
    const c = await client(d);
    const first = c.plain('one', 'pw1');
    const x1 = await d.next();
    const second = c.plain('two', 'pw2');
    const x2 = await d.next();
    x2.answer('OK', 'ok');
    const r2 = await second;
    assert.equal(r2.kind, 'OK');
    assert.equal(x1.isAnswered, false);
    x1.answer('NO Incorrect password', 'denied');
    assert.equal((await first).kind, 'FAIL');
  });

  test('OK names the user as typed; a refusal is FAIL with user= and one reason for every cause', async () => {
    const d = await door({
      answer: (x) => x.answer(x.login === 'ok' ? 'OK' : 'NO Invalid username', x.login === 'ok' ? 'ok' : 'denied'),
    });
    const c = await client(d);
    assert.equal((await c.plain('ok@example.org', 'pw')).line, 'OK\t1\tuser=ok@example.org');
    assert.equal((await c.plain('nobody', 'pw')).line, 'FAIL\t2\tuser=nobody\treason=authentication failure');
  });

  test('a shed or throttled request is a plain FAIL, never a temporary failure', async () => {
    const d = await door({ answer: (x) => x.answer('NO Incorrect password', 'shed') });
    const c = await client(d);
    const r = await c.plain('bob', 'pw');
    assert.equal(r.kind, 'FAIL');
    assert.deepEqual(r.flags, []);
    assert.equal(c.isClosed, false);
  });

  for (const kind of ['unavailable', 'timeout'] as const) {
    test(`${kind}: no FAIL line; the other request in flight is still answered; then the connection closes`, async () => {
      const d = await door();
      const c = await client(d);
      const held = c.plain('held', 'pw');
      const xHeld = await d.next();
      const down = c.plain('down', 'pw');
      const xDown = await d.next();
      assert.equal(xDown.answer('NO [ALERT] authentication backend timed out', kind), true);
      // The connection stops reading: a request sent now is never decided.
      const late = c.plain('late', 'pw');
      xHeld.answer('OK', 'ok');
      assert.equal((await held).kind, 'OK');
      assert.equal((await down).kind, 'closed');
      assert.equal((await late).kind, 'closed');
      await c.closed;
      assert.deepEqual(
        d.got.map((x) => x.login),
        ['held', 'down'],
      );
    });
  }

  test('a request the client cancels is abandoned: its answer goes nowhere', async () => {
    const d = await door();
    const c = await client(d);
    void c.plain('bob', 'pw', { id: 9 });
    const x = await d.next();
    c.send('CANCEL\t9\n');
    const after = c.plain('carol', 'pw', { id: 10 });
    const y = await d.next();
    assert.equal(x.isAnswered, true);
    assert.equal(x.answer('OK', 'ok'), false);
    y.answer('OK', 'ok');
    assert.equal((await after).line, 'OK\t10\tuser=carol');
    assert.equal(await c.nextLine(200), undefined);
  });

  test('a client that leaves before its answer: the answer goes nowhere and the connection is closed', async () => {
    const d = await door();
    const c = await client(d);
    void c.plain('gone', 'pw');
    const x = await d.next();
    c.destroy();
    await c.closed;
    // A UNIX socket tells a client that left from one that half-closed only
    // when the answer is written.
    x.answer('OK', 'ok');
    await waitFor(() => d.server.connectionCount === 0);
  });

  test('a client that half-closes after its request still gets the answer', async () => {
    const d = await door();
    const c = await client(d);
    const r = c.plain('half', 'pw');
    const x = await d.next();
    c.end();
    x.answer('OK', 'ok');
    assert.equal((await r).kind, 'OK');
    await c.closed;
    await waitFor(() => d.server.connectionCount === 0);
  });
});

describe('what reaches the authenticator', () => {
  test('user@realm is split at the last @, after trimming white space, as libsasl does before the mux', async () => {
    const d = await door({ answer: (x) => x.answer('OK', 'ok') });
    const c = await client(d);
    await c.plain(' a@b@example.org\t', 'pw', { rip: '192.0.2.7', service: 'submission' });
    const x = d.got[0]!;
    assert.equal(x.login, 'a@b');
    assert.equal(x.realm, 'example.org');
    assert.equal(x.service, 'submission');
    assert.equal(x.clientAddr, '192.0.2.7');
    await c.plain('plain', 'pw');
    assert.equal(d.got[1]!.realm, '');
    assert.equal(d.got[1]!.clientAddr, undefined);
  });

  test("the fingerprint is the mux listener's, over the split login and realm", async () => {
    const d = await door();
    const c = await client(d);
    void c.plain('bob@example.org', 'Secret');
    const x = await d.next();
    assert.deepEqual(x.fingerprint, new Fingerprinter(KEY).of('bob', 'example.org', Buffer.from('Secret')));
    assert.equal(x.fp, x.fingerprint.readUInt32BE(0));
  });

  test('password() hands out copies until the answer, then none', async () => {
    const d = await door();
    const c = await client(d);
    void c.login('bob', 'Secret');
    const x = await d.next();
    const copy = x.password();
    assert.equal(copy?.toString(), 'Secret');
    copy?.fill(0);
    assert.equal(x.password()?.toString(), 'Secret');
    x.answer('OK', 'ok');
    assert.equal(x.password(), undefined);
  });

  for (const [name, user, password, reason] of [
    ['an empty login', '', 'pw', 'NULL login received'],
    ['a login that is only a realm', '@example.org', 'pw', 'NULL login received'],
    ['an empty password', 'bob', '', 'NULL password received'],
    ['a login over 256 bytes', 'x'.repeat(257), 'pw', 'login exceeded MAX_REQ_LEN'],
    ['a realm over 256 bytes', `bob@${'r'.repeat(257)}`, 'pw', 'realm exceeded MAX_REQ_LEN'],
    ['a password over 256 bytes', 'bob', 'p'.repeat(257), 'password exceeded MAX_REQ_LEN'],
  ] as const) {
    test(`${name} is refused at the door, as the mux listener refuses it, and logged`, async () => {
      const d = await door();
      const c = await client(d);
      const r = await c.plain(user, password);
      assert.equal(r.kind, 'FAIL');
      assert.equal(r.params.reason, 'authentication failure');
      assert.equal(d.got.length, 0);
      await waitFor(() => d.logs.some((l) => l.includes(reason)));
    });
  }

  test('a 256-byte login, realm and password are accepted', async () => {
    const d = await door({ answer: (x) => x.answer('OK', 'ok') });
    const c = await client(d);
    const r = await c.plain(`${'l'.repeat(256)}@${'r'.repeat(256)}`, 'p'.repeat(256));
    assert.equal(r.kind, 'OK');
  });
});

describe('deadlines and limits', () => {
  test('a client that never completes the handshake is closed at the read timeout, with a log line', async () => {
    const d = await door({ readTimeoutMs: 200 });
    const c = await rawClient(d);
    c.send('VERSION\t1\t0\n');
    await c.closed;
    await waitFor(() => d.logs.some((l) => l.includes('handshake not completed within the read timeout')));
  });

  test('a line that does not complete within the read timeout closes the connection', async () => {
    const d = await door({ readTimeoutMs: 300 });
    const c = await client(d);
    c.send('AUTH\t1\tPLAIN\tservice=smtp\tresp=');
    await c.closed;
    await waitFor(() => d.logs.some((l) => l.includes('line not received within the read timeout')));
  });

  test('a line over 8192 bytes closes the connection, with a log line', async () => {
    const d = await door();
    const c = await client(d);
    c.send(`AUTH\t1\tPLAIN\tservice=smtp\tresp=${'A'.repeat(9000)}\n`);
    await c.closed;
    await waitFor(() => d.logs.some((l) => l.includes('line longer than 8192 bytes')));
  });

  test('an unknown command closes the connection, with a log line', async () => {
    const d = await door();
    const c = await client(d);
    c.send('EHLO\tthere\n');
    await c.closed;
    await waitFor(() => d.logs.some((l) => l.includes('unknown command \\"EHLO\\"')));
  });

  test('a request left waiting for its continuation is forgotten; a late CONT gets the timed-out FAIL', async () => {
    const d = await door({ continuationTimeoutMs: 200 });
    const c = await client(d);
    c.send('AUTH\t4\tLOGIN\tservice=smtp\n');
    assert.equal(await c.nextLine(), `CONT\t4\t${b64('Username:')}`);
    await new Promise((r) => setTimeout(r, 400));
    const r = await c.request(4, `CONT\t4\t${b64('bob')}`);
    assert.equal(r.line, 'FAIL\t4\treason=Authentication request timed out');
  });

  test('an idle connection is closed', async () => {
    const d = await door({ idleTimeoutMs: 200 });
    const c = await client(d);
    await c.closed;
  });

  test('a connection waiting for its answer is not idle', async () => {
    const d = await door({ idleTimeoutMs: 200 });
    const c = await client(d);
    const r = c.plain('bob', 'pw');
    const x = await d.next();
    await new Promise((res) => setTimeout(res, 500));
    assert.equal(c.isClosed, false);
    x.answer('OK', 'ok');
    assert.equal((await r).kind, 'OK');
  });

  test('close() ends every connection and the requests still being decided go nowhere', async () => {
    const d = await door();
    const c = await client(d);
    void c.plain('bob', 'pw');
    const x = await d.next();
    await d.server.close(50);
    await c.closed;
    assert.equal(x.answer('OK', 'ok'), false);
    assert.equal(fs.existsSync(d.socketPath), false);
    doors.splice(doors.indexOf(d), 1);
  });
});

describe('metrics', () => {
  test("input that never became a request is counted with the mux listener's reasons", async () => {
    const reasons: string[] = [];
    const d = await door({ readTimeoutMs: 300, protocolErrors: reasons });
    const c = await client(d);
    await c.plain('', 'pw');
    await c.plain('bob', '');
    await c.plain('x'.repeat(300), 'pw');
    assert.deepEqual(reasons, ['null_login', 'null_password', 'oversize']);
    c.send(`AUTH\t9\tPLAIN\tservice=smtp\tresp=${'A'.repeat(9000)}\n`);
    await c.closed;
    const silent = await rawClient(d);
    await silent.closed;
    const leaving = await client(d);
    leaving.send('AUTH\t1\tPLAIN');
    await new Promise((r) => setTimeout(r, 50));
    leaving.end();
    await leaving.closed;
    await waitFor(() => reasons.length === 6);
    assert.deepEqual(reasons.slice(3).sort(), ['incomplete', 'oversize', 'read_timeout']);
  });
});

describe('the socket file', () => {
  test('is postfix:postfix 0660, and the directory it is in is left as it was', async () => {
    const sub = fs.mkdtempSync(path.join(dir, 'private-'));
    fs.chmodSync(sub, 0o700);
    const before = fs.statSync(sub);
    const socketPath = path.join(sub, 'saslauthd-ts');
    const server = new DovecotServer({
      socketPath,
      readTimeoutMs: 1000,
      maxConnections: 4,
      fingerprintKey: KEY,
      handle: () => undefined,
      log: pino({ level: 'silent' }),
    });
    await server.listen();
    try {
      const st = fs.statSync(socketPath);
      const ids = userIds('postfix');
      assert.ok(ids !== undefined, 'no postfix user on this machine');
      assert.equal(st.mode & 0o7777, 0o660);
      assert.equal(st.uid, ids.uid);
      assert.equal(st.gid, ids.gid);
      const now = fs.statSync(sub);
      assert.equal(now.mode, before.mode);
      assert.equal(now.uid, before.uid);
      assert.equal(now.gid, before.gid);
    } finally {
      await server.close(0);
    }
    assert.equal(fs.existsSync(socketPath), false);
  });

  test('a missing directory is never created: the start fails naming --dovecot-socket', async () => {
    const socketPath = path.join(dir, 'no-such-dir', 'saslauthd-ts');
    const server = new DovecotServer({
      socketPath,
      readTimeoutMs: 1000,
      maxConnections: 4,
      fingerprintKey: KEY,
      handle: () => undefined,
      log: pino({ level: 'silent' }),
    });
    await assert.rejects(
      server.listen(),
      (err: unknown) => err instanceof StartupError && /--dovecot-socket .*does not exist/.test(err.message),
    );
    assert.equal(fs.existsSync(path.dirname(socketPath)), false);
    await server.close(0);
  });

  test('a file that is not a socket is never removed: the start fails', async () => {
    const socketPath = path.join(dir, 'regular');
    fs.writeFileSync(socketPath, 'keep me');
    const server = new DovecotServer({
      socketPath,
      readTimeoutMs: 1000,
      maxConnections: 4,
      fingerprintKey: KEY,
      handle: () => undefined,
      log: pino({ level: 'silent' }),
    });
    await assert.rejects(server.listen(), /exists and is not a socket/);
    assert.equal(fs.readFileSync(socketPath, 'utf8'), 'keep me');
    await server.close(0);
  });

  test('a live socket is never taken over; a stale one is replaced', async () => {
    const d = await door();
    const again = new DovecotServer({
      socketPath: d.socketPath,
      readTimeoutMs: 1000,
      maxConnections: 4,
      fingerprintKey: KEY,
      handle: () => undefined,
      log: pino({ level: 'silent' }),
    });
    await assert.rejects(again.listen(), (err: unknown) => err instanceof StartupError && err.code === 'EADDRINUSE');
    await again.close(0);

    // A process that exits without removing its socket file, as a crash does.
    const stalePath = path.join(dir, 'stale');
    execFileSync(process.execPath, [
      '-e',
      `require('net').createServer().listen(${JSON.stringify(stalePath)}, () => process.exit(0))`,
    ]);
    assert.ok(fs.lstatSync(stalePath).isSocket());
    const fresh = new DovecotServer({
      socketPath: stalePath,
      readTimeoutMs: 1000,
      maxConnections: 4,
      fingerprintKey: KEY,
      handle: () => undefined,
      log: pino({ level: 'silent' }),
    });
    await fresh.listen();
    await fresh.close(0);
  });

  test('close() leaves alone a file that replaced its socket', async () => {
    const d = await door();
    fs.unlinkSync(d.socketPath);
    fs.writeFileSync(d.socketPath, 'not ours');
    await d.server.close(0);
    doors.splice(doors.indexOf(d), 1);
    assert.equal(fs.readFileSync(d.socketPath, 'utf8'), 'not ours');
  });
});

async function waitFor(cond: () => boolean, timeoutMs = 5000): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > until) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 10));
  }
}
