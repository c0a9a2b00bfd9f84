// The brute-force throttle against the real mechanisms: real users checked
// through /etc/shadow, PAM with a pam_exec module that records every call,
// and slapd logging every bind. Whether an attempt reached the mechanism is
// proved by the mechanism's own record, not by our counters. Delays are
// shrunk by flags so the bursts take seconds; only lower bounds of time are
// asserted (a timer never fires early).
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { sendRequest } from '../../src/client/request';
import { startDaemon, type RunningDaemon } from '../helpers/daemon';
import { createUser, removeAllUsers, runCmd, userName, type TestUser } from '../helpers/users';
import { cleanupPam, installService, rhostRecorder, serviceName } from '../helpers/pam';
import { bindsAs, startSlapd, USERS, type Slapd } from '../helpers/slapd';
import { serviceConf, startLdapDaemon } from '../helpers/ldap';

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/**
 * Small delays, so a burst of 50 goes through every threshold in seconds;
 * the default thresholds (5 free, 20 before refusals) and a cool-off that
 * outlasts any burst here.
 */
const FAST = [
  '--throttle-free',
  '5',
  '--throttle-refuse',
  '20',
  '--throttle-delay',
  '40',
  '--throttle-max-delay',
  '80',
  '--throttle-window',
  '60',
  '--throttle-cooloff',
  '60',
  // Every attempt's own line, to count them: none folded into summaries.
  '--log-failures-per-login',
  '100000',
  '--log-failures-per-second',
  '100000',
];

function ask(socket: string, login: string, password: string, service = 'smtp'): Promise<string> {
  return sendRequest(socket, { login, password, service, realm: '' });
}

async function timed(p: Promise<string>): Promise<{ answer: string; ms: number }> {
  const t = performance.now();
  const answer = await p;
  return { answer, ms: performance.now() - t };
}

/** The daemon's JSON result lines for a user. */
function results(d: RunningDaemon, user: string): Array<{ result: string; reason?: string }> {
  return d
    .output()
    .split('\n')
    .filter((l) => l.startsWith('{') && l.includes('"msg":"auth ') && l.includes(`"user":"${user}"`))
    .map((l) => JSON.parse(l) as { result: string; reason?: string });
}

const count = (d: RunningDaemon, re: RegExp): number =>
  d
    .output()
    .split('\n')
    .filter((l) => re.test(l)).length;

/**
 * Waits until the daemon has written the lines for every attempt so far (it
 * batches its log writes), then returns them.
 */
async function settledResults(
  d: RunningDaemon,
  user: string,
  total: number,
): Promise<Array<{ result: string; reason?: string }>> {
  for (let i = 0; i < 100 && results(d, user).length < total; i++) await sleep(50);
  return results(d, user);
}

