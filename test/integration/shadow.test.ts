// The shadow mechanism against real system users, through Debian's real
// testsaslauthd and through our client (which shows the reason text).
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { startDaemon, type RunningDaemon } from '../helpers/daemon';
import { createUser, removeAllUsers, userName, setExpired, lock, runCmd, shadowHash } from '../helpers/users';
import { backlogFor, hashCostMs } from '../helpers/cost';
import { testsaslauthd, OK_LINE, NO_LINE } from '../helpers/testsaslauthd';
import { sendRequest } from '../../src/client/request';
import { native } from '../../src/native/binding';
import { rawExchange, request } from '../helpers/frames';

const PASSWORD = 'S3cret pass!';

describe('shadow mechanism', () => {
  let d: RunningDaemon;
  const ask = (login: string, password: string, realm = '', service = 'imap'): Promise<string> =>
    sendRequest(d.socketPath, { login, password, service, realm });

  before(async () => {
    d = await startDaemon({ args: ['-a', 'shadow'] });
  });
  after(async () => {
    removeAllUsers();
    await d?.stop();
  });

  const methods: Array<[string, string]> = [
    ['yescrypt', PASSWORD],
    ['gost-yescrypt', PASSWORD],
    ['scrypt', PASSWORD],
    ['bcrypt', PASSWORD],
    ['bcrypt-a', PASSWORD],
    ['sha512crypt', PASSWORD],
    ['sha256crypt', PASSWORD],
    ['md5crypt', PASSWORD],
    ['descrypt', 'Des3cr!t'], // DES uses 8 characters
  ];
  for (const [method, password] of methods) {
    test(`verifies a ${method} hash through the real testsaslauthd`, async () => {
      const u = createUser(userName(method.slice(0, 4)), password, method);
      const good = await testsaslauthd({ socket: d.socketPath, user: u.name, password });
      assert.equal(good.stdout, OK_LINE);
      assert.equal(good.code, 0);
      // Change the first character: DES only looks at the first eight.
      const wrong = `X${password.slice(1)}`;
      const bad = await testsaslauthd({ socket: d.socketPath, user: u.name, password: wrong });
      assert.equal(bad.stdout, NO_LINE);
      assert.equal(bad.code, 255);
      assert.equal(await ask(u.name, wrong), 'NO Incorrect password');
    });
  }

  test('verifies a password set by chpasswd (the system default method)', async () => {
    const u = createUser(userName('chp'), PASSWORD);
    assert.match(runCmd('getent', ['shadow', u.name]), /:\$y\$/);
    assert.equal(await ask(u.name, PASSWORD), 'OK');
  });

  test('answers NO Invalid username for an unknown user', async () => {
    assert.equal(await ask(userName('none'), PASSWORD), 'NO Invalid username');
    const r = await testsaslauthd({ socket: d.socketPath, user: userName('none'), password: PASSWORD });
    assert.equal(r.stdout, NO_LINE);
  });

  test('answers NO Account expired for chage -E 0, but only with the right password', async () => {
    const u = createUser(userName('exp'), PASSWORD);
    setExpired(u.name);
    assert.equal(await ask(u.name, PASSWORD), 'NO Account expired');
    assert.equal(await ask(u.name, 'wrong'), 'NO Incorrect password');
    const r = await testsaslauthd({ socket: d.socketPath, user: u.name, password: PASSWORD });
    assert.equal(r.stdout, NO_LINE);
  });

  test('answers NO Password expired when the password is past its maximum age', async () => {
    const u = createUser(userName('pex'), PASSWORD);
    runCmd('chage', ['-d', '2000-01-01', '-M', '30', u.name]);
    assert.equal(await ask(u.name, PASSWORD), 'NO Password expired');
  });

  test('refuses a locked account (passwd -l) as an incorrect password', async () => {
    const u = createUser(userName('lck'), PASSWORD);
    lock(u.name);
    assert.equal(await ask(u.name, PASSWORD), 'NO Incorrect password');
    const r = await testsaslauthd({ socket: d.socketPath, user: u.name, password: PASSWORD });
    assert.equal(r.stdout, NO_LINE);
  });

  test('refuses every password for an account with an empty hash', async () => {
    const u = createUser(userName('emp'), PASSWORD);
    runCmd('usermod', ['-p', '', u.name]);
    assert.equal(await ask(u.name, PASSWORD), 'NO Incorrect password');
    assert.equal(await ask(u.name, 'x'), 'NO Incorrect password');
  });

  test('ignores realm and service without -r', async () => {
    const u = createUser(userName('rlm'), PASSWORD);
    assert.equal(await ask(u.name, PASSWORD, 'example.org', 'smtp'), 'OK');
    const r = await testsaslauthd({ socket: d.socketPath, user: u.name, password: PASSWORD, realm: 'example.org' });
    assert.equal(r.stdout, OK_LINE);
  });

  test('a password with an embedded NUL is truncated there, as with the C daemon', async () => {
    const u = createUser(userName('nul'), PASSWORD);
    const answer = await sendRequest(d.socketPath, {
      login: u.name,
      password: Buffer.from(`${PASSWORD}\0junk`),
      service: 'imap',
      realm: '',
    });
    assert.equal(answer, 'OK');
  });

  test('verifies 8-bit passwords byte for byte', async () => {
    const pw = 'pässwörd-€';
    const u = createUser(userName('utf'), pw, 'sha512crypt');
    assert.equal(await ask(u.name, pw), 'OK');
    assert.equal(await ask(u.name, 'passwörd-€'), 'NO Incorrect password');
  });

  test('200 simultaneous connections for yescrypt users all get the right answer', async () => {
    const users = [0, 1, 2, 3].map((i) => createUser(userName(`cc${i}`), `${PASSWORD}${i}`));
    const jobs = Array.from({ length: 200 }, (_, i) => {
      const u = users[i % users.length]!;
      const right = i % 3 !== 0;
      return ask(u.name, right ? u.password : `${u.password}-wrong`).then((answer) => ({ right, answer }));
    });
    const results = await Promise.all(jobs);
    for (const r of results) assert.equal(r.answer, r.right ? 'OK' : 'NO Incorrect password');
  });
});

