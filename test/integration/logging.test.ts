// Passwords never reach the log, at any level, whatever the outcome.
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { startDaemon } from '../helpers/daemon';
import { createUser, removeAllUsers, userName } from '../helpers/users';
import { rawExchange, request, field, lengthOnly } from '../helpers/frames';
import { sendRequest } from '../../src/client/request';
import { testsaslauthd } from '../helpers/testsaslauthd';

after(() => removeAllUsers());

test('a -d (debug) run logs every attempt but never a password', async () => {
  const secret = 'Zq7-leak-canary-1';
  const wrong = 'Zq7-leak-canary-2';
  const u = createUser(userName('log'), secret);
  const d = await startDaemon({ args: ['-a', 'shadow', '-r'], mode: '-d' });
  try {
    assert.equal(await sendRequest(d.socketPath, { login: u.name, password: secret, service: 'smtp', realm: '' }), 'OK');
    await sendRequest(d.socketPath, { login: u.name, password: wrong, service: 'smtp', realm: '' });
    await sendRequest(d.socketPath, { login: 'no-such-user', password: secret, service: 'smtp', realm: 'x.org' });
    await testsaslauthd({ socket: d.socketPath, user: u.name, password: wrong });
    await rawExchange(d.socketPath, [Buffer.concat([field(u.name), field(secret), lengthOnly(300)])], {
      closeAfterSend: true,
    });
    await rawExchange(d.socketPath, [request({ login: u.name, password: secret, service: '', realm: '' }).subarray(0, 12)], {
      closeAfterSend: true,
    });
    await d.waitForLog(/client closed before the request was complete/);
  } finally {
    await d.stop();
  }
  const out = d.output();
  assert.match(out, /"level":20/, 'debug lines were written');
  assert.match(out, /auth success: \[user=/);
  assert.match(out, /auth failure: .*\[reason=Incorrect password\]/);
  for (const s of [secret, wrong, 'leak-canary']) assert.equal(out.includes(s), false, `log contains ${s}`);
});

// Cyrus logs successes only with -V (facts file, section 5); failures always.
for (const [path, extra] of [
  ['native listener', []],
  ['JavaScript path (-c)', ['-c']],
] as const) {
  test(`without -V successes are not logged, failures are (${path})`, async () => {
    const u = createUser(userName('quiet'), 'Quiet-pw1', 'sha512crypt');
    const d = await startDaemon({ args: ['-a', 'shadow', ...extra] });
    try {
      const ask = (password: string): Promise<string> =>
        sendRequest(d.socketPath, { login: u.name, password, service: 'smtp', realm: '' });
      assert.equal(await ask('Quiet-pw1'), 'OK');
      assert.equal(await ask('Quiet-pw1'), 'OK');
      assert.equal(await ask('Quiet-pw2'), 'NO Incorrect password');
      await d.waitForLog(new RegExp(`auth failure: \\[user=${u.name}\\]`));
    } finally {
      await d.stop();
    }
    assert.doesNotMatch(d.output(), /auth success/);
  });
}