describe('throttle with the shadow mechanism', () => {
  let d: RunningDaemon;
  let victim: TestUser;
  let bystander: TestUser;
  before(async () => {
    victim = createUser(userName('tv'), 'Victim-pw-1', 'sha512crypt');
    bystander = createUser(userName('tb'), 'Bystander-pw-1', 'sha512crypt');
    d = await startDaemon({ args: ['-a', 'shadow', ...FAST] });
  });
  after(async () => {
    await d?.stop();
    removeAllUsers();
  });

  test('a burst of 50 wrong passwords: the first 5 answered, later ones delayed, past 20 refused unchecked', async () => {
    const answers: Array<{ answer: string; ms: number }> = [];
    for (let i = 0; i < 50; i++) answers.push(await timed(ask(d.socketPath, victim.name, `guess-${i}`)));
    assert.deepEqual(
      new Set(answers.map((a) => a.answer)),
      new Set(['NO Incorrect password']),
      'the mechanism’s own text, always',
    );
    const late = answers.slice(5).filter((a) => a.ms < 38);
    assert.equal(
      late.length,
      0,
      `every failure past the 5th waited its delay: ${answers.map((a) => Math.round(a.ms)).join(' ')}\n${d.output().split('\n').slice(0, 40).join('\n')}`,
    );
    const lines = await settledResults(d, victim.name, 50);
    assert.equal(lines.filter((l) => l.result === 'denied').length, 20, 'twenty reached the mechanism');
    assert.equal(lines.filter((l) => l.result === 'refused').length, 30, 'the rest were refused without it');
    assert.equal(
      count(d, new RegExp(`throttle: login \\[user=${victim.name}\\].*enters a penalty`)),
      1,
      'one line on entering the penalty',
    );
    assert.equal(
      count(d, new RegExp(`throttle: login \\[user=${victim.name}\\].*enters a cool-off`)),
      1,
      'one line on entering the cool-off',
    );
  });

  test('during the attack another user logs in, and the victim’s known-good password answers before held refusals', async () => {
    const login = userName('tk');
    const u = createUser(login, 'Known-good-1', 'sha512crypt');
    const slow = await startDaemon({
      args: ['-a', 'shadow', ...FAST, '--throttle-delay', '3000', '--throttle-max-delay', '3000'],
    });
    try {
      assert.equal(await ask(slow.socketPath, u.name, u.password), 'OK', 'logged in once: known-good from now on');
      for (let i = 0; i < 6; i++) await ask(slow.socketPath, u.name, `guess-${i}`).catch(() => undefined);
      const order: string[] = [];
      const held = ask(slow.socketPath, u.name, 'guess-held').then((a) => order.push(`held:${a}`));
      await sleep(50);
      const good = ask(slow.socketPath, u.name, u.password).then((a) => order.push(`good:${a}`));
      const other = ask(slow.socketPath, bystander.name, bystander.password).then((a) => order.push(`other:${a}`));
      await Promise.all([held, good, other]);
      assert.deepEqual(order.slice(0, 2).sort(), ['good:OK', 'other:OK'], order.join(' '));
      assert.equal(order[2], 'held:NO Incorrect password');
    } finally {
      await slow.stop();
    }
  });

  test('after the window and the cool-off, a right password that is not known-good works again', async () => {
    const u = createUser(userName('tw'), 'Before-1', 'sha512crypt');
    const short = await startDaemon({ args: ['-a', 'shadow', ...FAST, '--throttle-window', '2', '--throttle-cooloff', '2'] });
    try {
      for (let i = 0; i < 25; i++) await ask(short.socketPath, u.name, `guess-${i}`);
      // A new password, so it cannot be known-good: refused while cooling off...
      runCmd('chpasswd', ['-c', 'SHA512'], `${u.name}:After-2\n`);
      assert.equal(await ask(short.socketPath, u.name, 'After-2'), 'NO Incorrect password');
      assert.equal((await settledResults(short, u.name, 26)).at(-1)?.result, 'refused');
      // ...and accepted once the window and the cool-off are over.
      await sleep(2500);
      assert.equal(await ask(short.socketPath, u.name, 'After-2'), 'OK');
    } finally {
      await short.stop();
    }
  });

  test('the same wrong password repeated 50 times does not escalate', async () => {
    const u = createUser(userName('tr'), 'Right-1', 'sha512crypt');
    for (let i = 0; i < 50; i++) assert.equal(await ask(d.socketPath, u.name, 'an-old-password'), 'NO Incorrect password');
    const lines = await settledResults(d, u.name, 50);
    assert.equal(lines.filter((l) => l.result === 'denied').length, 50, 'all fifty reached the mechanism');
    assert.equal(count(d, new RegExp(`throttle: login \\[user=${u.name}\\]`)), 0, 'no penalty');
    assert.equal(await ask(d.socketPath, u.name, 'Right-1'), 'OK');
  });
});

describe('throttle with PAM', () => {
  let d: RunningDaemon;
  let service: string;
  let calls: string;
  let user: TestUser;
  before(async () => {
    user = createUser(userName('tp'), 'Pam-pw-1');
    const rec = rhostRecorder();
    calls = rec.outFile;
    // pam_faildelay keeps PAM's own fail delay short; pam_exec records every call.
    service = installService(serviceName('thr'), [
      rec.line,
      'auth optional pam_faildelay.so delay=100000',
      'auth required pam_unix.so nodelay',
      'account required pam_unix.so',
    ]);
    d = await startDaemon({ args: ['-a', 'pam', ...FAST] });
  });
  after(async () => {
    await d?.stop();
    cleanupPam();
    removeAllUsers();
  });

  const pamCalls = (): number =>
    fs.existsSync(calls)
      ? fs
          .readFileSync(calls, 'utf8')
          .split('\n')
          .filter((l) => l.includes(`|${user.name}|`)).length
      : 0;

  test('a burst of 50 wrong passwords reaches PAM about 20 times; the rest are refused without it', async () => {
    // Ten at a time, as guessers with several connections do.
    const answers: string[] = [];
    let next = 0;
    const worker = async (): Promise<void> => {
      while (next < 50) {
        const i = next++;
        answers.push(await ask(d.socketPath, user.name, `guess-${i}`, service));
      }
    };
    await Promise.all(Array.from({ length: 10 }, worker));
    assert.equal(answers.length, 50);
    assert.deepEqual(new Set(answers), new Set(['NO PAM auth error']));
    const reached = pamCalls();
    // Twenty failures, plus those already being checked when the twentieth was counted.
    assert.ok(reached >= 20 && reached < 30, `PAM was asked ${reached} times`);
    assert.equal((await settledResults(d, user.name, 50)).filter((l) => l.result === 'refused').length, 50 - reached);
  });

  test('the known-good password still goes to PAM and answers OK while the login cools off', async () => {
    const u = createUser(userName('tq'), 'Pam-good-1');
    assert.equal(await ask(d.socketPath, u.name, u.password, service), 'OK');
    for (let i = 0; i < 25; i++) await ask(d.socketPath, u.name, `guess-${i}`, service);
    const before = fs
      .readFileSync(calls, 'utf8')
      .split('\n')
      .filter((l) => l.includes(`|${u.name}|`)).length;
    assert.equal(await ask(d.socketPath, u.name, u.password, service), 'OK');
    const afterCalls = fs
      .readFileSync(calls, 'utf8')
      .split('\n')
      .filter((l) => l.includes(`|${u.name}|`)).length;
    assert.equal(afterCalls, before + 1, 'PAM decided it');
  });
});

