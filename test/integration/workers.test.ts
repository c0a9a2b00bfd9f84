// --workers N: several processes accepting on one socket (node:cluster),
// sharing the credential cache, supervised by a primary.
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { startDaemon, DAEMON_BIN, type RunningDaemon } from '../helpers/daemon';
import { createUser, removeAllUsers, runCmd, userName } from '../helpers/users';
import { runTool, testsaslauthd, OK_LINE } from '../helpers/testsaslauthd';
import { sendRequest } from '../../src/client/request';
import { childPids } from '../helpers/procs';

after(() => removeAllUsers());

interface AuthLine {
  pid: number;
  msg: string;
}

/** The auth result lines logged for user, in order, with the pid of the worker that logged each. */
function authLines(output: string, user: string): AuthLine[] {
  return output
    .split('\n')
    .filter((l) => l.startsWith('{') && l.includes('"msg":"auth ') && l.includes(`[user=${user}]`))
    .map((l) => JSON.parse(l) as AuthLine);
}

/** Two workers, and a login cooling off after 4 wrong passwords, with short delays (every failure line logged). */
const QUICK_COOLOFF = [
  '--workers',
  '2',
  '--throttle-free',
  '2',
  '--throttle-refuse',
  '4',
  '--throttle-delay',
  '20',
  '--throttle-max-delay',
  '40',
  '--log-failures-per-login',
  '100000',
];

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Waits until cond holds; the bound only guards against a hang, far above any wait seen. */
async function until(cond: () => boolean | Promise<boolean>, what: string, output: () => string): Promise<void> {
  const end = Date.now() + 30_000;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`still waiting for ${what} after 30 s:\n${output()}`);
    await sleep(20);
  }
}

test('--workers 2 runs two worker processes on one socket, and SIGTERM removes everything', async () => {
  const u = createUser(userName('wk'), 'Work-pw1', 'sha512crypt');
  const d = await startDaemon({ args: ['-a', 'shadow', '-V', '--workers', '2'] });
  await d.waitForLog(/listening on socket: .* \(2 worker processes\)/);
  assert.equal(childPids(d.child.pid!).length, 2);
  const r = await testsaslauthd({ socket: d.socketPath, user: u.name, password: u.password });
  assert.equal(r.stdout, OK_LINE);
  const answers = await Promise.all(
    Array.from({ length: 60 }, () =>
      sendRequest(d.socketPath, { login: u.name, password: u.password, service: 'smtp', realm: '' }),
    ),
  );
  assert.ok(answers.every((a) => a === 'OK'));
  await d.waitForLog(/auth success/);
  const workers = childPids(d.child.pid!);
  assert.equal(await d.stop(), 0);
  assert.equal(fs.existsSync(d.socketPath), false);
  for (const pid of workers) assert.equal(fs.existsSync(`/proc/${pid}`), false, `worker ${pid} gone`);
});

/**
 * Old-pass1 succeeds through one worker (checked against /etc/shadow), then
 * the password changes and that worker is stopped: the other can only answer
 * the old password OK from the entry the first one replicated to it.
 * Replication is asynchronous, so until the entry arrives the other worker
 * checks /etc/shadow and answers NO (normal cache mode keeps no negative
 * entries and forgets nothing on a NO, so this spoils nothing); the test's
 * timeout bounds the wait. Returns the pids: [first, other].
 */
async function replicateThroughOneWorker(
  d: RunningDaemon,
  user: string,
  ask: (password: string) => Promise<string>,
): Promise<[number, number]> {
  const workers = childPids(d.child.pid!);
  assert.equal(workers.length, 2);
  assert.equal(await ask('Old-pass1'), 'OK');
  await until(() => authLines(d.output(), user).length === 1, 'the first success line', d.output);
  const [first] = authLines(d.output(), user);
  assert.match(first!.msg, /^auth success: /, 'the first success was checked, not cached');
  const other = workers.find((p) => p !== first!.pid)!;
  runCmd('chpasswd', [], `${user}:New-pass2\n`);
  process.kill(first!.pid, 'SIGSTOP');
  try {
    await until(async () => (await ask('Old-pass1')) === 'OK', 'the replicated entry', d.output);
  } finally {
    process.kill(first!.pid, 'SIGCONT');
  }
  return [first!.pid, other];
}

