// sd_notify through systemd-notify: a no-op outside systemd, the right
// assignments (and no --no-block, so systemd can attribute the message)
// under it, and a failure that is reported rather than thrown.
import { describe, test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { notifyReady, notifyStopping, sdNotify } from '../../../src/server/systemd';

describe('systemd notification', () => {
  /**
   * A fake systemd-notify in a fresh directory for one test: it appends
   * "$NOTIFY_SOCKET|$*" to a record file of that test alone, so no test
   * sees another's calls.
   */
  const fakeNotify = (t: TestContext): { command: string; record: string } => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sdnotify-'));
    t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
    const record = path.join(dir, 'calls');
    const command = path.join(dir, 'systemd-notify');
    fs.writeFileSync(command, `#!/bin/sh\nprintf '%s|%s\\n' "$NOTIFY_SOCKET" "$*" >> '${record}'\n`, { mode: 0o755 });
    return { command, record };
  };

  test('does nothing when NOTIFY_SOCKET is not set', async (t) => {
    const { command, record } = fakeNotify(t);
    const r = await sdNotify(['READY=1'], { env: {}, command });
    assert.deepEqual(r, { sent: false, reason: 'no-notify-socket' });
    assert.equal(fs.existsSync(record), false);
  });

  test('sends READY=1 and a status line, waiting for systemd to process them', async (t) => {
    const { command, record } = fakeNotify(t);
    const r = await notifyReady('listening on /x/mux', { env: { NOTIFY_SOCKET: '/run/n' }, command });
    assert.deepEqual(r, { sent: true });
    assert.equal(fs.readFileSync(record, 'utf8'), '/run/n|READY=1 STATUS=listening on /x/mux\n');
  });

  test('sends STOPPING=1 on shutdown', async (t) => {
    const { command, record } = fakeNotify(t);
    await notifyStopping('stopping on SIGTERM', { env: { NOTIFY_SOCKET: '@abstract' }, command });
    assert.equal(fs.readFileSync(record, 'utf8'), '@abstract|STOPPING=1 STATUS=stopping on SIGTERM\n');
  });

  test('reports a failing systemd-notify instead of throwing', async () => {
    const r = await sdNotify(['READY=1'], { env: { NOTIFY_SOCKET: '/run/n' }, command: '/bin/false' });
    assert.equal(r.sent, false);
    assert.equal(r.sent === false && r.reason, 'failed');
  });
});