describe('shadow mechanism with -r', () => {
  let d: RunningDaemon;
  before(async () => {
    d = await startDaemon({ args: ['-a', 'shadow', '-r', '-V'] });
  });
  after(async () => {
    removeAllUsers();
    await d?.stop();
  });

  test('authenticates login@realm when a realm is sent, and the bare login when none is', async () => {
    const bare = userName('rj');
    const full = createUser(`${bare}@example.org`, PASSWORD);
    const plain = createUser(bare, 'other-password');
    const r = await testsaslauthd({ socket: d.socketPath, user: bare, password: PASSWORD, realm: 'example.org' });
    assert.equal(r.stdout, OK_LINE);
    await d.waitForLog(new RegExp(`auth success: \\[user=${full.name}\\] \\[service=imap\\] \\[realm=example.org\\]`));
    assert.equal(await sendRequest(d.socketPath, { login: bare, password: plain.password, service: 'imap', realm: '' }), 'OK');
    assert.equal(
      await sendRequest(d.socketPath, { login: bare, password: plain.password, service: 'imap', realm: 'example.org' }),
      'NO Incorrect password',
    );
  });
});

// Without a cache, shadow requests never reach JavaScript: the listener
// decodes, checks on the hashing pool and answers (src/native/listener.cc).
// The wire cases are in protocol.test.ts; these are the rest of its duties.
describe('shadow answered inside the native listener', () => {
  after(() => removeAllUsers());

  test('checks still queued at --auth-timeout are answered NO [ALERT] and logged, the rest OK', async () => {
    // Enough checks to keep every hashing thread busy for 3 s, sized from
    // what a hash costs on this machine: well past the 1 s deadline on a CPU
    // twice as fast or twice as slow, whatever the number of cores.
    const u = createUser(userName('dl'), PASSWORD, 'yescrypt');
    const n = backlogFor(await hashCostMs(shadowHash(u.name), PASSWORD), 3000);
    const d = await startDaemon({ args: ['-a', 'shadow', '--auth-timeout', '1'] });
    try {
      const answers = await Promise.all(
        Array.from({ length: n }, () =>
          sendRequest(d.socketPath, { login: u.name, password: PASSWORD, service: 'smtp', realm: '' }),
        ),
      );
      const ok = answers.filter((a) => a === 'OK').length;
      const late = answers.filter((a) => a === 'NO [ALERT] authentication backend timed out').length;
      assert.equal(ok + late, n, `every answer is OK or the timeout: ${[...new Set(answers)].join(' | ')}`);
      assert.ok(ok > 0 && late > 0, `${ok} OK, ${late} timed out`);
      await d.waitForLog(/auth failure: .* \[reason=backend did not answer within 1000 ms\]/);
      // The backlog is gone with its requests: the next check is answered at once.
      assert.equal(await sendRequest(d.socketPath, { login: u.name, password: PASSWORD, service: 'smtp', realm: '' }), 'OK');
    } finally {
      await d.stop();
    }
  });

  test('a client that leaves during its check still has the attempt logged', async () => {
    const u = createUser(userName('gone'), PASSWORD, 'yescrypt');
    const d = await startDaemon({ args: ['-a', 'shadow', '-V'] });
    try {
      const r = await rawExchange(d.socketPath, [request({ login: u.name, password: PASSWORD, service: 'smtp', realm: '' })], {
        destroyAfterSend: true,
      });
      assert.equal(r.bytes.length, 0);
      await d.waitForLog(new RegExp(`auth success: \\[user=${u.name}\\] \\[service=smtp\\]`));
      assert.equal(await sendRequest(d.socketPath, { login: u.name, password: PASSWORD, service: 'smtp', realm: '' }), 'OK');
    } finally {
      await d.stop();
    }
  });

  // Field 41 of a /proc stat file: the scheduling policy (0 other, 3 batch, 5 idle).
  const policyOf = (statPath: string): number => {
    const stat = fs.readFileSync(statPath, 'utf8');
    return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[38]);
  };
  const threads = (pid: number): Array<{ name: string; policy: number }> =>
    fs.readdirSync(`/proc/${pid}/task`).map((tid) => ({
      name: fs.readFileSync(`/proc/${pid}/task/${tid}/comm`, 'utf8').trim(),
      policy: policyOf(`/proc/${pid}/task/${tid}/stat`),
    }));
  const policies = (pid: number): number[] => threads(pid).map((t) => t.policy);

  test('the event loop and the hashing threads run SCHED_BATCH', async () => {
    const u = createUser(userName('sch'), PASSWORD, 'sha512crypt');
    const d = await startDaemon({ args: ['-a', 'shadow'] });
    try {
      assert.equal(await sendRequest(d.socketPath, { login: u.name, password: PASSWORD, service: 'smtp', realm: '' }), 'OK');
      const pid = d.child.pid!;
      assert.equal(policyOf(`/proc/${pid}/stat`), 3, 'the main thread (event loop) is SCHED_BATCH');
      const hashing = threads(pid).filter((t) => t.name === 'saslauthd-hash');
      assert.equal(hashing.length, native.hashThreads, 'one named hashing thread per CPU');
      assert.deepEqual(
        hashing.map((t) => t.policy),
        hashing.map(() => 3),
        'every hashing thread is SCHED_BATCH',
      );
    } finally {
      await d.stop();
    }
  });

  test('a scheduling policy set by the admin (chrt --idle) is kept', async () => {
    const d = await startDaemon({ args: ['-a', 'shadow'], prefix: ['chrt', '--idle', '0'] });
    try {
      const pid = d.child.pid!;
      assert.deepEqual([...new Set(policies(pid))], [5], 'every thread stays SCHED_IDLE');
    } finally {
      await d.stop();
    }
  });
});
