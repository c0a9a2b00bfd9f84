// sd_notify through systemd-notify: a no-op outside systemd, the right
// assignments (and no --no-block, so systemd can attribute the message)
// under it, and a failure that is reported rather than thrown.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { notifyReady, notifyStopping, sdNotify } from '../../../src/server/systemd';

describe('systemd notification', () => {
  let dir: string;
  let fake: string;
  let record: string;

  before(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sdnotify-'));
    record = path.join(dir, 'calls');
    fake = path.join(dir, 'systemd-notify');
    fs.writeFileSync(fake, `#!/bin/sh\nprintf '%s|%s\\n' "$NOTIFY_SOCKET" "$*" >> '${record}'\n`, { mode: 0o755 });
  });
  after(() => {
    fs.rmSync(dir, { recursive: true, force: true });
  });

  test('does nothing when NOTIFY_SOCKET is not set', async () => {
    const r = await sdNotify(['READY=1'], { env: {}, command: fake });
    assert.deepEqual(r, { sent: false, reason: 'no-notify-socket' });
    assert.equal(fs.existsSync(record), false);
  });

  test('sends READY=1 and a status line, waiting for systemd to process them', async () => {
    const r = await notifyReady('listening on /x/mux', { env: { NOTIFY_SOCKET: '/run/n' }, command: fake });
    assert.deepEqual(r, { sent: true });
    assert.equal(fs.readFileSync(record, 'utf8'), '/run/n|READY=1 STATUS=listening on /x/mux\n');
  });

  test('sends STOPPING=1 on shutdown', async () => {
    fs.rmSync(record, { force: true });
    await notifyStopping('stopping on SIGTERM', { env: { NOTIFY_SOCKET: '@abstract' }, command: fake });
    assert.equal(fs.readFileSync(record, 'utf8'), '@abstract|STOPPING=1 STATUS=stopping on SIGTERM\n');
  });

  test('reports a failing systemd-notify instead of throwing', async () => {
    const r = await sdNotify(['READY=1'], { env: { NOTIFY_SOCKET: '/run/n' }, command: '/bin/false' });
    assert.equal(r.sent, false);
    assert.equal(r.sent === false && r.reason, 'failed');
  });
});
