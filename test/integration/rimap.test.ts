// rimap against a real, private Dovecot: Cyrus's replies through Debian's
// testsaslauthd and our client, awkward passwords, imaps and STARTTLS with a
// private CA, untrusted certificates refused, a silent server answered within
// the deadline, failover to a second server, and 100 logins at once.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { DAEMON_BIN, startDaemon, type RunningDaemon } from '../helpers/daemon';
import { freePort, startDovecot, type Dovecot, type DovecotUser } from '../helpers/dovecot';
import { startCaptureProxy, startSilentServer, type SilentServer } from '../helpers/tcp';
import { TIMEOUT_REPLY } from '../../src/backends/backend';
import { sendRequest } from '../../src/client/request';

const TESTSASLAUTHD = '/usr/sbin/testsaslauthd';
const OK = 'OK remote authentication successful';
const REJECTED = 'NO remote server rejected your credentials';
const NO_CONTACT = "NO [ALERT] Couldn't contact remote authentication server";

const ALICE: DovecotUser = { name: 'alice', password: 'alice-Pw-7781' };
/**
 * The awkward ones: each must authenticate when right. (CR LF cannot: Dovecot
 * refuses such passwords itself, "password having illegal chars"; see
 * rimap-injection.test.ts.)
 */
const SPECIAL: DovecotUser[] = [
  { name: 'quote', password: 'pa"ss"wo"rd-q01' },
  { name: 'backslash', password: 'back\\slash\\\\-b02\\' },
  { name: 'spaces', password: ' spaced  out pass-s03 ' },
  { name: 'utf8', password: 'pässwörd-日本語-🔑-u04' },
  { name: 'mixed', password: '\\"{5} * OK "x"\\-m05' },
];
const CONCURRENT: DovecotUser[] = Array.from({ length: 10 }, (_, i) => ({ name: `conc${i}`, password: `conc-pw-${i}-c06` }));
/** Only ever offered to servers with a certificate we must refuse. */
const UNTRUSTED: DovecotUser = { name: 'untrusted', password: 'never-sent-pw-t07' };
const ALL_USERS = [ALICE, UNTRUSTED, ...SPECIAL, ...CONCURRENT];

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