test('a success through one worker is answered from the cache by another that never checked that password', async () => {
  const u = createUser(userName('wc'), 'Old-pass1', 'sha512crypt');
  // -V: cache hits are logged ("auth success (cached)"), with the worker's pid.
  const d = await startDaemon({ args: ['-a', 'shadow', '-V', '-c', '--workers', '2'] });
  const ask = (password: string): Promise<string> =>
    sendRequest(d.socketPath, { login: u.name, password, service: 'smtp', realm: '' });
  try {
    await d.waitForLog(/\(2 worker processes\)/);
    const [first, other] = await replicateThroughOneWorker(d, u.name, ask);
    await until(
      () => authLines(d.output(), u.name).some((l) => l.pid === other && l.msg.startsWith('auth success')),
      'the cached success line',
      d.output,
    );
    const byOther = authLines(d.output(), u.name).filter((l) => l.pid === other);
    const successes = byOther.filter((l) => l.msg.startsWith('auth success'));
    assert.equal(successes.length, 1, JSON.stringify(byOther));
    assert.match(successes[0]!.msg, /^auth success \(cached\): /, `worker ${other} answered from its cache`);
    // Whatever the other worker checked itself was the changed password: NO.
    for (const l of byOther) if (l !== successes[0]) assert.match(l.msg, /^auth failure: /);
    assert.ok(authLines(d.output(), u.name).every((l) => l.pid === first || l.pid === other));
  } finally {
    await d.stop();
  }
});

test('SIGHUP to the primary empties the credential cache in every worker', async () => {
  const u = createUser(userName('wh'), 'Old-pass1', 'sha512crypt');
  const d = await startDaemon({ args: ['-a', 'shadow', '-V', '-c', '--workers', '2'] });
  const ask = (password: string): Promise<string> =>
    sendRequest(d.socketPath, { login: u.name, password, service: 'smtp', realm: '' });
  try {
    await d.waitForLog(/\(2 worker processes\)/);
    // Both workers now hold Old-pass1, which /etc/shadow no longer accepts.
    const workers = await replicateThroughOneWorker(d, u.name, ask);
    const from = d.output().length;
    d.child.kill('SIGHUP');
    const reloaded = (): Set<number> =>
      new Set(
        d
          .output()
          .slice(from)
          .split('\n')
          .filter((l) => l.startsWith('{') && l.includes('"msg":"SIGHUP: '))
          .map((l) => (JSON.parse(l) as { pid: number }).pid),
      );
    await until(() => reloaded().size === 2, 'both workers to reload', d.output);
    // Each worker in turn, the other stopped: neither has the old password any more.
    for (const [asked, stopped] of [workers, [...workers].reverse()] as Array<[number, number]>) {
      const mark = authLines(d.output(), u.name).length;
      process.kill(stopped, 'SIGSTOP');
      try {
        assert.equal(await ask('Old-pass1'), 'NO Incorrect password', `worker ${asked}`);
      } finally {
        process.kill(stopped, 'SIGCONT');
      }
      await until(() => authLines(d.output(), u.name).length > mark, 'the failure line', d.output);
      assert.equal(authLines(d.output(), u.name)[mark]!.pid, asked);
    }
  } finally {
    await d.stop();
  }
});

