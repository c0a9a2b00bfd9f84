// The listener's backstop for a request JavaScript never answers. Every wait
// on the way to an answer has its own deadline (--auth-timeout, the
// throttle's holds, the shared store's deadline), so the backstop only
// catches a bug: the connection is closed unanswered, JavaScript is told
// (the daemon logs an error), and nothing is held. A native shadow check
// keeps its own deadline and is never cut by the backstop, however long its
// hash takes. The real listener on a real socket, with a real user's hash on
// the hashing pool; the backstop is sized from that hash's cost measured
// here, so the check always outlasts it, on any machine.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pino from 'pino';
import { ListenerEvent, native, type NativeListener } from '../../src/native/binding';
import { SaslauthdServer } from '../../src/server/server';
import { encodeReply } from '../../src/protocol/encoder';
import { rawExchange, reply, request } from '../helpers/frames';
import { hashCostMs } from '../helpers/cost';
import { createUser, removeAllUsers, shadowHash, userName, type TestUser } from '../helpers/users';

interface Event {
  kind: ListenerEvent;
  id: number;
  arg: unknown;
}

describe('the listener’s backstop for a request never answered', () => {
  let dir: string;
  let socketPath: string;
  let listener: NativeListener;
  let user: TestUser;
  let backstopMs: number;
  const events: Event[] = [];
  const ids = new Map<string, number>();

  before(async () => {
    user = createUser(userName('bk'), 'Backstop-pw-1', 'yescrypt');
    const cost = await hashCostMs(shadowHash(user.name), user.password, 5);
    // A quarter of the hash: a check always outlasts the backstop, several times over.
    backstopMs = Math.max(1, Math.floor(cost / 4));
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'backstop-'));
    socketPath = path.join(dir, 'mux');
    native.setFingerprintKey(crypto.randomBytes(32));
    listener = new native.Listener(
      (kind, id, arg) => {
        events.push({ kind, id, arg });
        if (kind !== ListenerEvent.Request) return;
        const login = arg as string;
        ids.set(login, id);
        if (login === 'quick') listener.reply(id, encodeReply('OK'));
        else if (login === user.name) void listener.checkShadow(id, user.name, 60_000, false, 0, 60_000, 0);
        // 'silent': never answered, as a bug would leave it.
      },
      5000,
      1000,
      64,
      backstopMs,
    );
    listener.open(native.bindUnixSocket(socketPath, 16));
  });

  after(() => {
    listener?.stopAccepting();
    listener?.destroyAll();
    removeAllUsers();
    if (dir !== undefined) fs.rmSync(dir, { recursive: true, force: true });
  });

  const ask = (login: string, password: string): ReturnType<typeof rawExchange> =>
    rawExchange(socketPath, [request({ login, password, service: 'smtp', realm: '' })], {
      closeAfterSend: true,
      // Not a speed bound: far past the backstop, so that a hang shows as one.
      timeoutMs: backstopMs + 30_000,
    });
  const overdue = (): Event[] => events.filter((e) => e.kind === ListenerEvent.Overdue);

  test('a request answered at once is answered, and never reported overdue', async () => {
    const r = await ask('quick', 'x');
    assert.deepEqual(r.bytes, reply('OK'));
    assert.equal(r.closedByServer, true);
    assert.deepEqual(overdue(), []);
  });

  test('a shadow check that outlasts the backstop is answered by the hashing thread, not cut', async () => {
    const r = await ask(user.name, user.password);
    assert.deepEqual(r.bytes, reply('OK'), `backstop ${backstopMs} ms`);
    const wrong = await ask(user.name, 'not-the-password');
    assert.match(wrong.bytes.subarray(2).toString(), /^NO/);
    assert.deepEqual(overdue(), []);
  });

  test('a request JavaScript never answers is closed unanswered and reported once', async () => {
    const r = await ask('silent', 'x');
    assert.equal(r.bytes.length, 0, `got ${r.bytes.toString('hex')}`);
    assert.equal(r.closedByServer, true);
    const id = ids.get('silent');
    assert.deepEqual(overdue(), [{ kind: ListenerEvent.Overdue, id, arg: backstopMs }]);
    // Nothing is held for it any more: a late answer finds no request.
    assert.equal(listener.reply(id!, encodeReply('OK')), false);
    assert.equal(listener.password(id!), undefined);
    assert.equal(listener.busy, 0);
  });
});

describe('the daemon’s side of the backstop', () => {
  test('a request its handler never answers is closed unanswered, with one error line naming the bug', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'backstop-'));
    const lines: Array<{ level: number; msg: string; timeoutMs?: number }> = [];
    const log = pino({ level: 'info' }, { write: (l: string) => void lines.push(JSON.parse(l) as (typeof lines)[0]) });
    native.setFingerprintKey(crypto.randomBytes(32));
    const server = new SaslauthdServer({
      socketPath: path.join(dir, 'mux'),
      readTimeoutMs: 5000,
      drainTimeoutMs: 1000,
      decideTimeoutMs: 50,
      maxConnections: 16,
      handle: () => undefined, // the bug: never answers
      pending: () => 0,
      release: () => undefined,
      log,
    });
    try {
      await server.listen();
      const r = await rawExchange(path.join(dir, 'mux'), [request({ login: 'u', password: 'p', service: 'smtp', realm: '' })], {
        closeAfterSend: true,
        timeoutMs: 30_000,
      });
      assert.equal(r.bytes.length, 0);
      assert.equal(r.closedByServer, true);
      const errors = lines.filter((l) => l.level === 50);
      assert.equal(errors.length, 1, JSON.stringify(lines));
      assert.equal(
        errors[0]?.msg,
        'request not answered within 50 ms; closed the connection unanswered (a bug in saslauthd-ts: please report it)',
      );
      assert.equal(server.inFlight, 0);
    } finally {
      await server.close(1000);
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