function testsaslauthd(socketPath: string, user: string, password: string): Promise<Run> {
  return new Promise((resolve, reject) => {
    const c = spawn(TESTSASLAUTHD, ['-f', socketPath, '-u', user, '-p', password], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    c.stdout.on('data', (d: Buffer) => (stdout += d.toString('utf8')));
    c.stderr.on('data', (d: Buffer) => (stderr += d.toString('utf8')));
    c.once('error', reject);
    c.once('close', (code) => resolve({ code, stdout, stderr }));
  });
}

function ask(d: RunningDaemon, login: string, password: string): Promise<string> {
  return sendRequest(d.socketPath, { login, password, service: 'imap', realm: '' }, 20_000);
}

/** Waits for a line matching re that d logged after its output had `from` characters. */
async function logSince(d: RunningDaemon, from: number, re: RegExp): Promise<string> {
  const until = Date.now() + 5000;
  for (;;) {
    const line = d
      .output()
      .slice(from)
      .split('\n')
      .find((l) => re.test(l));
    if (line !== undefined) return line;
    if (Date.now() > until) throw new Error(`no log line matching ${re} since offset ${from}:\n${d.output().slice(from)}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** TLS record header of a handshake (ClientHello): content type 22, version 3.x. */
const isTlsHandshake = (b: Buffer): boolean => b.length >= 3 && b[0] === 0x16 && b[1] === 0x03;

describe('rimap against a real Dovecot', () => {
  let dovecot: Dovecot;
  let silent: SilentServer;
  const daemons: RunningDaemon[] = [];
  let plain: RunningDaemon;
  let imaps: RunningDaemon;
  let starttls: RunningDaemon;

  const daemon = async (option: string, extra: string[] = []): Promise<RunningDaemon> => {
    const d = await startDaemon({ args: ['-a', 'rimap', '-O', option, ...extra], mode: '-d' });
    daemons.push(d);
    return d;
  };

  before(async () => {
    dovecot = await startDovecot(ALL_USERS);
    silent = await startSilentServer();
    [plain, imaps, starttls] = await Promise.all([
      daemon(`127.0.0.1/${dovecot.imapPort}`),
      daemon(`imaps://127.0.0.1:${dovecot.imapsPort}?cafile=${dovecot.caFile}`),
      // By name: localhost resolves (at connect time) to ::1 and 127.0.0.1; Dovecot listens on the latter only.
      daemon(`imap://localhost:${dovecot.imapPort}?starttls&cafile=${dovecot.caFile}`),
    ]);
  });

  after(async () => {
    // No password may reach any log, at debug level included.
    const logs = daemons.map((d) => d.output()).join('\n');
    await Promise.all(daemons.map((d) => d.stop()));
    await silent?.close();
    const dovecotLog = dovecot?.log() ?? '';
    await dovecot?.stop();
    for (const u of ALL_USERS) {
      assert.ok(!logs.includes(u.password), `password of ${u.name} found in the daemon log`);
      assert.ok(!dovecotLog.includes(u.password), `password of ${u.name} found in Dovecot's log`);
    }
  });

  describe('Cyrus syntax (host/port, plain IMAP)', () => {
    test('right password OK, wrong NO, unknown user NO through Debian testsaslauthd', async () => {
      const right = await testsaslauthd(plain.socketPath, ALICE.name, ALICE.password);
      assert.deepEqual([right.code, right.stdout], [0, '0: OK "Success."\n']);
      const wrong = await testsaslauthd(plain.socketPath, ALICE.name, 'not-the-password');
      assert.deepEqual([wrong.code, wrong.stdout], [255, '0: NO "authentication failed"\n']);
      const unknown = await testsaslauthd(plain.socketPath, 'nosuchuser', ALICE.password);
      assert.deepEqual([unknown.code, unknown.stdout], [255, '0: NO "authentication failed"\n']);
    });

    test("right password OK, wrong NO, unknown user NO through our client, with Cyrus's texts", async () => {
      assert.equal(await ask(plain, ALICE.name, ALICE.password), OK);
      assert.equal(await ask(plain, ALICE.name, `${ALICE.password}x`), REJECTED);
      assert.equal(await ask(plain, 'nosuchuser', ALICE.password), REJECTED);
    });

    test('logs success and failure lines with the mechanism and the result kind', async () => {
      const from = plain.output().length;
      assert.equal(await ask(plain, ALICE.name, ALICE.password), OK);
      assert.equal(await ask(plain, 'nosuchuser', ALICE.password), REJECTED);
      const success = await logSince(plain, from, /auth success: \[user=alice\] \[service=imap\] \[realm=\] \[mech=rimap\]/);
      assert.match(success, /"result":"ok"/);
      const failure = await logSince(
        plain,
        from,
        /auth failure: \[user=nosuchuser\].*\[reason=remote server rejected your credentials\]/,
      );
      assert.match(failure, /"result":"denied"/);
    });

    test('passwords with ", \\, spaces and UTF-8 authenticate when right (testsaslauthd too)', async () => {
      for (const u of SPECIAL) {
        assert.equal(await ask(plain, u.name, u.password), OK, u.name);
        assert.equal(await ask(plain, u.name, u.password.slice(0, -1)), REJECTED, `${u.name}, one character short`);
      }
      for (const u of SPECIAL) {
        const r = await testsaslauthd(plain.socketPath, u.name, u.password);
        assert.deepEqual([r.code, r.stdout], [0, '0: OK "Success."\n'], u.name);
      }
    });
  });

  describe('TLS', () => {
    test('imaps:// with the CA file: right OK, wrong NO, unknown NO', async () => {
      assert.equal(await ask(imaps, ALICE.name, ALICE.password), OK);
      assert.equal(await ask(imaps, ALICE.name, 'wrong'), REJECTED);
      assert.equal(await ask(imaps, 'nosuchuser', 'wrong'), REJECTED);
      const r = await testsaslauthd(imaps.socketPath, ALICE.name, ALICE.password);
      assert.deepEqual([r.code, r.stdout], [0, '0: OK "Success."\n']);
    });

    test('STARTTLS with the CA file, by host name: right OK, wrong NO, unknown NO', async () => {
      assert.equal(await ask(starttls, ALICE.name, ALICE.password), OK);
      assert.equal(await ask(starttls, ALICE.name, 'wrong'), REJECTED);
      assert.equal(await ask(starttls, 'nosuchuser', 'wrong'), REJECTED);
      const r = await testsaslauthd(starttls.socketPath, ALICE.name, ALICE.password);
      assert.deepEqual([r.code, r.stdout], [0, '0: OK "Success."\n']);
    });

    test('awkward passwords authenticate over imaps (LITERAL+) and STARTTLS (synchronizing literals)', async () => {
      for (const d of [imaps, starttls]) {
        for (const u of SPECIAL) assert.equal(await ask(d, u.name, u.password), OK, u.name);
      }
    });

    test('the password crosses the wire only inside TLS over imaps and STARTTLS, and in clear text with ?plain', async () => {
      // A recording proxy in front of each Dovecot port sees every byte the daemon sends.
      const toImaps = await startCaptureProxy(dovecot.imapsPort);
      const toImap = await startCaptureProxy(dovecot.imapPort);
      try {
        const password = Buffer.from(ALICE.password);
        const sent = async (option: string, proxy: typeof toImap): Promise<Buffer> => {
          const d = await daemon(option);
          const before = proxy.connections().length;
          assert.equal(await ask(d, ALICE.name, ALICE.password), OK, option);
          // Recorded before being passed on: Dovecot's OK came after all of it.
          return Buffer.concat(
            proxy
              .connections()
              .slice(before)
              .map((c) => c.up),
          );
        };

        const imapsUp = await sent(`imaps://127.0.0.1:${toImaps.port}?cafile=${dovecot.caFile}`, toImaps);
        assert.ok(isTlsHandshake(imapsUp), `imaps starts with a TLS handshake: ${imapsUp.subarray(0, 16).toString('hex')}`);
        assert.equal(imapsUp.includes(password), false, 'imaps: the password went in clear text');

        const starttlsUp = await sent(`imap://127.0.0.1:${toImap.port}?starttls&cafile=${dovecot.caFile}`, toImap);
        const firstLine = starttlsUp.subarray(0, starttlsUp.indexOf('\r\n') + 2);
        assert.match(firstLine.toString('latin1'), /^\S+ STARTTLS\r\n$/, 'the only clear-text line is STARTTLS');
        assert.ok(isTlsHandshake(starttlsUp.subarray(firstLine.length)), 'then a TLS handshake');
        assert.equal(starttlsUp.includes(password), false, 'STARTTLS: the password went in clear text');

        // The same check sees a clear-text password when there is one.
        const plainUp = await sent(`imap://127.0.0.1:${toImap.port}?plain`, toImap);
        assert.equal(plainUp.includes(password), true, '?plain sends the password in clear text');
      } finally {
        await toImaps.close();
        await toImap.close();
      }
    });

    test('an untrusted certificate is refused before any password is sent', async () => {
      const cases: Array<[string, RegExp]> = [
        // No cafile: the system store does not know the test CA.
        [`imaps://127.0.0.1:${dovecot.imapsPort}`, /"sysCode":"UNABLE_TO_VERIFY_LEAF_SIGNATURE"/],
        // STARTTLS, with a CA that did not sign the server's certificate.
        [`imap://127.0.0.1:${dovecot.imapPort}?cafile=${dovecot.otherCaFile}`, /"sysCode":"UNABLE_TO_VERIFY_LEAF_SIGNATURE"/],
        // The right CA, but the certificate does not name the expected host.
        [
          `imaps://127.0.0.1:${dovecot.imapsPort}?cafile=${dovecot.caFile}&servername=mail.example.org`,
          /"sysCode":"ERR_TLS_CERT_ALTNAME_INVALID"/,
        ],
      ];
      const from = dovecot.log().length;
      for (const [option, why] of cases) {
        const d = await daemon(option);
        assert.equal(await ask(d, UNTRUSTED.name, UNTRUSTED.password), NO_CONTACT, option);
        const line = await d.waitForLog(/"code":"RIMAP_TLS"/);
        assert.match(line, why, line);
        await d.waitForLog(/"result":"unavailable".*auth failure: \[user=untrusted\]/);
      }
      // Dovecot logs each connection's end: wait for all three (not for a
      // while), then nothing about these sessions can come later.
      const ends = (): string[] =>
        dovecot
          .log()
          .slice(from)
          .split('\n')
          .filter((l) => /imap-login: .*Disconnected/.test(l));
      for (const end = Date.now() + 10_000; ends().length < cases.length; await new Promise((r) => setTimeout(r, 20))) {
        if (Date.now() > end)
          throw new Error(`Dovecot logged ${ends().length} of ${cases.length} disconnects:\n${dovecot.log().slice(from)}`);
      }
      for (const l of ends()) assert.match(l, /no auth attempts.*user=<>.*TLS handshaking/, l);
      assert.doesNotMatch(dovecot.log().slice(from), /untrusted/, 'Dovecot never saw the user, so never the password');
    });
  });

  describe('deadlines and several servers', () => {
    test('a silent server (accepts, never speaks) is answered NO within the request deadline, logged as a timeout', async () => {
      const d = await daemon(`127.0.0.1/${silent.port}`, ['--auth-timeout', '3']);
      const t0 = Date.now();
      const reply = await ask(d, ALICE.name, ALICE.password);
      const ms = Date.now() - t0;
      // The deadline's own answer: rimap's per-step timeout (10 s by
      // default) would have given "unavailable" instead. No upper bound of
      // time is needed to tell them apart.
      assert.equal(reply, TIMEOUT_REPLY);
      assert.ok(ms >= 2900, `answered after ${ms} ms, before the 3 s deadline`);
      const line = await d.waitForLog(/auth failure: \[user=alice\]/);
      assert.match(line, /"result":"timeout"/);
      assert.ok(silent.accepted() >= 1);
    });

    test('with timeout= the silent server is given up per step, before the request deadline', async () => {
      const d = await daemon(`imap://127.0.0.1:${silent.port}?plain&timeout=1`, ['--auth-timeout', '5']);
      const t0 = Date.now();
      // rimap's own answer: the 5 s request deadline would have answered TIMEOUT_REPLY.
      assert.equal(
        await ask(d, ALICE.name, ALICE.password),
        'NO [ALERT] The remote authentication server is currently unavailable',
      );
      const ms = Date.now() - t0;
      assert.ok(ms >= 900, `answered after ${ms} ms, before the 1 s step timeout`);
      await d.waitForLog(/"code":"RIMAP_TIMEOUT"/);
    });

    test('a dead first server: the second one answers', async () => {
      const dead = await freePort();
      const d = await daemon(`127.0.0.1/${dead},imaps://127.0.0.1:${dovecot.imapsPort}?cafile=${dovecot.caFile}`);
      assert.equal(await ask(d, ALICE.name, ALICE.password), OK);
      assert.equal(await ask(d, ALICE.name, 'wrong'), REJECTED);
      const line = await d.waitForLog(/trying the next server/);
      assert.match(line, /ECONNREFUSED/);
    });

    test('an unresolvable first server neither stops startup nor login: names are resolved at connect time', async () => {
      const d = await daemon(`imap://nonexistent.invalid?plain&connect_timeout=2,127.0.0.1/${dovecot.imapPort}`);
      assert.equal(await ask(d, ALICE.name, ALICE.password), OK);
      const line = await d.waitForLog(/"code":"RIMAP_DNS"/);
      assert.match(line, /nonexistent\.invalid.*trying the next server/);
    });

    test('a silent first server: the second one answers after its timeout', async () => {
      const d = await daemon(`imap://127.0.0.1:${silent.port}?plain&timeout=1,127.0.0.1/${dovecot.imapPort}`);
      assert.equal(await ask(d, ALICE.name, ALICE.password), OK);
    });
  });

  describe('startup', () => {
    test('a bad -O stops the daemon at startup with exit 1 and says what is wrong', async () => {
      const cases: Array<[string[], RegExp]> = [
        [[], /failed to initialize mechanism rimap: no hostname specified/],
        [
          ['-O', '127.0.0.1:143x'],
          /failed to initialize mechanism rimap: -O '127\.0\.0\.1:143x': '143x' is neither a port number nor a service name/,
        ],
        [['-O', 'imaps://127.0.0.1?cafile=/nonexistent/ca.pem'], /cafile=\/nonexistent\/ca\.pem: ENOENT/],
      ];
      for (const [args, re] of cases) {
        const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'rimap-badopt-'));
        try {
          const r = spawnSync(process.execPath, [DAEMON_BIN, '-f', '-m', dir, '-a', 'rimap', ...args], {
            encoding: 'utf8',
            timeout: 10_000,
          });
          assert.equal(r.status, 1, `${args.join(' ')}: ${r.stderr}`);
          assert.match(r.stderr, re);
        } finally {
          fs.rmSync(dir, { recursive: true, force: true });
        }
      }
    });
  });

  describe('load', () => {
    test('100 concurrent authentications over imaps are all answered correctly', async () => {
      // Half of them are distinct wrong passwords for a few logins, which the
      // throttle would rightly take for guessing and hold back: this is a test
      // of concurrent IMAP sessions, so it runs without it.
      const d = await daemon(`imaps://127.0.0.1:${dovecot.imapsPort}?cafile=${dovecot.caFile}`, ['--throttle', 'off']);
      const jobs = Array.from({ length: 100 }, (_, i) => {
        const u = CONCURRENT[i % CONCURRENT.length]!;
        const right = i % 2 === 0;
        return { u, right, reply: ask(d, u.name, right ? u.password : `${u.password}-wrong${i}`) };
      });
      const replies = await Promise.all(jobs.map((j) => j.reply));
      jobs.forEach((j, i) =>
        assert.equal(replies[i], j.right ? OK : REJECTED, `request ${i} (${j.u.name}, ${j.right ? 'right' : 'wrong'})`),
      );
    });
  });
});
