// The credential cache (-c -t) against real users and the shadow mechanism.
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { startDaemon } from '../helpers/daemon';
import { createUser, removeAllUsers, runCmd, userName } from '../helpers/users';
import { sendRequest } from '../../src/client/request';

after(() => removeAllUsers());

test('-c keeps Cyrus semantics: an old password answers OK until the TTL, a new one replaces it', async () => {
  const u = createUser(userName('cac'), 'Old-pass1');
  const d = await startDaemon({ args: ['-a', 'shadow', '-c', '-t', '6', '-V'] });
  const ask = (password: string): Promise<string> =>
    sendRequest(d.socketPath, { login: u.name, password, service: 'smtp', realm: '' });
  try {
    assert.equal(await ask('Old-pass1'), 'OK');
    runCmd('chpasswd', [], `${u.name}:New-pass2\n`);
    assert.equal(await ask('Old-pass1'), 'OK', 'served from the cache');
    await d.waitForLog(/auth success \(cached\): \[user=/);
    assert.equal(await ask('Wrong-pass'), 'NO Incorrect password', 'a different password goes to the backend');
    assert.equal(await ask('New-pass2'), 'OK');
    assert.equal(await ask('Old-pass1'), 'NO Incorrect password', 'the new success replaced the entry');
    await new Promise((r) => setTimeout(r, 6200));
    runCmd('chpasswd', [], `${u.name}:Third-pass3\n`);
    assert.equal(await ask('New-pass2'), 'NO Incorrect password', 'expired after -t seconds');
  } finally {
    await d.stop();
  }
});

test('SIGHUP empties the cache', async () => {
  const u = createUser(userName('hup'), 'Old-pass1');
  const d = await startDaemon({ args: ['-a', 'shadow', '-c'] });
  const ask = (password: string): Promise<string> =>
    sendRequest(d.socketPath, { login: u.name, password, service: 'smtp', realm: '' });
  try {
    assert.equal(await ask('Old-pass1'), 'OK');
    runCmd('chpasswd', [], `${u.name}:New-pass2\n`);
    assert.equal(await ask('Old-pass1'), 'OK');
    d.child.kill('SIGHUP');
    await d.waitForLog(/SIGHUP/);
    assert.equal(await ask('Old-pass1'), 'NO Incorrect password');
  } finally {
    await d.stop();
  }
});

test('a success is in the cache before it is answered: the very next request with the replaced password is refused', async () => {
  // Cyrus commits, then answers. Answered first (by the hashing thread) and
  // committed after, a quick next request would still meet the old entry.
  const u = createUser(userName('cor'), 'Pass-0', 'sha512crypt');
  const d = await startDaemon({ args: ['-a', 'shadow', '-c'] });
  const ask = (password: string): Promise<string> =>
    sendRequest(d.socketPath, { login: u.name, password, service: 'smtp', realm: '' });
  try {
    assert.equal(await ask('Pass-0'), 'OK');
    for (let i = 1; i <= 15; i++) {
      runCmd('chpasswd', ['-c', 'SHA512'], `${u.name}:Pass-${i}\n`);
      assert.equal(await ask(`Pass-${i}`), 'OK');
      assert.equal(await ask(`Pass-${i - 1}`), 'NO Incorrect password', `round ${i}: the replaced password`);
    }
  } finally {
    await d.stop();
  }
});
