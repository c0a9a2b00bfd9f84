// Real Postfix SMTP AUTH end to end: Debian's Postfix (smtpd chrooted as
// Debian ships it) with the seed's smtpd.conf and main.cf lines, libsasl's
// saslauthd client, our daemon (shadow, real system users), driven by swaks.
// The queue directory gets the layout the package creates in
// /var/spool/postfix (run dir root:sasl 0710, var/spool/postfix -> ../..),
// so the seed's absolute saslauthd_path is resolved inside the chroot.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { startDaemon, type RunningDaemon } from '../helpers/daemon';
import { createUser, removeUser, runCmd, userName, type TestUser } from '../helpers/users';
import {
  ensureInGroup,
  postfixCmd,
  replyTo,
  SEED_SMTPD_CONF,
  startPostfix,
  swaks,
  type PostfixInstance,
  type SwaksOptions,
} from '../helpers/postfix';

const PASSWORD = 'Smtp-P4ss:w0rd!';
const WRONG = 'Not-the-P4ssword';
const REALM = 'example.org';
const REALM_PASSWORD = 'R3alm-P4ss!';

/** Retry a transaction until check passes (Postfix replaces smtpd processes lazily). */
async function until(o: SwaksOptions, check: (transcript: string) => boolean, timeoutMs = 15_000): Promise<string> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const r = await swaks(o);
    if (check(r.stdout) || Date.now() > end) return r.stdout;
    await new Promise((res) => setTimeout(res, 300));
  }
}

