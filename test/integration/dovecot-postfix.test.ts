// Real Postfix through the Dovecot door: Debian's Postfix, smtpd chrooted in
// its queue directory as Debian ships it, smtpd_sasl_type = dovecot and
// smtpd_sasl_path = private/saslauthd-ts, our daemon's --dovecot-socket in
// the private/ directory Postfix made, driven by swaks from 127.0.0.9 so the
// address the daemon logs is the client's, not loopback's default. A second
// smtpd uses the mux door (libsasl, the seed smtpd.conf) for comparison.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { startDaemon, type RunningDaemon } from '../helpers/daemon';
import { createUser, removeUser, runCmd, userName, type TestUser } from '../helpers/users';
import { cleanupPam, COMMON_STACK, installService, rhostRecorder, serviceName } from '../helpers/pam';
import { confText, serviceConf } from '../helpers/ldap';
import { startSlapd, USERS, type Slapd } from '../helpers/slapd';
import { ensureInGroup, replyTo, startPostfix, swaks, type PostfixInstance, type SwaksOptions } from '../helpers/postfix';

const PASSWORD = 'Dovecot-P4ss:w0rd!';
const WRONG = 'Not-the-P4ssword';
const REALM = 'example.org';
const REALM_PASSWORD = 'R3alm-D0ve!';
/** swaks connects from here: the address Postfix sees and hands over as rip=. */
const CLIENT_IP = '127.0.0.9';

/** The listeners, by index. */
const DOVECOT = 0;
const MUX = 1;
const DOVECOT_PAM = 2;
const FAKE_TEMP = 3;

