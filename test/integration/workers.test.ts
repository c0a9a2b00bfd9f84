// --workers N: several processes accepting on one socket (node:cluster),
// sharing the credential cache, supervised by a primary.
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { startDaemon, DAEMON_BIN } from '../helpers/daemon';
import { createUser, removeAllUsers, runCmd, userName } from '../helpers/users';
import { runTool, testsaslauthd, OK_LINE } from '../helpers/testsaslauthd';
import { sendRequest } from '../../src/client/request';
import { childPids } from '../helpers/procs';

after(() => removeAllUsers());

/** pids of the processes that logged a success for this user so far. */
function successPids(output: string, user: string): Set<number> {
  const pids = new Set<number>();
  for (const line of output.split('\n')) {
    if (line.includes(`auth success`) && line.includes(`[user=${user}]`)) pids.add(Number(/"pid":(\d+)/.exec(line)?.[1]));
  }
  return pids;
}

test('--workers 2 runs two worker processes on one socket, and SIGTERM removes everything', async () => {
  const u = createUser(userName('wk'), 'Work-pw1', 'sha512crypt');
  const d = await startDaemon({ args: ['-a', 'shadow', '-V', '--workers', '2'] });
  await d.waitForLog(/listening on socket: .* \(2 worker processes\)/);
  assert.equal(childPids(d.child.pid!).length, 2);
  const r = await testsaslauthd({ socket: d.socketPath, user: u.name, password: u.password });
  assert.equal(r.stdout, OK_LINE);
  const answers = await Promise.all(
    Array.from({ length: 60 }, () => sendRequest(d.socketPath, { login: u.name, password: u.password, service: 'smtp', realm: '' })),
  );
  assert.ok(answers.every((a) => a === 'OK'));
  await d.waitForLog(/auth success/);
  const workers = childPids(d.child.pid!);
  assert.equal(await d.stop(), 0);
  assert.equal(fs.existsSync(d.socketPath), false);
  for (const pid of workers) assert.equal(fs.existsSync(`/proc/${pid}`), false, `worker ${pid} gone`);
});

test('workers share the credential cache, and SIGHUP to the primary empties it in every worker', async () => {
  const u = createUser(userName('wc'), 'Old-pass1', 'sha512crypt');
  const d = await startDaemon({ args: ['-a', 'shadow', '-V', '-c', '--workers', '2'] });
  const ask = (password: string): Promise<string> =>
    sendRequest(d.socketPath, { login: u.name, password, service: 'smtp', realm: '' });
  try {
    await d.waitForLog(/\(2 worker processes\)/);
    // Until both workers have answered this user once, every success is in both caches.
    for (let i = 0; i < 400 && successPids(d.output(), u.name).size < 2; i++) {
      assert.equal(await ask('Old-pass1'), 'OK');
      if (i % 20 === 19) await new Promise((r) => setTimeout(r, 100)); // let the log catch up
    }
    assert.equal(successPids(d.output(), u.name).size, 2, 'both workers answered');
    runCmd('chpasswd', [], `${u.name}:New-pass2\n`);
    const cached = await Promise.all(Array.from({ length: 40 }, () => ask('Old-pass1')));
    assert.deepEqual(new Set(cached), new Set(['OK']), 'every worker answers the old password from the cache');
    d.child.kill('SIGHUP');
    await d.waitForLog(/SIGHUP/);
    for (let i = 0; i < 50 && (d.output().match(/SIGHUP: mechanism shadow/g) ?? []).length < 2; i++) {
      await new Promise((r) => setTimeout(r, 100));
    }
    const after = await Promise.all(Array.from({ length: 20 }, () => ask('Old-pass1')));
    assert.deepEqual(new Set(after), new Set(['NO Incorrect password']));
  } finally {
    await d.stop();
  }
});

test('workers count a guesser together: past 20 wrong passwords on any of them, all refuse', async () => {
  const u = createUser(userName('wt'), 'Work-pw4', 'sha512crypt');
  const d = await startDaemon({
    args: [
      '-a', 'shadow', '--workers', '2',
      '--throttle-delay', '20', '--throttle-max-delay', '40', '--throttle-cooloff', '60',
      '--log-failures-per-login', '100000', '--log-failures-per-second', '100000',
    ],
  });
  try {
    await d.waitForLog(/\(2 worker processes\)/);
    for (let i = 0; i < 40; i++) {
      assert.equal(await sendRequest(d.socketPath, { login: u.name, password: `guess-${i}`, service: 'smtp', realm: '' }), 'NO Incorrect password');
    }
    const lines = (): string[] => d.output().split('\n').filter((l) => l.includes(`"user":"${u.name}"`) && l.includes('auth failure'));
    for (let i = 0; i < 100 && lines().length < 40; i++) await new Promise((r) => setTimeout(r, 50));
    const pids = new Set(lines().map((l) => (JSON.parse(l) as { pid: number }).pid));
    assert.equal(pids.size, 2, 'both workers answered some');
    // Counted apart, each worker would let 20 through: 40 in all.
    assert.equal(lines().filter((l) => l.includes('"result":"denied"')).length, 20);
    assert.equal(lines().filter((l) => l.includes('"result":"refused"')).length, 20);
  } finally {
    await d.stop();
  }
});

test('a worker that dies is replaced, and the socket keeps answering', async () => {
  const u = createUser(userName('wr'), 'Work-pw3', 'sha512crypt');
  const d = await startDaemon({ args: ['-a', 'shadow', '-V', '--workers', '2'] });
  try {
    await d.waitForLog(/\(2 worker processes\)/);
    const [victim] = childPids(d.child.pid!);
    process.kill(victim!, 'SIGKILL');
    await d.waitForLog(new RegExp(`worker ${victim} died .*restarting it`));
    for (let i = 0; i < 20; i++) {
      assert.equal(await sendRequest(d.socketPath, { login: u.name, password: u.password, service: '', realm: '' }), 'OK');
    }
    for (let i = 0; i < 50 && childPids(d.child.pid!).length < 2; i++) await new Promise((r) => setTimeout(r, 100));
    assert.equal(childPids(d.child.pid!).length, 2);
  } finally {
    await d.stop();
  }
});

test('a startup error in the workers is reported by the primary with its exit status', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'saslauthd-ts-workers-'));
  try {
    const r = await runTool(process.execPath, [DAEMON_BIN, '-f', '-a', 'rimap', '--workers', '2', '-m', dir]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /failed to initialize mechanism rimap/);
    assert.equal(fs.existsSync(path.join(dir, 'mux')), false);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
