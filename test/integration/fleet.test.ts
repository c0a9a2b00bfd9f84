// Two daemons sharing one real redis-server (--state), as two mail hosts of
// a fleet would: what one host learns (a guesser, a returning user) changes
// what the other does, and Redis being killed, restarted or made slow
// never changes an answer. Real users through /etc/shadow; delays shrunk by
// flags; only lower bounds of time, or comparisons between runs of the same
// load, are asserted.
import { after, afterEach, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { execFile } from 'node:child_process';
import { sendRequest } from '../../src/client/request';
import { DAEMON_BIN, startDaemon, type RunningDaemon } from '../helpers/daemon';
import { makeKeyFile, startRedis, type RedisServer } from '../helpers/redis';
import { createUser, removeAllUsers, runCmd, userName, type TestUser } from '../helpers/users';

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

const PREFIX = 'fleettest:';

/** Thresholds as by default (5 free, refused past 20), small delays, every failure line kept. */
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
  '--log-failures-per-login',
  '100000',
  '--log-failures-per-second',
  '100000',
];

function ask(d: RunningDaemon, login: string, password: string): Promise<string> {
  return sendRequest(d.socketPath, { login, password, service: 'smtp', realm: '' });
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

async function settledResults(
  d: RunningDaemon,
  user: string,
  total: number,
): Promise<Array<{ result: string; reason?: string }>> {
  for (let i = 0; i < 100 && results(d, user).length < total; i++) await sleep(50);
  return results(d, user);
}

function fleet(redis: RedisServer, keyFile: string, extra: string[] = []): string[] {
  return ['-a', 'shadow', ...FAST, '--state', redis.url(), '--state-key', keyFile, '--state-prefix', PREFIX, ...extra];
}

function quantile(sorted: number[], q: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? 0;
}

describe('two daemons sharing one Redis', () => {
  let redis: RedisServer;
  let keyDir: string;
  let keyFile: string;
  let a: RunningDaemon;
  let b: RunningDaemon;
  before(async () => {
    redis = await startRedis();
    keyDir = fs.mkdtempSync(path.join(os.tmpdir(), 'saslauthd-ts-fleetkey-'));
    keyFile = makeKeyFile(keyDir);
    a = await startDaemon({ args: fleet(redis, keyFile, ['--throttle-delay', '400', '--throttle-max-delay', '400']) });
    b = await startDaemon({ args: fleet(redis, keyFile, ['--throttle-delay', '400', '--throttle-max-delay', '400']) });
    await a.waitForLog(/shared state .*connected/);
    await b.waitForLog(/shared state .*connected/);
  });
  after(async () => {
    await a?.stop();
    await b?.stop();
    await redis?.stop();
    if (keyDir) fs.rmSync(keyDir, { recursive: true, force: true });
    removeAllUsers();
  });

  test('a guessing burst through A puts the login under penalty on B: B delays its first wrong password', async () => {
    const victim = createUser(userName('fv'), 'Victim-pw-1', 'sha512crypt');
    for (let i = 0; i < 8; i++) assert.equal(await ask(a, victim.name, `guess-a-${i}`), 'NO Incorrect password');
    // B has never seen this login. A login with no history, asked at the
    // same time, is the control: its refusal comes first.
    const control = createUser(userName('fc'), 'Control-pw-1', 'sha512crypt');
    const order: string[] = [];
    const [first] = await Promise.all([
      timed(ask(b, victim.name, 'guess-b')).then((r) => (order.push('victim'), r)),
      ask(b, control.name, 'guess-b').then((r) => (order.push('control'), r)),
    ]);
    assert.equal(first.answer, 'NO Incorrect password');
    assert.ok(first.ms >= 390, `B held its first wrong password for the penalty delay (400 ms): ${first.ms.toFixed(0)} ms`);
    assert.deepEqual(order, ['control', 'victim'], 'a login with no history on the fleet is not held');
    assert.equal(
      (await settledResults(b, victim.name, 1))[0]?.result,
      'denied',
      'it still reached the mechanism (a penalty, not yet a cool-off)',
    );
  });

  test('a burst through A past the refusal threshold: B refuses the login without asking the mechanism, even its right password', async () => {
    const victim = createUser(userName('fr'), 'Victim-pw-2', 'sha512crypt');
    const quick = await startDaemon({ args: fleet(redis, keyFile) });
    try {
      await quick.waitForLog(/shared state .*connected/);
      for (let i = 0; i < 21; i++) assert.equal(await ask(quick, victim.name, `guess-${i}`), 'NO Incorrect password');
      // Its right password, never known-good: refused while the fleet cools the login off.
      const r = await timed(ask(b, victim.name, victim.password));
      assert.equal(r.answer, 'NO Incorrect password');
      assert.ok(r.ms >= 390, `after the penalty delay: ${r.ms.toFixed(0)} ms`);
      const lines = await settledResults(b, victim.name, 1);
      assert.equal(lines[0]?.result, 'refused');
      assert.match(lines[0]?.reason ?? '', /cooling off/);
    } finally {
      await quick.stop();
    }
  });

  test('a user known-good through A goes first on B: B never delays or refuses it while the login cools off', async () => {
    const user = createUser(userName('fk'), 'Known-good-1', 'sha512crypt');
    assert.equal(await ask(a, user.name, user.password), 'OK', 'logged in through A: known-good in the fleet from now on');
    // Guessers put the login into a cool-off, through B itself.
    const quick = await startDaemon({ args: fleet(redis, keyFile) });
    try {
      for (let i = 0; i < 21; i++) await ask(quick, user.name, `guess-${i}`);
    } finally {
      await quick.stop();
    }
    const wrong = await timed(ask(b, user.name, 'guess-on-b'));
    assert.equal(wrong.answer, 'NO Incorrect password');
    assert.equal((await settledResults(b, user.name, 1))[0]?.result, 'refused', 'B refuses the login’s guesses');
    // B never saw this user succeed; only the fleet's mark tells it. A guess
    // sent first is held for the penalty; the known-good login overtakes it.
    const order: string[] = [];
    const held = ask(b, user.name, 'guess-held').then((r) => order.push(`held:${r}`));
    await sleep(50);
    const good = ask(b, user.name, user.password).then((r) => order.push(`good:${r}`));
    await Promise.all([held, good]);
    assert.deepEqual(order, ['good:OK', 'held:NO Incorrect password']);
    // (Successes are logged only with -V: the lines are the two guesses'.)
    const lines = await settledResults(b, user.name, 2);
    assert.deepEqual(
      lines.map((l) => l.result),
      ['refused', 'refused'],
      'only the guesses were refused',
    );
  });

  test('Redis holds no login and no password in clear, and the daemons log no password', async () => {
    const user = createUser(userName('fp'), 'Clear-text-9', 'sha512crypt');
    assert.equal(await ask(a, user.name, user.password), 'OK');
    for (let i = 0; i < 3; i++) await ask(a, user.name, `Wrong-text-${i}`);
    await sleep(200);
    const c = redis.client();
    const keys = await redis.keys(PREFIX);
    assert.ok(keys.length > 0, 'the fleet wrote its state');
    for (const k of keys) {
      assert.ok(!k.includes(user.name), `key ${k} names no login`);
      const type = await c.type(k);
      const value = type === 'hash' ? JSON.stringify(await c.hgetall(k)) : String(await c.get(k));
      for (const secret of [user.name, user.password, 'Wrong-text'])
        assert.ok(!value.includes(secret), `${k} holds no ${secret}`);
    }
    for (const d of [a, b]) {
      assert.ok(!d.output().includes(redis.password), 'the Redis password is never logged');
      assert.ok(!d.output().includes(user.password), 'no user password is logged');
    }
  });
});

describe('shared state under Redis failures', () => {
  let redis: RedisServer;
  let keyDir: string;
  let keyFile: string;
  const users: TestUser[] = [];
  before(async () => {
    redis = await startRedis();
    keyDir = fs.mkdtempSync(path.join(os.tmpdir(), 'saslauthd-ts-fleetkey-'));
    keyFile = makeKeyFile(keyDir);
    for (let i = 0; i < 4; i++) users.push(createUser(userName(`fl${i}`), `Load-pw-${i}`, 'md5crypt'));
  });
  after(async () => {
    await redis?.stop();
    if (keyDir) fs.rmSync(keyDir, { recursive: true, force: true });
    removeAllUsers();
  });
  // A test that failed while Redis was down leaves it up for the next.
  afterEach(async () => {
    if (!redis.running()) await redis.restart();
  });

  /**
   * 200 clients, 100 on each daemon, each asking again as soon as it is
   * answered, for ms: right passwords of the users, and unknown logins
   * that never reach a penalty (each used 3 times at most).
   * Returns every answer's time and whether it was the right answer.
   */
  async function load(
    ds: RunningDaemon[],
    ms: number,
    tag: string,
    during?: () => Promise<void>,
  ): Promise<{ times: number[]; wrong: string[] }> {
    const times: number[] = [];
    const wrong: string[] = [];
    const until = performance.now() + ms;
    let n = 0;
    const client = async (d: RunningDaemon, id: number): Promise<void> => {
      while (performance.now() < until) {
        const k = n++;
        const good = k % 4 !== 3;
        const u = users[k % users.length]!;
        const login = good ? u.name : `nobody-${tag}-${Math.floor(k / 3)}`;
        const password = good ? u.password : 'not-the-password';
        const want = good ? 'OK' : 'NO Invalid username';
        const t = performance.now();
        const answer = await ask(d, login, password).catch((err: Error) => `error: ${err.message}`);
        times.push(performance.now() - t);
        if (answer !== want) wrong.push(`${id} ${login}: ${answer}`);
      }
    };
    const clients = Array.from({ length: 200 }, (_x, i) => client(ds[i % ds.length]!, i));
    await Promise.all([...clients, during?.() ?? Promise.resolve()]);
    times.sort((x, y) => x - y);
    return { times, wrong };
  }

  test('Redis killed mid-load: every answer right, p99 up by no more than the deadline; restarted: sharing resumes without a daemon restart', async (t) => {
    const a = await startDaemon({ args: fleet(redis, keyFile, ['--state-timeout', '50']) });
    const b = await startDaemon({ args: fleet(redis, keyFile, ['--state-timeout', '50']) });
    try {
      await a.waitForLog(/shared state .*connected/);
      await b.waitForLog(/shared state .*connected/);
      for (const u of users) assert.equal(await ask(a, u.name, u.password), 'OK');
      const up = await load([a, b], 3000, 'up');
      const killed = await load([a, b], 3000, 'kill', async () => {
        await sleep(1000);
        await redis.kill();
      });
      assert.deepEqual(up.wrong, [], 'every answer right with Redis up');
      assert.deepEqual(killed.wrong, [], 'every answer right while Redis dies');
      const p99up = quantile(up.times, 0.99);
      const p99killed = quantile(killed.times, 0.99);
      // The deadline, plus a margin for a shared 2-core machine's noise.
      const margin = Math.max(50, p99up * 0.5);
      t.diagnostic(
        `p99 ${p99up.toFixed(1)} ms up (${up.times.length} answers), ${p99killed.toFixed(1)} ms with Redis killed (${killed.times.length})`,
      );
      assert.ok(
        p99killed <= p99up + 50 + margin,
        `p99 ${p99killed.toFixed(1)} ms with Redis killed against ${p99up.toFixed(1)} ms up (${up.times.length} and ${killed.times.length} answers)`,
      );
      // One line when Redis goes away and one when it returns, not one per
      // request (a loaded machine may also see a brief stall before the kill).
      const downs = (d: RunningDaemon): string[] =>
        d
          .output()
          .split('\n')
          .filter((l) => /shared state .*(unavailable|cannot connect)/.test(l));
      const ups = (d: RunningDaemon): string[] =>
        d
          .output()
          .split('\n')
          .filter((l) => /shared state .*available again/.test(l));
      for (const d of [a, b]) {
        await d.waitForLog(/shared state .*unavailable/);
        assert.equal(downs(d).length, ups(d).length + 1, `one line per outage:\n${[...downs(d), ...ups(d)].join('\n')}`);
      }

      await redis.restart();
      const t0 = performance.now();
      const resumed = async (d: RunningDaemon): Promise<void> => {
        for (let i = 0; i < 200 && downs(d).length > ups(d).length; i++) await sleep(50);
      };
      await Promise.all([resumed(a), resumed(b)]);
      const resumedMs = performance.now() - t0;
      for (const d of [a, b]) assert.equal(downs(d).length, ups(d).length);
      assert.ok(resumedMs < 10_000, `resumed within seconds: ${resumedMs.toFixed(0)} ms`);
      t.diagnostic(`sharing resumed ${resumedMs.toFixed(0)} ms after the restart`);
      // Sharing again: a burst through A is a penalty on B.
      const victim = createUser(userName('fz'), 'Victim-pw-3', 'sha512crypt');
      for (let i = 0; i < 8; i++) await ask(a, victim.name, `guess-${i}`);
      const first = await timed(ask(b, victim.name, 'guess-b'));
      assert.ok(first.ms >= 75, `B held its first wrong password (80 ms penalty): ${first.ms.toFixed(0)} ms`);
    } finally {
      await a.stop();
      await b.stop();
    }
  });

  test('Redis made slow with DEBUG SLEEP: answers still come within the deadline plus the mechanism’s time', async (t) => {
    const d = await startDaemon({ args: fleet(redis, keyFile, ['--state-timeout', '50']) });
    try {
      await d.waitForLog(/shared state .*connected/);
      const u = users[0]!;
      assert.equal(await ask(d, u.name, u.password), 'OK');
      // The mechanism's own time: the same requests with Redis answering.
      const base: number[] = [];
      for (let i = 0; i < 10; i++) base.push((await timed(ask(d, u.name, u.password))).ms);
      for (let i = 0; i < 3; i++) base.push((await timed(ask(d, `nobody-slow-base-${i}`, 'x'))).ms);
      base.sort((x, y) => x - y);
      const mech = base[base.length - 1] ?? 0;
      await redis.sleep(3000);
      const slow: Array<{ answer: string; ms: number; want: string }> = [];
      for (let i = 0; i < 5; i++) {
        slow.push({ ...(await timed(ask(d, u.name, u.password))), want: 'OK' });
        slow.push({ ...(await timed(ask(d, `nobody-slow-${i}`, 'x'))), want: 'NO Invalid username' });
      }
      t.diagnostic(`mechanism up to ${mech.toFixed(1)} ms; with Redis asleep: ${slow.map((s) => s.ms.toFixed(1)).join(' ')} ms`);
      for (const s of slow) {
        assert.equal(s.answer, s.want);
        // The deadline (50 ms) plus the slowest answer with Redis well, and a
        // margin for a busy machine: far below Redis's 3 s sleep, and below
        // what a deadline 6 times too long would take.
        assert.ok(s.ms <= mech + 50 + 250, `answered in ${s.ms.toFixed(1)} ms (mechanism up to ${mech.toFixed(1)} ms)`);
      }
      await d.waitForLog(/shared state .*unavailable: no answer within 50 ms/);
      await d.waitForLog(/shared state .*available again/, 15_000);
    } finally {
      await d.stop();
    }
  });

  test('Redis down when the daemon starts: it serves, and shares as soon as Redis comes up', async () => {
    await redis.kill();
    const d = await startDaemon({ args: fleet(redis, keyFile) });
    try {
      await d.waitForLog(/shared state .*cannot connect/);
      const u = users[1]!;
      assert.equal(await ask(d, u.name, u.password), 'OK');
      await redis.restart();
      await d.waitForLog(/shared state .*available again/, 10_000);
      // Its next first-time success is in Redis for the fleet.
      const fresh = createUser(userName('fu'), 'Up-later-1', 'sha512crypt');
      assert.equal(await ask(d, fresh.name, fresh.password), 'OK');
      await sleep(200);
      assert.ok((await redis.keys(`${PREFIX}g:`)).length >= 1, 'a known-good mark reached Redis');
    } finally {
      await d.stop();
    }
  });

  test('the TTLs hold: once the windows pass, Redis holds no key of the test', async () => {
    const prefix = 'ttltest:';
    const args = [
      '-a',
      'shadow',
      ...FAST,
      '--throttle-window',
      '2',
      '--throttle-cooloff',
      '3',
      '--known-good-ttl',
      '3',
      '--state',
      redis.url(),
      '--state-key',
      keyFile,
      '--state-prefix',
      prefix,
    ];
    const d = await startDaemon({ args });
    try {
      await d.waitForLog(/shared state .*connected/);
      const u = createUser(userName('ft'), 'Ttl-pw-1', 'sha512crypt');
      assert.equal(await ask(d, u.name, u.password), 'OK');
      for (let i = 0; i < 22; i++) await ask(d, u.name, `guess-${i}`);
      await sleep(200);
      const keys = await redis.keys(prefix);
      assert.ok(keys.length >= 2, `a known-good mark and the login's count: ${keys.join(' ')}`);
      const c = redis.client();
      for (const k of keys) {
        const ttl = await c.pttl(k);
        assert.ok(ttl > 0 && ttl <= 3_500, `${k} expires (PTTL ${ttl} ms)`);
      }
      await sleep(3_800);
      assert.deepEqual(await redis.keys(prefix), [], 'nothing left');
    } finally {
      await d.stop();
    }
  });
});

describe('--check with --state', () => {
  let redis: RedisServer;
  let keyDir: string;
  let keyFile: string;
  before(async () => {
    redis = await startRedis();
    keyDir = fs.mkdtempSync(path.join(os.tmpdir(), 'saslauthd-ts-fleetkey-'));
    keyFile = makeKeyFile(keyDir);
  });
  after(async () => {
    await redis?.stop();
    if (keyDir) fs.rmSync(keyDir, { recursive: true, force: true });
  });

  function check(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
    return new Promise((resolve) => {
      execFile(process.execPath, [DAEMON_BIN, '--check', '-a', 'shadow', '-m', keyDir, ...args], (err, stdout, stderr) =>
        resolve({ code: err ? Number((err as { code?: number }).code ?? 1) : 0, stdout, stderr }),
      );
    });
  }

  test('reports the server version and latency', async () => {
    const r = await check(['--state', redis.url(2), '--state-key', keyFile]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^ {2}server +Redis 7\.\d+\.\d+, standalone$/m);
    assert.match(r.stdout, /^ {2}latency +(\d+\.\d\d ){5}ms \(PING round trips; deadline 50 ms\)$/m);
    assert.ok(!r.stdout.includes(redis.password) && !r.stderr.includes(redis.password), 'the password is masked');
    assert.match(r.stdout, /redis:\/\/:\*\*\*@127\.0\.0\.1:\d+\/2/);
  });

  test('reaches the server through its UNIX socket', async () => {
    const r = await check(['--state', `unix://:${redis.password}@${redis.socketPath}?db=1`, '--state-key', keyFile]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /server +Redis 7/);
  });

  test('rediss://: trusts the server with --state-tls-ca, and names the certificate problem without it', async () => {
    const tls = await startRedis({ tls: true });
    try {
      const uri = `rediss://:${tls.password}@127.0.0.1:${tls.tls!.port}/0`;
      const ok = await check(['--state', uri, '--state-key', keyFile, '--state-tls-ca', tls.tls!.caFile]);
      assert.equal(ok.code, 0, ok.stderr);
      assert.match(ok.stdout, /^ {2}TLS +CA .*ca\.pem$/m);
      assert.match(ok.stdout, /server +Redis 7/);
      const untrusted = await check(['--state', uri, '--state-key', keyFile, '--state-tls-ca', tls.tls!.otherCaFile]);
      assert.equal(untrusted.code, 1);
      assert.match(untrusted.stderr, /cannot use it: .*(certificate|verify).*--state-tls-ca/);
    } finally {
      await tls.stop();
    }
  });

  test('fails naming the cause when it cannot authenticate or connect', async () => {
    const wrong = await check(['--state', `redis://:wrong-password@127.0.0.1:${redis.port}/0`, '--state-key', keyFile]);
    assert.equal(wrong.code, 1);
    assert.match(
      wrong.stderr,
      /error: .*--state redis:\/\/:\*\*\*@127\.0\.0\.1:\d+\/0: cannot use it: WRONGPASS.*check the user and password/,
    );
    assert.ok(!wrong.stderr.includes('wrong-password') && !wrong.stdout.includes('wrong-password'));
    const closed = await check(['--state', `redis://127.0.0.1:1/0`, '--state-key', keyFile]);
    assert.equal(closed.code, 1);
    assert.match(closed.stderr, /cannot use it: .*ECONNREFUSED/);
  });
});

describe('the shared credential cache (--state-cache)', () => {
  let redis: RedisServer;
  let keyDir: string;
  let keyFile: string;
  before(async () => {
    redis = await startRedis();
    keyDir = fs.mkdtempSync(path.join(os.tmpdir(), 'saslauthd-ts-fleetkey-'));
    keyFile = makeKeyFile(keyDir);
  });
  after(async () => {
    await redis?.stop();
    if (keyDir) fs.rmSync(keyDir, { recursive: true, force: true });
    removeAllUsers();
  });

  test('an entry cached through A answers on B; without --state-cache B asks its mechanism', async () => {
    const user = createUser(userName('fq'), 'Cached-pw-1', 'sha512crypt');
    const args = (...extra: string[]): string[] => fleet(redis, keyFile, ['-c', ...extra]);
    const a = await startDaemon({ args: args('--state-cache') });
    const b = await startDaemon({ args: args('--state-cache') });
    const plain = await startDaemon({ args: args() });
    try {
      for (const d of [a, b, plain]) await d.waitForLog(/shared state .*connected/);
      assert.equal(await ask(a, user.name, user.password), 'OK');
      await sleep(100);
      // The password changes; only a cache can still say OK to the old one.
      runCmd('chpasswd', ['-c', 'SHA512'], `${user.name}:Changed-pw-2\n`);
      assert.equal(await ask(b, user.name, user.password), 'OK', 'B answers from the fleet’s cache');
      assert.equal(
        await ask(plain, user.name, user.password),
        'NO Incorrect password',
        'a host that does not share the cache asks /etc/shadow',
      );
      // In Redis: the credentials' fingerprint, never the password or the login.
      const entries = await redis.keys(`${PREFIX}c:`);
      assert.equal(entries.length, 1);
      const value = String(await redis.client().get(entries[0]!));
      assert.ok(!value.includes(user.password) && !entries[0]!.includes(user.name), value);
      assert.ok((await redis.client().pttl(entries[0]!)) > 0, 'it expires with -t');
      // SIGHUP empties a host's cache; the fleet's older entries do not come back through it.
      b.child.kill('SIGHUP');
      await b.waitForLog(/SIGHUP/);
      assert.equal(await ask(b, user.name, user.password), 'NO Incorrect password', 'after SIGHUP, B asks its mechanism');
    } finally {
      await a.stop();
      await b.stop();
      await plain.stop();
    }
  });
});

describe('starting with --state', () => {
  let keyDir: string;
  before(() => {
    keyDir = fs.mkdtempSync(path.join(os.tmpdir(), 'saslauthd-ts-fleetkey-'));
  });
  after(() => {
    if (keyDir) fs.rmSync(keyDir, { recursive: true, force: true });
    removeAllUsers();
  });

  test('a key file others can read stops the start, naming the file and the chmod', async () => {
    const keyFile = makeKeyFile(keyDir, 'loose.key');
    fs.chmodSync(keyFile, 0o644);
    const r = await new Promise<{ code: number; stderr: string }>((resolve) =>
      execFile(
        process.execPath,
        [DAEMON_BIN, '-f', '-a', 'shadow', '-m', keyDir, '--state', 'redis://127.0.0.1:1/0', '--state-key', keyFile],
        (err, _o, stderr) => resolve({ code: err ? Number((err as { code?: number }).code ?? 1) : 0, stderr }),
      ),
    );
    assert.equal(r.code, 1);
    assert.match(r.stderr, new RegExp(`--state-key ${keyFile}: mode 0644 .* run: chmod 0600 ${keyFile}`));
  });

  test('Redis unreachable at start: the daemon serves from its own state and says so once', async () => {
    const keyFile = makeKeyFile(keyDir, 'ok.key');
    const user = createUser(userName('fs'), 'Start-pw-1', 'sha512crypt');
    const d = await startDaemon({
      args: ['-a', 'shadow', '--state', 'redis://:secret-pw@127.0.0.1:1/0', '--state-key', keyFile],
    });
    try {
      await d.waitForLog(
        /shared state redis:\/\/:\*\*\*@127\.0\.0\.1:1\/0: cannot connect: .*ECONNREFUSED.*deciding from local state, retrying/,
      );
      for (let i = 0; i < 5; i++) assert.equal(await ask(d, user.name, user.password), 'OK');
      assert.equal(await ask(d, user.name, 'wrong'), 'NO Incorrect password');
      await sleep(1500);
      assert.equal(
        d
          .output()
          .split('\n')
          .filter((l) => /shared state/.test(l)).length,
        1,
        d.output(),
      );
      assert.ok(!d.output().includes('secret-pw'));
    } finally {
      await d.stop();
    }
  });
});
