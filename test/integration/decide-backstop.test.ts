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
import { ListenerEvent, native, type NativeListener } from '../../src/native/binding';
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