describe('Postfix SMTP AUTH through the Dovecot door', () => {
  let pf: PostfixInstance;
  let daemon: RunningDaemon | undefined;
  let user: TestUser;
  let realmLocal = '';
  let realmUser = '';
  let pamService = '';
  let rec: { line: string; outFile: string };
  let fake: net.Server | undefined;
  let slapd: Slapd | undefined;
  let ldapDir = '';
  let restoreGroup: () => void = () => undefined;
  const daemonLogs: string[] = [];

  const socketPath = (): string => path.join(pf.queueDir, 'private', 'saslauthd-ts');
  const port = (i: number): number => pf.ports[i] ?? 0;
  const startOurDaemon = async (args: string[]): Promise<RunningDaemon> => {
    daemon = await startDaemon({ args: [...args, '-V'], runDir: pf.runDir, dovecotSocket: socketPath() });
    return daemon;
  };
  const stopOurDaemon = async (): Promise<void> => {
    if (daemon === undefined) return;
    daemonLogs.push(daemon.output());
    await daemon.stop();
    daemon = undefined;
  };
  const auth = (i: number, o: Partial<SwaksOptions>): Promise<string> =>
    swaks({ port: port(i), auth: 'PLAIN', user: user.name, password: PASSWORD, localAddress: CLIENT_IP, ...o }).then(
      (r) => r.stdout,
    );

  before(async () => {
    restoreGroup = ensureInGroup('postfix', 'sasl');
    user = createUser(userName('dv'), PASSWORD, 'sha512crypt');
    // A system account literally named local@example.org, for -r.
    realmLocal = `rd${process.pid.toString(36)}`;
    realmUser = `${realmLocal}@${REALM}`;
    removeUser(realmUser);
    runCmd('useradd', ['--badname', '-M', '-N', '-s', '/usr/sbin/nologin', realmUser]);
    runCmd('chpasswd', [], `${realmUser}:${REALM_PASSWORD}\n`);
    rec = rhostRecorder();
    pamService = installService(serviceName('dv'), [rec.line, ...COMMON_STACK]);
    const dovecot = { smtpd_sasl_type: 'dovecot', smtpd_sasl_path: 'private/saslauthd-ts' };
    pf = await startPostfix({
      listeners: [
        { overrides: dovecot },
        {},
        { overrides: { ...dovecot, smtpd_sasl_service: pamService } },
        { overrides: { ...dovecot, smtpd_sasl_path: 'private/fake-temp' } },
      ],
      // smtpd exits at its first connection when its auth socket is missing:
      // both must be up before Postfix's listeners are probed.
      beforeReady: async (p) => {
        pf = p;
        await startOurDaemon(['-a', 'shadow', '-r']);
        fake = await fakeTempServer(path.join(p.queueDir, 'private', 'fake-temp'));
      },
    });
  });

  after(async () => {
    await stopOurDaemon();
    fake?.close();
    await pf?.stop();
    await slapd?.cleanup();
    if (ldapDir !== '') fs.rmSync(ldapDir, { recursive: true, force: true });
    if (user !== undefined) removeUser(user.name);
    if (realmUser !== '') removeUser(realmUser);
    cleanupPam();
    restoreGroup();
  });

  test('the socket is postfix-owned 0660 in the private/ Postfix made, which is left as Postfix made it', () => {
    const st = fs.statSync(socketPath());
    assert.equal(st.mode & 0o7777, 0o660);
    const dir = fs.statSync(path.dirname(socketPath()));
    assert.equal(dir.mode & 0o7777, 0o700);
    assert.equal(st.uid, dir.uid, 'the socket belongs to the owner of private/ (postfix)');
  });

  test('EHLO offers AUTH PLAIN LOGIN, the mechanisms of the handshake', async () => {
    const t = (await swaks({ port: port(DOVECOT), localAddress: CLIENT_IP })).stdout;
    assert.match(t, /<- {2}250-AUTH PLAIN LOGIN/, t);
  });

  test('AUTH PLAIN with the right password gets 235 and the message is queued', async () => {
    const t = await auth(DOVECOT, { auth: 'PLAIN' });
    assert.match(replyTo(t, /AUTH PLAIN/) ?? '', /^235 2\.7\.0 /, t);
    assert.match(t, /<- {2}250 2\.0\.0 Ok: queued as [0-9A-F]+/, t);
    await pf.waitForLog(new RegExp(`client=unknown\\[${CLIENT_IP}\\], sasl_method=PLAIN, sasl_username=${user.name}`));
  });

  test("the daemon's line for the attempt carries the client's address as Postfix saw it", async () => {
    await daemon?.waitForLog(
      new RegExp(
        `auth success: \\[user=${user.name}\\] \\[service=smtp\\] \\[realm=\\] \\[remote=${CLIENT_IP.replace(/\./g, '\\.')}\\] \\[mech=shadow\\]`,
      ),
    );
  });

  test('AUTH LOGIN with the right password gets 235 and the message is queued', async () => {
    const t = await auth(DOVECOT, { auth: 'LOGIN' });
    assert.match(t, /<- {2}235 2\.7\.0 Authentication successful/, t);
    assert.match(t, /Ok: queued as/, t);
  });

  test('a wrong password gets 535, and the failure line names the address', async () => {
    const t = await auth(DOVECOT, { password: WRONG });
    assert.match(replyTo(t, /AUTH PLAIN/) ?? '', /^535 5\.7\.8 /, t);
    assert.doesNotMatch(t, /queued as/);
    await daemon?.waitForLog(
      new RegExp(
        `auth failure: \\[user=${user.name}\\] \\[service=smtp\\] \\[realm=\\] \\[remote=127\\.0\\.0\\.9\\] \\[mech=shadow\\] \\[reason=Incorrect password\\]`,
      ),
    );
  });

  test('without AUTH, relaying is refused at RCPT TO', async () => {
    const t = (await swaks({ port: port(DOVECOT), localAddress: CLIENT_IP })).stdout;
    // From outside mynetworks, Postfix's default smtpd_relay_restrictions
    // (defer_unauth_destination) refuse relaying with 454 before the 5xx
    // of smtpd_recipient_restrictions would.
    assert.match(replyTo(t, /RCPT TO/) ?? '', /^(454 4\.7\.1 <rcpt@example\.com>: Relay access denied|5\d\d )/, t);
    assert.doesNotMatch(t, /queued as/);
  });

  test('user@realm reaches the mechanism the same through both doors (split at the last @, then -r)', async () => {
    const line = `auth success: [user=${realmUser}] [service=smtp] [realm=${REALM}]`;
    const count = (): number => (daemon?.output() ?? '').split('\n').filter((l) => l.includes(line)).length;
    const viaDovecot = await auth(DOVECOT, { user: realmUser, password: REALM_PASSWORD });
    assert.match(replyTo(viaDovecot, /AUTH PLAIN/) ?? '', /^235 /, viaDovecot);
    await waitUntil(() => count() === 1);
    const viaMux = await auth(MUX, { user: realmUser, password: REALM_PASSWORD });
    assert.match(replyTo(viaMux, /AUTH PLAIN/) ?? '', /^235 /, viaMux);
    await waitUntil(() => count() === 2);
    assert.equal(count(), 2, daemon?.output());
  });

  test('Postfix reads a FAIL line as a wrong password even with temp (535): why the door closes the connection instead', async () => {
    const t = await auth(FAKE_TEMP, {});
    assert.match(replyTo(t, /AUTH PLAIN/) ?? '', /^535 5\.7\.8 /, t);
  });

  test('PAM sees the client address as PAM_RHOST', async () => {
    await stopOurDaemon();
    await startOurDaemon(['-a', 'pam']);
    const t = await auth(DOVECOT_PAM, {});
    assert.match(replyTo(t, /AUTH PLAIN/) ?? '', /^235 /, t);
    const seen = fs.readFileSync(rec.outFile, 'utf8').trim().split('\n');
    assert.ok(seen.includes(`${CLIENT_IP}|${user.name}|${pamService}`), seen.join('\n'));
  });

  describe('with the directory down (-a ldap, slapd stopped)', () => {
    const alice = USERS.alice;

    before(async () => {
      slapd = await startSlapd();
      ldapDir = fs.mkdtempSync(path.join(os.tmpdir(), 'dv-ldap-'));
      const conf = path.join(ldapDir, 'saslauthd.conf');
      fs.writeFileSync(conf, confText(serviceConf(slapd.ldapUrl)));
      await stopOurDaemon();
      await startOurDaemon(['-a', 'ldap', '-O', conf]);
    });

    test('with slapd up, both doors get 235', async () => {
      for (const i of [DOVECOT, MUX]) {
        const t = await auth(i, { user: alice.uid, password: alice.password });
        assert.match(replyTo(t, /AUTH PLAIN/) ?? '', /^235 /, t);
      }
    });

    test('the Dovecot door gets 454 (try again later)', async () => {
      await slapd?.stop();
      const t = await auth(DOVECOT, { user: alice.uid, password: alice.password });
      assert.match(replyTo(t, /AUTH PLAIN/) ?? '', /^454 4\.7\.0 Temporary authentication failure/, t);
      assert.doesNotMatch(t, /queued as/);
      await daemon?.waitForLog(
        /"result":"unavailable".*auth failure: \[user=alice\] \[service=smtp\] \[realm=\] \[remote=127\.0\.0\.9\] \[mech=ldap\]/,
      );
    });

    test('the same request over the mux door gets 535, as with Cyrus', async () => {
      const t = await auth(MUX, { user: alice.uid, password: alice.password });
      assert.match(replyTo(t, /AUTH PLAIN/) ?? '', /^535 5\.7\.8 /, t);
    });

    test('with slapd back, the Dovecot door gets 235 again', async () => {
      await slapd?.start();
      const t = await auth(DOVECOT, { user: alice.uid, password: alice.password });
      assert.match(replyTo(t, /AUTH PLAIN/) ?? '', /^235 /, t);
    });
  });

  test('no password reaches the daemon log or the mail log', async () => {
    await stopOurDaemon();
    const logs = [...daemonLogs, pf.log()].join('\n');
    assert.ok(logs.includes(user.name), 'logs are empty: nothing was checked');
    for (const secret of [PASSWORD, WRONG, REALM_PASSWORD, USERS.alice.password])
      assert.ok(!logs.includes(secret), `log holds ${secret}`);
  });
});