test('workers count a guesser together: past 20 wrong passwords on any of them, all refuse', async () => {
  const u = createUser(userName('wt'), 'Work-pw4', 'sha512crypt');
  const d = await startDaemon({
    args: [
      '-a',
      'shadow',
      '--workers',
      '2',
      '--throttle-delay',
      '20',
      '--throttle-max-delay',
      '40',
      '--throttle-cooloff',
      '60',
      '--log-failures-per-login',
      '100000',
      '--log-failures-per-second',
      '100000',
    ],
  });
  try {
    await d.waitForLog(/\(2 worker processes\)/);
    for (let i = 0; i < 40; i++) {
      assert.equal(
        await sendRequest(d.socketPath, { login: u.name, password: `guess-${i}`, service: 'smtp', realm: '' }),
        'NO Incorrect password',
      );
    }
    const lines = (): string[] =>
      d
        .output()
        .split('\n')
        .filter((l) => l.includes(`"user":"${u.name}"`) && l.includes('auth failure'));
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

test('what one worker learns while another is still starting reaches that one too: the known-good password passes a cool-off on both', async () => {
  const u = createUser(userName('wl'), 'Work-pw5', 'sha512crypt');
  const d = await startDaemon({
    args: ['-a', 'shadow', '-V', ...QUICK_COOLOFF],
  });
  const ask = (password: string): Promise<string> =>
    sendRequest(d.socketPath, { login: u.name, password, service: 'smtp', realm: '' });
  let late: number | undefined;
  try {
    // The primary binds the socket before it forks: hold the second worker
    // as soon as it exists, in the middle of its start.
    for (let i = 0; i < 30_000 && childPids(d.child.pid!).length < 2; i++) await sleep(1);
    late = Math.max(...childPids(d.child.pid!));
    process.kill(late, 'SIGSTOP');
    assert.equal(await ask(u.password), 'OK', 'answered by the worker that started');
    await until(() => authLines(d.output(), u.name).some((l) => l.msg.startsWith('auth success')), 'its line', d.output);
    assert.doesNotMatch(d.output(), /listening on socket/, 'the held worker had not finished starting');
    process.kill(late, 'SIGCONT');
    await d.waitForLog(/\(2 worker processes\)/, 30_000);
    // A guesser puts the login in a cool-off, on both workers.
    const guesses: string[] = [];
    for (let i = 0; i < 8; i++) guesses.push(await ask(`guess-${i}`));
    assert.ok(guesses.every((g) => g === 'NO Incorrect password'));
    await until(() => d.output().includes('is cooling off'), 'the cool-off', d.output);
    // The known-good password passes on both, the late worker included.
    let fromLate = 0;
    for (let i = 0; i < 200 && fromLate < 3; i++) {
      assert.equal(await ask(u.password), 'OK', `attempt ${i}`);
      await until(
        () => authLines(d.output(), u.name).filter((l) => l.msg.startsWith('auth success')).length >= i + 2,
        'its line',
        d.output,
      );
      fromLate = authLines(d.output(), u.name).filter((l) => l.pid === late && l.msg.startsWith('auth success')).length;
    }
    assert.ok(fromLate >= 3, `the late worker answered ${fromLate} of them`);
  } finally {
    if (late !== undefined) process.kill(late, 'SIGCONT');
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

test("a worker restarted after a crash takes over a live worker's cache and throttle state", async () => {
  const u = createUser(userName('wc'), 'Work-pw6', 'sha512crypt');
  const d = await startDaemon({
    args: ['-a', 'shadow', '-c', '-V', ...QUICK_COOLOFF],
  });
  const ask = (password: string): Promise<string> =>
    sendRequest(d.socketPath, { login: u.name, password, service: 'smtp', realm: '' });
  try {
    await d.waitForLog(/\(2 worker processes\)/);
    assert.equal(await ask(u.password), 'OK');
    for (let i = 0; i < 8; i++) assert.equal(await ask(`guess-${i}`), 'NO Incorrect password');
    await until(() => d.output().includes('is cooling off'), 'the cool-off', d.output);
    const [victim] = childPids(d.child.pid!);
    process.kill(victim!, 'SIGKILL');
    await d.waitForLog(new RegExp(`worker ${victim} died .*restarting it`));
    const line = await d.waitForLog(/took over \d+ cache entries and the throttle's state from a live worker/, 30_000);
    const fresh = (JSON.parse(line) as { pid: number }).pid;
    assert.notEqual(fresh, victim);
    assert.match(line, /took over 1 cache entries/);
    // Until both answered a few: the restarted one refuses a new guess
    // unchecked (the cool-off came over) and answers the right password from
    // the cache (so did the entry).
    const mine = (re: RegExp): number =>
      d
        .output()
        .split('\n')
        .filter((l) => l.includes(`"pid":${fresh},`) && l.includes(`[user=${u.name}]`) && re.test(l)).length;
    for (let i = 0; i < 200 && (mine(/"result":"refused"/) < 2 || mine(/auth success \(cached\)/) < 2); i++) {
      assert.equal(await ask(`later-guess-${i}`), 'NO Incorrect password');
      assert.equal(await ask(u.password), 'OK');
      await sleep(20);
    }
    assert.ok(mine(/"result":"refused"/) >= 2, 'the restarted worker refused guesses without checking them');
    assert.equal(mine(/"result":"denied"/), 0, 'and checked none');
    assert.ok(mine(/auth success \(cached\)/) >= 2, 'the restarted worker answered from the cache it took over');
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