describe('throttle with LDAP', () => {
  let slapd: Slapd;
  before(async () => {
    slapd = await startSlapd({ logStats: true });
  });
  after(async () => {
    await slapd?.cleanup();
  });

  test('50 wrong passwords in a row: slapd sees 20 binds as the user, the rest are refused unchecked', async () => {
    const d = await startLdapDaemon(serviceConf(slapd.ldapUrl), FAST);
    try {
      const before = bindsAs(slapd.output(), USERS.carol.dn);
      for (let i = 0; i < 50; i++) assert.equal(await d.ask('carol', `guess-${i}`), 'NO');
      assert.equal(bindsAs(slapd.output(), USERS.carol.dn) - before, 20);
    } finally {
      await d.stop();
    }
  });

  test('the same wrong password 50 times reaches slapd 50 times and is never refused', async () => {
    const d = await startLdapDaemon(serviceConf(slapd.ldapUrl), FAST);
    try {
      const before = bindsAs(slapd.output(), USERS.dave.dn);
      for (let i = 0; i < 50; i++) assert.equal(await d.ask('dave', 'an-old-password'), 'NO');
      assert.equal(bindsAs(slapd.output(), USERS.dave.dn) - before, 50);
      assert.equal(await d.ask('dave', USERS.dave.password), 'OK');
    } finally {
      await d.stop();
    }
  });

  test('slapd being down never counts as a failure', async () => {
    const d = await startLdapDaemon(serviceConf(slapd.ldapUrl, { ldap_timeout: 2 }), FAST);
    try {
      await slapd.stop();
      for (let i = 0; i < 30; i++) assert.equal(await d.ask('erin', `pw-${i}`), 'NO');
      assert.equal((await settledResults(d.d, 'erin', 30)).filter((l) => l.result === 'unavailable').length, 30);
      await slapd.start();
      // Not known-good, after 30 unavailable attempts: checked, and the first
      // five wrong passwords are free, as for a login never attacked.
      assert.equal(await d.ask('erin', USERS.erin.password), 'OK');
      assert.equal(count(d.d, /throttle: login \[user=erin\]/), 0);
    } finally {
      if (!slapd.running()) await slapd.start();
      await d.stop();
    }
  });

  test('--throttle off: every attempt reaches slapd, answered at once with the same bytes', { timeout: 60_000 }, async () => {
    // Delays of a minute that --throttle off must ignore: held answers would
    // run this test past its timeout.
    const d = await startLdapDaemon(serviceConf(slapd.ldapUrl), [
      '--throttle',
      'off',
      '--throttle-delay',
      '60000',
      '--throttle-max-delay',
      '60000',
      '--throttle-free',
      '1',
      '--throttle-refuse',
      '2',
    ]);
    try {
      const before = bindsAs(slapd.output(), USERS.alice.dn);
      for (let i = 0; i < 50; i++) assert.equal(await d.ask('alice', `guess-${i}`), 'NO');
      assert.equal(bindsAs(slapd.output(), USERS.alice.dn) - before, 50);
      assert.equal(count(d.d, /throttle:|"result":"refused"/), 0);
      assert.equal(await d.ask('alice', USERS.alice.password), 'OK');
    } finally {
      await d.stop();
    }
  });
});

describe('unknown logins cost what a real check costs', () => {
  after(() => removeAllUsers());

  test('on a $6$ host, unknown users and wrong passwords of known users take about as long', async () => {
    // Several sha512crypt accounts: the host's hashes are $6$.
    const users = Array.from({ length: 5 }, (_, i) => createUser(userName(`t6${i}`), 'Six-pw-1', 'sha512crypt'));
    // Throttle off: this measures the mechanism, not the penalties of 40 wrong passwords.
    const d = await startDaemon({ args: ['-a', 'shadow', '--throttle', 'off', '-V'] });
    try {
      await d.waitForLog(/unknown users are hashed as \$6\$/);
      const median = async (login: () => string): Promise<number> => {
        const ms: number[] = [];
        for (let i = 0; i < 41; i++) ms.push((await timed(ask(d.socketPath, login(), `wrong-${i}`))).ms);
        ms.sort((a, b) => a - b);
        return ms[20]!;
      };
      let n = 0;
      const unknown = await median(() => `nosuchuser${process.pid}x${n++}`);
      const known = await median(() => users[n++ % users.length]!.name);
      const ratio = unknown / known;
      assert.ok(
        ratio > 0.5 && ratio < 2,
        `unknown ${unknown.toFixed(2)} ms against known ${known.toFixed(2)} ms (x${ratio.toFixed(2)})`,
      );
    } finally {
      await d.stop();
    }
  });
});