/**
 * A stand-in auth server that answers every AUTH with a FAIL carrying both
 * temporary-failure flags (protocol 1.1's "temp", Dovecot 2.2+'s
 * code=temp_fail): what the door would send if Postfix honoured them.
 */
async function fakeTempServer(socketPath: string): Promise<net.Server> {
  const srv = net.createServer((s) => {
    s.write('VERSION\t1\t2\nMECH\tPLAIN\tplaintext\nMECH\tLOGIN\tplaintext\nSPID\t1\nCUID\t1\nCOOKIE\t00\nDONE\n');
    let buf = '';
    s.on('data', (d: Buffer) => {
      buf += d.toString('latin1');
      for (let nl = buf.indexOf('\n'); nl >= 0; nl = buf.indexOf('\n')) {
        const [cmd, id] = buf.slice(0, nl).split('\t');
        buf = buf.slice(nl + 1);
        if (cmd === 'AUTH') s.write(`FAIL\t${id}\treason=backend down\ttemp\tcode=temp_fail\n`);
      }
    });
    s.on('error', () => undefined);
  });
  await new Promise<void>((resolve) => srv.listen(socketPath, resolve));
  fs.chmodSync(socketPath, 0o666);
  return srv;
}

async function waitUntil(cond: () => boolean, timeoutMs = 5000): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (!cond() && Date.now() < until) await new Promise((r) => setTimeout(r, 50));
}