/** Waits for a line matching re among those a log got after it had `from` characters. */
async function lineSince(log: () => string, from: number, re: RegExp, timeoutMs = 10_000): Promise<string> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const line = log()
      .slice(from)
      .split('\n')
      .find((l) => re.test(l));
    if (line !== undefined) return line;
    if (Date.now() > end) throw new Error(`no line matching ${re} since offset ${from}:\n${log().slice(from)}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** Pids of smtpd processes and the root directory each runs in. */
function smtpdRoots(): Array<{ pid: number; root: string }> {
  const out: Array<{ pid: number; root: string }> = [];
  for (const entry of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      if (fs.readlinkSync(`/proc/${entry}/exe`) !== '/usr/lib/postfix/sbin/smtpd') continue;
      out.push({ pid: Number(entry), root: fs.readlinkSync(`/proc/${entry}/root`) });
    } catch {
      // gone meanwhile
    }
  }
  return out;
}

describe('Postfix SMTP AUTH through saslauthd-ts', () => {
  let pf: PostfixInstance;
  let daemon: RunningDaemon | undefined;
  let user: TestUser;
  let realmUser = '';
  let realmLocal = '';
  let restoreGroup: () => void = () => undefined;
  const daemonLogs: string[] = [];

  let daemonArgs: string[] | undefined;
  const stopOurDaemon = async (): Promise<void> => {
    if (daemon === undefined) return;
    daemonLogs.push(daemon.output());
    await daemon.stop();
    daemon = undefined;
    daemonArgs = undefined;
  };
  /**
   * The daemon a test needs on the seed's socket path, started now unless
   * one with these extra flags already runs: every test sets up what it
   * needs instead of inheriting it from the test before.
   */
  const ourDaemon = async (extra: string[] = []): Promise<RunningDaemon> => {
    if (daemon !== undefined && daemonArgs?.join(' ') === extra.join(' ')) return daemon;
    await stopOurDaemon();
    daemon = await startDaemon({ args: ['-a', 'shadow', '-V', ...extra], runDir: pf.runDir });
    daemonArgs = extra;
    return daemon;
  };

  before(async () => {
    restoreGroup = ensureInGroup('postfix', 'sasl');
    pf = await startPostfix({
      listeners: [{}, { overrides: { smtpd_sasl_local_domain: REALM } }],
    });
    user = createUser(userName('pf'), PASSWORD);
    // A system account literally named local@example.org, for the -r case.
    realmLocal = `rb${process.pid.toString(36)}`;
    realmUser = `${realmLocal}@${REALM}`;
    removeUser(realmUser);
    runCmd('useradd', ['--badname', '-M', '-N', '-s', '/usr/sbin/nologin', realmUser]);
    runCmd('chpasswd', [], `${realmUser}:${REALM_PASSWORD}\n`);
  });

  after(async () => {
    await stopOurDaemon();
    await pf?.stop();
    if (user !== undefined) removeUser(user.name);
    if (realmUser !== '') removeUser(realmUser);
    restoreGroup();
  });

  test('uses the seed smtpd.conf, unmodified', () => {
    assert.equal(fs.readFileSync(path.join(pf.configDir, 'sasl', 'smtpd.conf'), 'utf8'), SEED_SMTPD_CONF);
  });

  test('smtpd runs chrooted in its queue directory, as Debian ships it', async () => {
    await ourDaemon();
    await swaks({ port: pf.ports[0] ?? 0 });
    const roots = smtpdRoots().filter((p) => p.root === pf.queueDir);
    assert.ok(roots.length > 0, `no smtpd chrooted in ${pf.queueDir}: ${JSON.stringify(smtpdRoots())}`);
  });

  test('AUTH PLAIN with the right password gets 235 and the message is queued', async () => {
    const d = await ourDaemon();
    const [fromPf, fromD] = [pf.log().length, d.output().length];
    const t = (await swaks({ port: pf.ports[0] ?? 0, auth: 'PLAIN', user: user.name, password: PASSWORD })).stdout;
    assert.match(replyTo(t, /AUTH PLAIN/) ?? '', /^235 /, t);
    assert.match(t, /<- {2}250 2\.0\.0 Ok: queued as [0-9A-F]+/, t);
    await lineSince(pf.log, fromPf, new RegExp(`sasl_method=PLAIN, sasl_username=${user.name}`));
    await lineSince(d.output, fromD, new RegExp(`auth success: \\[user=${user.name}\\] \\[service=smtp\\] \\[realm=\\]`));
  });

  test('AUTH LOGIN with the right password gets 235', async () => {
    await ourDaemon();
    const t = (await swaks({ port: pf.ports[0] ?? 0, auth: 'LOGIN', user: user.name, password: PASSWORD })).stdout;
    // LOGIN's last client line is the base64 password; the 235 follows it.
    assert.match(t, /<- {2}235 2\.7\.0 Authentication successful/, t);
    assert.match(t, /Ok: queued as/, t);
  });

  test('a wrong password gets 535', async () => {
    const d = await ourDaemon();
    const from = d.output().length;
    const t = (await swaks({ port: pf.ports[0] ?? 0, auth: 'PLAIN', user: user.name, password: WRONG })).stdout;
    assert.match(replyTo(t, /AUTH PLAIN/) ?? '', /^535 5\.7\.8 /, t);
    assert.doesNotMatch(t, /queued as/);
    await lineSince(
      d.output,
      from,
      new RegExp(
        `auth failure: \\[user=${user.name}\\] \\[service=smtp\\] \\[realm=\\] \\[mech=shadow\\] \\[reason=Incorrect password\\]`,
      ),
    );
  });

  test('without AUTH the recipient is refused at RCPT TO', async () => {
    await ourDaemon();
    const t = (await swaks({ port: pf.ports[0] ?? 0 })).stdout;
    assert.match(replyTo(t, /RCPT TO/) ?? '', /^5\d\d /, t);
    assert.doesNotMatch(t, /queued as/);
  });

  test('the seed path reaches the socket inside the chroot only through the var/spool/postfix link', async () => {
    await ourDaemon();
    const link = path.join(pf.queueDir, 'var', 'spool', 'postfix');
    const from = pf.log().length;
    fs.unlinkSync(link);
    try {
      const t = (await swaks({ port: pf.ports[0] ?? 0, auth: 'PLAIN', user: user.name, password: PASSWORD })).stdout;
      assert.match(replyTo(t, /AUTH PLAIN/) ?? '', /^454 4\.7\.0 /, t);
      await lineSince(pf.log, from, /cannot connect to saslauthd server: No such file or directory/);
    } finally {
      fs.symlinkSync('../..', link);
    }
    const t = (await swaks({ port: pf.ports[0] ?? 0, auth: 'PLAIN', user: user.name, password: PASSWORD })).stdout;
    assert.match(replyTo(t, /AUTH PLAIN/) ?? '', /^235 /, t);
  });

  test('smtpd is refused the socket (454, Permission denied) unless postfix is in group sasl', async () => {
    await ourDaemon();
    const o: SwaksOptions = { port: pf.ports[0] ?? 0, auth: 'PLAIN', user: user.name, password: PASSWORD };
    const from = pf.log().length;
    runCmd('gpasswd', ['-d', 'postfix', 'sasl']);
    try {
      await postfixCmd(pf.configDir, 'reload');
      const t = await until(o, (s) => /^454 /.test(replyTo(s, /AUTH PLAIN/) ?? ''));
      assert.match(replyTo(t, /AUTH PLAIN/) ?? '', /^454 4\.7\.0 /, t);
      await lineSince(pf.log, from, /cannot connect to saslauthd server: Permission denied/);
    } finally {
      runCmd('gpasswd', ['-a', 'postfix', 'sasl']);
      await postfixCmd(pf.configDir, 'reload');
    }
    const t = await until(o, (s) => /^235 /.test(replyTo(s, /AUTH PLAIN/) ?? ''));
    assert.match(replyTo(t, /AUTH PLAIN/) ?? '', /^235 /, t);
  });

  test('with the daemon stopped AUTH gets 454 (temporary)', async () => {
    await stopOurDaemon();
    const t = (await swaks({ port: pf.ports[0] ?? 0, auth: 'PLAIN', user: user.name, password: PASSWORD })).stdout;
    assert.match(replyTo(t, /AUTH PLAIN/) ?? '', /^454 4\.7\.0 Temporary authentication failure/, t);
    assert.doesNotMatch(t, /queued as/);
  });

  test('a daemon started again after one stopped gets AUTH 235', async () => {
    await ourDaemon();
    await stopOurDaemon();
    await ourDaemon();
    const t = (await swaks({ port: pf.ports[0] ?? 0, auth: 'PLAIN', user: user.name, password: PASSWORD })).stdout;
    assert.match(replyTo(t, /AUTH PLAIN/) ?? '', /^235 /, t);
    assert.match(t, /queued as/);
  });

  test('with smtpd_sasl_local_domain and -r, a bare name reaches the mechanism as name@domain', async () => {
    const d = await ourDaemon(['-r']);
    const from = d.output().length;
    const t = (await swaks({ port: pf.ports[1] ?? 0, auth: 'PLAIN', user: realmLocal, password: REALM_PASSWORD })).stdout;
    assert.match(replyTo(t, /AUTH PLAIN/) ?? '', /^235 /, t);
    await lineSince(
      d.output,
      from,
      new RegExp(`auth success: \\[user=${realmUser}\\] \\[service=smtp\\] \\[realm=${REALM}\\] \\[mech=shadow\\]`),
    );
  });

  test('with -r, bob@example.org typed in full reaches the mechanism as bob@example.org', async () => {
    // libsasl splits it into login "bob" and realm "example.org"; -r joins them.
    const d = await ourDaemon(['-r']);
    const from = d.output().length;
    const t = (await swaks({ port: pf.ports[0] ?? 0, auth: 'LOGIN', user: realmUser, password: REALM_PASSWORD })).stdout;
    assert.match(t, /<- {2}235 /, t);
    await lineSince(
      d.output,
      from,
      new RegExp(`auth success: \\[user=${realmUser}\\] \\[service=smtp\\] \\[realm=${REALM}\\] \\[mech=shadow\\]`),
    );
  });

  test('no password reaches the daemon log or the mail log', async () => {
    // Its own right, wrong and realm logins, so the logs hold this test's
    // traffic even when it runs alone; earlier daemons' logs are searched too.
    const d = await ourDaemon(['-r']);
    const from = d.output().length;
    const ok = (await swaks({ port: pf.ports[0] ?? 0, auth: 'PLAIN', user: user.name, password: PASSWORD })).stdout;
    assert.match(replyTo(ok, /AUTH PLAIN/) ?? '', /^235 /, ok);
    const no = (await swaks({ port: pf.ports[0] ?? 0, auth: 'PLAIN', user: user.name, password: WRONG })).stdout;
    assert.match(replyTo(no, /AUTH PLAIN/) ?? '', /^535 /, no);
    const realm = (await swaks({ port: pf.ports[1] ?? 0, auth: 'PLAIN', user: realmLocal, password: REALM_PASSWORD })).stdout;
    assert.match(replyTo(realm, /AUTH PLAIN/) ?? '', /^235 /, realm);
    await lineSince(d.output, from, new RegExp(`auth failure: \\[user=${user.name}\\]`));
    await lineSince(d.output, from, new RegExp(`auth success: \\[user=${realmUser}\\]`));
    const logs = [...daemonLogs, d.output(), pf.log()].join('\n');
    for (const secret of [PASSWORD, WRONG, REALM_PASSWORD]) assert.ok(!logs.includes(secret), `log holds ${secret}`);
  });
});
