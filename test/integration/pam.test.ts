// The pam mechanism against the real Linux-PAM stack and real system users:
// through the daemon's socket (our client, Debian's testsaslauthd and raw
// 5-field frames), plus the backend loaded in this process to show that PAM's
// fail delay never holds a libuv thread-pool thread.
import { after, before, describe, test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { Writable } from 'node:stream';
import pino from 'pino';
import { startDaemon, type RunningDaemon } from '../helpers/daemon';
import { createUser, lock, removeAllUsers, runCmd, setExpired, shadowHash, userName } from '../helpers/users';
import { NO_LINE, OK_LINE, testsaslauthd } from '../helpers/testsaslauthd';
import { rawExchange, reply, request } from '../helpers/frames';
import {
  buildConvProbe,
  cleanupPam,
  COMMON_STACK,
  installService,
  removeService,
  rhostRecorder,
  serviceName,
} from '../helpers/pam';
import { sendRequest } from '../../src/client/request';
import { createPam, FLOOR_FAIL_DELAY_US } from '../../src/backends/pam';
import type { AuthRequest, Outcome } from '../../src/backends/backend';
import { native } from '../../src/native/binding';

const PASSWORD = 'Pam s3cret!';
const AUTH_ERROR = 'NO PAM auth error';
const ACCT_ERROR = 'NO PAM acct error';
/** Every password any test sends; none may appear in any log. */
const passwordsSent = new Set<string>([PASSWORD]);

process.once('exit', () => removeAllUsers());

interface Timed {
  text: string;
  ms: number;
}

interface PamDebugLine {
  user: string;
  service: string;
  stage: string;
  pamCode: number;
  pamError: string;
  failDelayMs: number;
  msg: string;
}

/** The backend's "auth_pam: <stage> failed" debug lines in a log, for one user. */
function pamDebugLines(log: string, user: string): PamDebugLine[] {
  const out: PamDebugLine[] = [];
  for (const line of log.split('\n')) {
    if (!line.includes('auth_pam:')) continue;
    const obj = JSON.parse(line) as PamDebugLine;
    if (obj.user === user) out.push(obj);
  }
  return out;
}

async function waitFor(cond: () => boolean, what: string, timeoutMs = 30_000): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

function summary(ms: number[]): string {
  const s = [...ms].sort((a, b) => a - b);
  const at = (q: number): number => s[Math.min(s.length - 1, Math.floor(q * s.length))] ?? NaN;
  return `n=${s.length} min=${at(0).toFixed(1)} median=${at(0.5).toFixed(1)} max=${(s[s.length - 1] ?? NaN).toFixed(1)} ms`;
}

function report(t: TestContext, line: string): void {
  t.diagnostic(line);
  console.log(`# ${t.name}: ${line}`);
}

describe('pam mechanism through the daemon', () => {
  let d: RunningDaemon;
  const ask = async (login: string, password: string | Buffer, service = 'imap'): Promise<Timed> => {
    passwordsSent.add(password.toString());
    const started = performance.now();
    const text = await sendRequest(d.socketPath, { login, password, service, realm: '' });
    return { text, ms: performance.now() - started };
  };

  before(async () => {
    // -d: foreground and debug level, so the PAM stage lines are logged.
    d = await startDaemon({ args: ['-a', 'pam'], mode: '-d' });
  });
  after(async () => {
    try {
      await d?.stop();
    } finally {
      if (d) fs.rmSync(d.runDir, { recursive: true, force: true });
      removeAllUsers();
      cleanupPam();
    }
  });

  test('accepts the right password, through our client and the real testsaslauthd', async () => {
    const u = createUser(userName('pok'), PASSWORD);
    assert.equal((await ask(u.name, PASSWORD)).text, 'OK');
    const r = await testsaslauthd({ socket: d.socketPath, user: u.name, password: PASSWORD });
    assert.equal(r.stdout, OK_LINE);
    assert.equal(r.code, 0);
  });

  test('answers NO PAM auth error for a wrong password, through both clients', async () => {
    const u = createUser(userName('pwr'), PASSWORD);
    passwordsSent.add('Wrong one');
    const [ours, r] = await Promise.all([
      ask(u.name, 'Wrong one'),
      testsaslauthd({ socket: d.socketPath, user: u.name, password: 'Wrong one', service: 'smtp' }),
    ]);
    assert.equal(ours.text, AUTH_ERROR);
    assert.equal(r.stdout, NO_LINE);
    assert.equal(r.code, 255);
    const lines = pamDebugLines(d.output(), u.name);
    assert.equal(lines.length, 2);
    assert.equal(lines[0]?.stage, 'pam_authenticate');
    assert.equal(lines[0]?.pamCode, 7);
    assert.equal(lines[0]?.msg, 'auth_pam: pam_authenticate failed: Authentication failure');
  });

  test('answers NO PAM auth error for an unknown user, no sooner than the fail delay', async () => {
    const ghost = userName('pgh');
    const r = await ask(ghost, PASSWORD);
    assert.equal(r.text, AUTH_ERROR);
    const [line] = pamDebugLines(d.output(), ghost);
    assert.ok(line, 'debug line for the unknown user');
    // PAM rejects an unknown user in milliseconds; the answer still waits out
    // the delay (libpam's 0.5x..1.5x of pam_unix's 2 s), counted from the start.
    assert.ok(line.failDelayMs >= 1000, `fail delay ${line.failDelayMs} ms`);
    assert.ok(r.ms >= line.failDelayMs - 1, `answered after ${r.ms} ms, delay ${line.failDelayMs} ms`);
  });

  test('answers NO PAM auth error for a locked account (passwd -l), even with the right password', async () => {
    const u = createUser(userName('plk'), PASSWORD);
    lock(u.name);
    assert.equal((await ask(u.name, PASSWORD)).text, AUTH_ERROR);
  });

  test('refuses every password for an account with an empty password field, despite nullok', async () => {
    // Debian's common-auth has "pam_unix.so nullok"; Cyrus (PAM_SILENT only)
    // answers OK here to any password. We pass PAM_DISALLOW_NULL_AUTHTOK.
    const u = createUser(userName('pnl'), PASSWORD);
    runCmd('usermod', ['-p', '', u.name]);
    assert.match(runCmd('getent', ['shadow', u.name]), new RegExp(`^${u.name}::`));
    assert.equal((await ask(u.name, 'anything at all')).text, AUTH_ERROR);
  });

  test('answers NO PAM acct error for an expired account (chage -E 0) with the right password', async () => {
    const u = createUser(userName('pex'), PASSWORD);
    setExpired(u.name);
    // Independent requests, each waiting out a fail delay: run them together.
    const [right, wrong, r] = await Promise.all([
      ask(u.name, PASSWORD),
      ask(u.name, 'not it'),
      testsaslauthd({ socket: d.socketPath, user: u.name, password: PASSWORD }),
    ]);
    assert.equal(right.text, ACCT_ERROR);
    assert.equal(wrong.text, AUTH_ERROR);
    assert.equal(r.stdout, NO_LINE);
    const acct = pamDebugLines(d.output(), u.name).find((l) => l.stage === 'pam_acct_mgmt');
    assert.ok(acct, 'an acct_mgmt debug line');
  });

  test('answers NO PAM acct error when the password must be changed (chage -d 0 with a maximum age)', async () => {
    const u = createUser(userName('pmc'), PASSWORD);
    runCmd('chage', ['-d', '0', '-M', '30', u.name]);
    assert.equal((await ask(u.name, PASSWORD)).text, ACCT_ERROR);
    const [line] = pamDebugLines(d.output(), u.name);
    assert.equal(line?.stage, 'pam_acct_mgmt');
    assert.equal(line?.pamCode, 12); // PAM_NEW_AUTHTOK_REQD
  });

  test('answers NO PAM acct error when the password is past its maximum age', async () => {
    const u = createUser(userName('pma'), PASSWORD);
    runCmd('chage', ['-d', '2000-01-01', '-M', '30', u.name]);
    assert.equal((await ask(u.name, PASSWORD)).text, ACCT_ERROR);
  });

  test('checks a 200-byte password in full: right is OK, one byte changed past byte 127 is NO', async () => {
    const long = Array.from({ length: 200 }, (_, i) => String.fromCharCode(0x41 + (i % 26))).join('');
    assert.equal(Buffer.byteLength(long), 200);
    const u = createUser(userName('plg'), long);
    assert.equal((await ask(u.name, long)).text, 'OK');
    const at150 = `${long.slice(0, 150)}#${long.slice(151)}`;
    const last = `${long.slice(0, 199)}#`;
    const wrong = await Promise.all([at150, last, long.slice(0, 127)].map((pw) => ask(u.name, pw)));
    assert.deepEqual(
      wrong.map((w) => w.text),
      [AUTH_ERROR, AUTH_ERROR, AUTH_ERROR],
    );
  });

  test('a password with an embedded NUL is cut there, as the C daemon does', async () => {
    const u = createUser(userName('pnl'), PASSWORD);
    assert.equal((await ask(u.name, Buffer.from(`${PASSWORD}\0junk`))).text, 'OK');
  });

  test('uses the service field as the PAM service: smtp, imap and empty fall through to "other"', async () => {
    for (const s of ['smtp', 'imap']) assert.ok(!fs.existsSync(`/etc/pam.d/${s}`), `/etc/pam.d/${s} exists here`);
    const u = createUser(userName('psv'), PASSWORD);
    for (const service of ['smtp', 'imap', '']) {
      assert.equal((await ask(u.name, PASSWORD, service)).text, 'OK', `service "${service}"`);
    }
  });

  test('a throwaway /etc/pam.d/<service> that denies is the stack PAM runs for that service name', async () => {
    const u = createUser(userName('pdn'), PASSWORD);
    const name = serviceName('deny');
    // Before the file exists the name falls through to "other" (OK).
    assert.equal((await ask(u.name, PASSWORD, name)).text, 'OK');
    installService(name, ['auth required pam_deny.so', 'account required pam_deny.so']);
    const denied = await ask(u.name, PASSWORD, name);
    assert.equal(denied.text, AUTH_ERROR);
    const r = await testsaslauthd({ socket: d.socketPath, user: u.name, password: PASSWORD, service: name });
    assert.equal(r.stdout, NO_LINE);
    // pam_deny asks for no delay: the floor applies, so this failure is no
    // faster than a wrong password under pam_unix.
    const [line] = pamDebugLines(d.output(), u.name);
    assert.ok(line !== undefined && line.failDelayMs >= (FLOOR_FAIL_DELAY_US / 1000) * 0.5, JSON.stringify(line));
    assert.ok(denied.ms >= line.failDelayMs - 1);
    // A stack whose account phase denies gives the acct error.
    removeService(name);
    installService(name, [...COMMON_STACK.slice(0, 1), 'account required pam_deny.so']);
    assert.equal((await ask(u.name, PASSWORD, name)).text, ACCT_ERROR);
    removeService(name);
    assert.equal((await ask(u.name, PASSWORD, name)).text, 'OK');
  });

  test('sets PAM_RHOST from the 5th field (host part before ";") and leaves it unset for 4 fields', async (t) => {
    const u = createUser(userName('prh'), PASSWORD);
    const rec = rhostRecorder();
    const name = installService(serviceName('rhost'), [rec.line, ...COMMON_STACK]);
    const frame = (clientAddr?: string): Buffer =>
      request({ login: u.name, password: PASSWORD, service: name, realm: '', ...(clientAddr ? { clientAddr } : {}) });

    const v4 = await rawExchange(d.socketPath, [frame('192.0.2.7;40123')], { closeAfterSend: true });
    assert.deepEqual(v4.bytes, reply('OK'));
    const v6 = await rawExchange(d.socketPath, [frame('2001:db8::25;993')], { closeAfterSend: true });
    assert.deepEqual(v6.bytes, reply('OK'));
    const noPort = await rawExchange(d.socketPath, [frame('198.51.100.9')], { closeAfterSend: true });
    assert.deepEqual(noPort.bytes, reply('OK'));
    const four = await rawExchange(d.socketPath, [frame()], { closeAfterSend: true });
    assert.deepEqual(four.bytes, reply('OK'));

    const seen = fs.readFileSync(rec.outFile, 'utf8');
    report(t, `pam_exec saw: ${JSON.stringify(seen)}`);
    assert.equal(
      seen,
      [`192.0.2.7|${u.name}|${name}`, `2001:db8::25|${u.name}|${name}`, `198.51.100.9|${u.name}|${name}`, `|${u.name}|${name}`]
        .map((l) => `${l}\n`)
        .join(''),
    );
  });

  test('the conversation answers several messages in one call as Cyrus does', async () => {
    const u = createUser(userName('pcv'), PASSWORD);
    const so = buildConvProbe();
    const out = `${so}.report`;
    const pwhex = Buffer.from(PASSWORD).toString('hex');
    const multi = installService(serviceName('conv'), [
      `auth required ${so} out=${out} mode=multi pwhex=${pwhex}`,
      'account required pam_permit.so',
    ]);
    assert.equal((await ask(u.name, PASSWORD, multi)).text, 'OK');
    assert.equal(
      fs.readFileSync(out, 'utf8'),
      // Call 1, PAM_USER_PROMPT unset: Cyrus 2.1.28 compares the prompt with
      // the NULL item and dies; we keep its rule (the login only for the
      // user prompt), so "login:" gets an empty answer. Call 2, with the
      // prompt set: only the user prompt gets the login.
      `call1 rc=0 r0=null\ncall2 rc=0 r0=null r1=null r2=${u.name} r3=password r4=null\n`,
    );

    const bad = installService(serviceName('convbad'), [
      `auth required ${so} out=${out} mode=badstyle`,
      'account required pam_permit.so',
    ]);
    assert.equal((await ask(u.name, PASSWORD, bad)).text, AUTH_ERROR);
    assert.equal(fs.readFileSync(out, 'utf8'), 'badstyle rc=19\n'); // PAM_CONV_ERR
  });

  test('32 wrong passwords waiting out their fail delay do not hold up good logins', async (t) => {
    // sha512crypt, not yescrypt: this measures waiting behind fail delays,
    // not hashing. The proof is that every good login is answered while all
    // 32 failures are still held: were the failures holding anything the
    // good logins need, those would wait until failures are answered. So
    // the delay must outlast the whole load on any machine: it is sized from
    // a dry run of the same load, timed here.
    const good = createUser(userName('phg'), PASSWORD, 'sha512crypt');
    const bad = createUser(userName('phb'), PASSWORD, 'sha512crypt');
    const dry = createUser(userName('phd'), PASSWORD, 'sha512crypt');
    const WRONG = 32;
    // A daemon of its own whose request deadline never cuts the delays short.
    const hd = await startDaemon({ args: ['-a', 'pam', '--auth-timeout', '3600'], mode: '-d' });
    const askHd = async (login: string, password: string, service: string): Promise<Timed> => {
      passwordsSent.add(password);
      const started = performance.now();
      const text = await sendRequest(hd.socketPath, { login, password, service, realm: '' });
      return { text, ms: performance.now() - started };
    };
    /** 32 failures, then 5 good logins once all 32 have left PAM; pendingAfterEach: failures unanswered after each. */
    const load = async (user: string, service: string): Promise<{ wrong: Array<Promise<Timed>>; pendingAfterEach: number[] }> => {
      let pending = 0;
      const wrong = Array.from({ length: WRONG }, async () => {
        pending++;
        try {
          return await askHd(user, `wrong-${PASSWORD}`, service);
        } finally {
          pending--;
        }
      });
      await waitFor(() => pamDebugLines(hd.output(), user).length === WRONG, `all ${WRONG} failures of ${user} to leave PAM`);
      const pendingAfterEach: number[] = [pending];
      for (let i = 0; i < 5; i++) {
        assert.equal((await askHd(good.name, PASSWORD, service)).text, 'OK');
        pendingAfterEach.push(pending);
      }
      return { wrong, pendingAfterEach };
    };
    try {
      // Dry run: pam_unix's own delay only (1..3 s), nothing measured but the time.
      const t0 = performance.now();
      const dryRun = await load(dry.name, 'imap');
      const loadMs = performance.now() - t0;
      // libpam waits 0.5x..1.5x the delay asked for: the shortest is 10x the load.
      const delayUs = Math.max(6_000_000, Math.ceil(loadMs * 20) * 1000);
      report(t, `dry run ${loadMs.toFixed(0)} ms: pam_faildelay delay=${delayUs}`);
      const name = installService(serviceName('hol'), [`auth optional pam_faildelay.so delay=${delayUs}`, ...COMMON_STACK]);

      const { wrong, pendingAfterEach } = await load(bad.name, name);
      const answers = await Promise.all(wrong);
      const delays = pamDebugLines(hd.output(), bad.name).map((l) => l.failDelayMs);
      report(t, `failures still in flight before and after each good login: ${pendingAfterEach.join(', ')}`);
      report(t, `the 32 failures: answered after ${summary(answers.map((a) => a.ms))}; PAM delays ${summary(delays)}`);

      assert.deepEqual(
        pendingAfterEach,
        pendingAfterEach.map(() => WRONG),
        'all failures were in flight throughout',
      );
      for (const a of answers) assert.equal(a.text, AUTH_ERROR);
      for (const a of await Promise.all(dryRun.wrong)) assert.equal(a.text, AUTH_ERROR);
    } finally {
      await hd.stop();
    }
  });

  test('no password reaches the log, at debug level', async () => {
    // Its own right and wrong logins, so that the log holds debug lines for
    // passwords even when this test runs alone.
    const u = createUser(userName('plo'), PASSWORD);
    assert.equal((await ask(u.name, PASSWORD)).text, 'OK');
    assert.equal((await ask(u.name, 'Wrong-l0g-pw')).text, AUTH_ERROR);
    await waitFor(() => pamDebugLines(d.output(), u.name).length === 1, 'the failure line');
    const log = d.output();
    for (const pw of passwordsSent) {
      if (pw.length > 0) assert.ok(!log.includes(pw), 'a password appears in the daemon log');
    }
  });
});

describe('pam: a fail delay longer than --auth-timeout', () => {
  // PAM itself (sha512crypt) must decide within --auth-timeout, and the
  // fail delay must outlast it, so that the deadline passes while the denial
  // only waits out its delay. Both are sized from what PAM's decision costs
  // on this machine, measured in before(): the deadline is at least 20 times
  // that (1 s on most machines), the delay at least 4 times the deadline
  // (libpam waits 0.5x..1.5x of it).
  const OLD = 'Old-pam-pw1';
  const NEW = 'New-pam-pw2';
  let d: RunningDaemon;
  let service: string;
  const ask = (login: string, password: string): Promise<string> => {
    passwordsSent.add(password);
    return sendRequest(d.socketPath, { login, password, service, realm: '' });
  };
  /** The result field of the auth line logged for user since the log had `from` characters. */
  const results = (user: string, from: number): string[] =>
    d
      .output()
      .slice(from)
      .split('\n')
      .filter((l) => l.includes('"msg":"auth ') && l.includes(`"user":"${user}"`))
      .map((l) => (JSON.parse(l) as { result: string }).result);

  before(async () => {
    const probe = createUser(userName('pfc'), OLD, 'sha512crypt');
    const ms: number[] = [];
    for (let i = 0; i < 5; i++) {
      const t0 = performance.now();
      // The fail delay is reported to the addon, not slept: this is PAM's decision alone.
      const r = await native.pamAuthenticate({ service: 'imap', user: probe.name, password: Buffer.from('Not-it-pw4') });
      ms.push(performance.now() - t0);
      assert.equal(r.ok, false);
    }
    const decideMs = [...ms].sort((a, b) => a - b)[2] ?? 0;
    const authTimeoutS = Math.max(1, Math.ceil((decideMs * 20) / 1000));
    const delayUs = Math.max(10_000_000, authTimeoutS * 4_000_000);
    console.log(`# PAM decides in ${decideMs.toFixed(1)} ms: --auth-timeout ${authTimeoutS}, pam_faildelay delay=${delayUs}`);
    service = installService(serviceName('fdl'), [`auth required pam_faildelay.so delay=${delayUs}`, ...COMMON_STACK]);
    d = await startDaemon({
      args: ['-a', 'pam', '-c', '--cache-mode', 'outage', '--auth-timeout', String(authTimeoutS)],
      mode: '-d',
    });
  });
  after(async () => {
    try {
      await d?.stop();
    } finally {
      removeAllUsers();
      cleanupPam();
    }
  });

  test('a wrong password is answered NO PAM auth error and logged denied, not timed out', async () => {
    const u = createUser(userName('pfw'), OLD, 'sha512crypt');
    const from = d.output().length;
    assert.equal(await ask(u.name, 'Wrong-pam-pw3'), AUTH_ERROR);
    await waitFor(() => results(u.name, from).length === 1, 'the auth line');
    assert.deepEqual(results(u.name, from), ['denied']);
  });

  test('with --cache-mode outage, the cached old password is refused once the password has changed', async () => {
    const u = createUser(userName('pfo'), OLD, 'sha512crypt');
    assert.equal(await ask(u.name, OLD), 'OK');
    runCmd('usermod', ['-p', runCmd('mkpasswd', ['-m', 'sha512crypt', '--stdin'], NEW).trim(), u.name]);
    const from = d.output().length;
    assert.equal(await ask(u.name, OLD), AUTH_ERROR);
    assert.doesNotMatch(d.output().slice(from), /auth success \(cached, mechanism unavailable\)/);
    assert.equal(await ask(u.name, OLD), AUTH_ERROR);
    assert.equal(await ask(u.name, NEW), 'OK');
  });
});

describe('pam backend in this process (shared libuv thread pool)', () => {
  const logLines: string[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, cb) {
      logLines.push(...chunk.toString('utf8').split('\n').filter(Boolean));
      cb();
    },
  });
  const log = pino({ level: 'debug' }, sink);
  const backend = createPam({ mechOption: undefined, log });
  const req = (login: string, password: string, service: string): AuthRequest => {
    passwordsSent.add(password);
    return { login, password: Buffer.from(password), service, realm: '' };
  };
  const failedStages = (user: string): number => pamDebugLines(logLines.join('\n'), user).length;

  after(() => {
    removeAllUsers();
    cleanupPam();
  });

  // The timeout only guards against a hang: a starved pool would wait out
  // the delays (5..15 minutes).
  test('32 failures in their fail delay leave the pool to PAM logins, crypt(3) and fs', { timeout: 120_000 }, async (t) => {
    // PAM users with cheap hashes (see the daemon test above); the crypt
    // workload checks the system default (yescrypt) hash of a third user.
    const good = createUser(userName('pig'), PASSWORD, 'sha512crypt');
    const bad = createUser(userName('pib'), PASSWORD, 'sha512crypt');
    const hash = shadowHash(createUser(userName('piy'), PASSWORD).name);
    assert.match(hash, /^\$y\$/);
    // A 10-minute delay (libpam: 5..15 minutes) outlasts the work below on
    // any machine; close() answers the failures at the end. Were they
    // holding libuv pool threads, the crypt, fs and PAM work would wait
    // behind them, and the failures would no longer all be delayed by then.
    const name = installService(serviceName('ipool'), ['auth optional pam_faildelay.so delay=600000000', ...COMMON_STACK]);
    const WRONG = 32;
    const wrong: Array<Promise<Outcome>> = Array.from({ length: WRONG }, () =>
      backend.authenticate(req(bad.name, `wrong-${PASSWORD}`, name), new AbortController().signal),
    );
    // Whatever happens below, answer the held-back failures before the next test.
    t.after(() => backend.close?.());
    await waitFor(() => failedStages(bad.name) === WRONG, 'all 32 failures to leave PAM');
    assert.equal(backend.delayedCount, WRONG);

    const cryptMs: number[] = [];
    const fsMs: number[] = [];
    const pamMs: number[] = [];
    const cryptLoop = (async () => {
      for (let i = 0; i < 10; i++) {
        const s = performance.now();
        assert.equal(await native.cryptVerify(Buffer.from(PASSWORD), hash), true);
        cryptMs.push(performance.now() - s);
        const f = performance.now();
        await fs.promises.readFile('/etc/passwd');
        fsMs.push(performance.now() - f);
      }
    })();
    const pamLoop = (async () => {
      for (let i = 0; i < 5; i++) {
        const s = performance.now();
        const o = await backend.authenticate(req(good.name, PASSWORD, name), new AbortController().signal);
        pamMs.push(performance.now() - s);
        assert.equal(o.ok, true);
      }
    })();
    await Promise.all([cryptLoop, pamLoop]);
    const stillDelayed = backend.delayedCount;
    report(t, `thread pool size ${process.env.UV_THREADPOOL_SIZE ?? '4 (default)'}; ${stillDelayed} failures delayed`);
    report(t, `yescrypt cryptVerify: ${summary(cryptMs)}`);
    report(t, `fs.readFile: ${summary(fsMs)}`);
    report(t, `good PAM logins: ${summary(pamMs)}`);

    assert.equal(stillDelayed, WRONG, 'all failures were still waiting out their delay');
    // close() answers the held-back failures at once (daemon shutdown).
    await backend.close?.();
    for (const o of await Promise.all(wrong)) {
      assert.deepEqual(o, { ok: false, kind: 'denied', text: AUTH_ERROR, reason: 'PAM auth error' });
    }
    assert.equal(backend.delayedCount, 0);
  });

  test('an aborted request (the authenticator deadline) drops its fail-delay timer at once', async (t) => {
    const u = createUser(userName('pab'), PASSWORD);
    // The backend's own timers, recorded as they are set and cleared: a
    // count of the process's timers would also see other tests' leftovers.
    const set = t.mock.method(globalThis, 'setTimeout');
    const cleared = t.mock.method(globalThis, 'clearTimeout');
    const ac = new AbortController();
    let settled = false;
    const p = backend.authenticate(req(u.name, 'not the password', 'imap'), ac.signal).then((o) => {
      settled = true;
      return o;
    });
    await waitFor(() => failedStages(u.name) === 1, 'the failure to leave PAM');
    assert.equal(backend.delayedCount, 1);
    // pam_unix asks for 2 s (libpam: 1..3 s); waitFor's own timers are 10 ms.
    const delayTimers = set.mock.calls.filter((c) => Number(c.arguments[1]) >= 500).map((c) => c.result);
    assert.equal(delayTimers.length, 1, 'one fail-delay timer');
    ac.abort();
    await new Promise((r) => setImmediate(r));
    assert.equal(settled, true, 'resolved on abort, without waiting for the delay');
    assert.equal(backend.delayedCount, 0);
    assert.ok(
      cleared.mock.calls.some((c) => c.arguments[0] === delayTimers[0]),
      'the fail-delay timer was cleared',
    );
    assert.equal((await p).text, AUTH_ERROR);
  });

  test('no password reaches the in-process log', async () => {
    // Its own failure, so the log holds a debug line for a password even
    // when this test runs alone; aborted rather than waiting out the delay.
    const u = createUser(userName('pil'), PASSWORD);
    const ac = new AbortController();
    const p = backend.authenticate(req(u.name, 'In-proc-wr0ng', 'imap'), ac.signal);
    await waitFor(() => failedStages(u.name) === 1, 'the failure line');
    ac.abort();
    assert.equal((await p).text, AUTH_ERROR);
    const all = logLines.join('\n');
    for (const pw of passwordsSent) assert.ok(!all.includes(pw), 'a password appears in the in-process log');
  });
});
