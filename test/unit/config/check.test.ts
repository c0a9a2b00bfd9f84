// saslauthd-ts --check: every problem names its place and fails the check;
// the shipped defaults pass; the effective settings are printed.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { checkConfiguration } from '../../../src/config/check';
import { type CheckRun, checkRun } from '../../helpers/check-run';

const ROOT = path.resolve(__dirname, '..', '..', '..', '..');
const SHIPPED = path.join(ROOT, 'debian', 'saslauthd-ts.default');

describe('--check', () => {
  let dir: string;
  const file = (name: string, text: string): string => {
    const p = path.join(dir, name);
    fs.writeFileSync(p, text);
    return p;
  };
  const check = (argv: string[]): CheckRun => checkRun(argv);

  before(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'check-'));
  });
  after(() => {
    fs.rmSync(dir, { recursive: true, force: true });
  });

  test('the shipped /etc/default/saslauthd-ts passes and prints the effective settings', () => {
    const r = check(['-f', '--defaults-file', SHIPPED]);
    assert.equal(r.code, 0, r.err);
    assert.doesNotMatch(r.err, /error/);
    assert.match(r.out, /^mechanism \(-a\) +pam$/m);
    assert.match(r.out, /^socket +\/var\/spool\/postfix\/var\/run\/saslauthd\/mux$/m);
    assert.match(r.out, /^effective flags +-a pam -m \/var\/spool\/postfix\/var\/run\/saslauthd -n 5 -f$/m);
    assert.match(r.out, /^configuration OK/m);
  });

  test('an unknown key fails the check, naming file, line and key', () => {
    const p = file('unknown', 'MECHANISMS=shadow\nSTART=yes\nPWDIR=/var/run\n');
    const r = check(['-f', '--defaults-file', p]);
    assert.equal(r.code, 1);
    assert.match(r.err, new RegExp(`^saslauthd-ts: error: ${p}:3: PWDIR: unknown variable`, 'm'));
    assert.match(r.err, /configuration check failed: 1 error/);
  });

  test('a bad value fails the check, naming file, line and key', () => {
    const p = file('bad', 'MECHANISMS=shadow\nTHREADS=-1\n');
    const r = check(['-f', '--defaults-file', p]);
    assert.equal(r.code, 1);
    assert.match(r.err, new RegExp(`^saslauthd-ts: error: ${p}:2: THREADS: '-1' is not a whole number`, 'm'));
  });

  test('a missing defaults file fails the check, naming the file', () => {
    const p = path.join(dir, 'nonexistent');
    const r = check(['-f', '--defaults-file', p]);
    assert.equal(r.code, 1);
    assert.match(r.err, new RegExp(`^saslauthd-ts: error: ${p}: cannot read the defaults file: no such file`, 'm'));
    assert.doesNotMatch(r.err, /no authentication mechanism/);
  });

  test('an unimplemented Cyrus mechanism fails the check on the MECHANISMS line', () => {
    const p = file('mech', '\nMECHANISMS=sasldb\n');
    const r = check(['--defaults-file', p]);
    assert.equal(r.code, 1);
    assert.match(r.err, new RegExp(`${p}:2: MECHANISMS: sasldb is a Cyrus mechanism`));
  });

  test('a bad command-line flag fails the check, naming the command line', () => {
    const r = check(['-a', 'shadow', '-n', 'many']);
    assert.equal(r.code, 1);
    assert.match(r.err, /^saslauthd-ts: error: command line: -n: 'many' is not a whole number/m);
  });

  test('rimap without a server fails the check on the MECHANISMS line', () => {
    const p = file('rimap', 'MECHANISMS=rimap\nMECH_OPTIONS=""\n');
    const r = check(['--defaults-file', p]);
    assert.equal(r.code, 1);
    assert.match(r.err, new RegExp(`${p}:1: MECHANISMS: rimap: no hostname specified`));
  });

  test('a missing ldap configuration file fails the check, naming the file', () => {
    const p = path.join(dir, 'saslauthd.conf');
    const r = check(['-a', 'ldap', '-O', p]);
    assert.equal(r.code, 1);
    assert.match(r.err, new RegExp(`^saslauthd-ts: error: ${p}: cannot read the configuration file`, 'm'));
  });

  test('an unknown ldap key is reported with file, line and key (a warning: Cyrus 2.1.28 ignores it)', () => {
    const p = file('ldap.conf', 'ldap_servers: ldap://127.0.0.1/\nldap_frobnicate_level: one\n');
    const r = check(['-a', 'ldap', '-O', p]);
    assert.equal(r.code, 0, r.err);
    assert.match(r.err, new RegExp(`^saslauthd-ts: warning: ${p}:2: ldap_frobnicate_level: unknown key`, 'm'));
    assert.match(r.out, /^ {2}ldap_servers +ldap:\/\/127\.0\.0\.1\/$/m);
  });

  test('a misspelt ldap key fails the check and names the key it was meant to be', () => {
    const p = file('ldap-typo.conf', 'ldap_servers: ldap://127.0.0.1/\nldap_goup_dn: cn=mail,dc=x\n');
    const r = check(['-a', 'ldap', '-O', p]);
    assert.equal(r.code, 1);
    assert.match(
      r.err,
      new RegExp(`^saslauthd-ts: error: ${p}:2: ldap_goup_dn: unknown key \\(did you mean ldap_group_dn\\?\\)`, 'm'),
    );
  });

  test('ldap_tls_check_peer: no passes the check but is shown, as a warning and in the settings', () => {
    const p = file('ldap-nocheck.conf', 'ldap_servers: ldaps://127.0.0.1/\nldap_tls_check_peer: no\n');
    const r = check(['-a', 'ldap', '-O', p]);
    assert.equal(r.code, 0, r.err);
    assert.match(
      r.err,
      new RegExp(`^saslauthd-ts: warning: ${p}:2: ldap_tls_check_peer: no: the directory's TLS certificate is not verified`, 'm'),
    );
    assert.match(r.out, /^ {2}ldap_tls_check_peer +no$/m);
  });

  test('a password in a rimap -O URI is masked in the settings and in the error', () => {
    const r = check(['-a', 'rimap', '-O', 'imaps://user:Zq-secret@mail.example.org']);
    assert.equal(r.code, 1);
    assert.match(r.out, /^mechanism option \(-O\) +imaps:\/\/user:\*\*\*@mail\.example\.org$/m);
    assert.match(r.err, /rimap: -O 'imaps:\/\/user:\*\*\*@mail\.example\.org': user names or passwords do not belong in -O/);
    assert.ok(!`${r.out}${r.err}`.includes('Zq-secret'));
  });

  test('a password in an ldap_servers URI is masked in the warning and in the effective settings', () => {
    const p = file('ldap-userinfo.conf', 'ldap_servers: ldap://cn=admin:Zq-secret@127.0.0.1/ ldap://127.0.0.1/\n');
    const r = check(['-a', 'ldap', '-O', p]);
    assert.match(r.err, /ldap_servers: 'ldap:\/\/cn=admin:\*\*\*@127\.0\.0\.1\/': cannot read host and port; ignored/);
    assert.match(r.out, /^ {2}ldap_servers +ldap:\/\/cn=admin:\*\*\*@127\.0\.0\.1\/ ldap:\/\/127\.0\.0\.1\/$/m);
    assert.ok(!`${r.out}${r.err}`.includes('Zq-secret'));
  });

  test("pam: warns when --auth-timeout is below the longest pam_faildelay delay, times libpam's 1.5, naming file and line", () => {
    const pamDir = path.join(dir, 'pam.d');
    fs.mkdirSync(pamDir);
    fs.writeFileSync(path.join(pamDir, 'other'), '@include common-auth\n');
    fs.writeFileSync(path.join(pamDir, 'login'), '# delay=99000000 in a comment\nauth optional pam_faildelay.so delay=3000000\n');
    fs.writeFileSync(path.join(pamDir, 'imap'), 'auth  [default=die]  pam_faildelay.so   delay=8000000\n@include common-auth\n');
    const warnings = (argv: string[]): string[] =>
      checkConfiguration(['-a', 'pam', '-m', '/var/spool/postfix/var/run/saslauthd', ...argv], {
        pamDir,
        postfixBinary: '/nonexistent',
      })
        .issues.filter((i) => i.severity === 'warning')
        .map((i) => `${i.file}:${i.line}: ${i.message}`);
    const expected =
      `${path.join(pamDir, 'imap')}:1: pam_faildelay delay=8000000 holds a wrong password's answer up to 12 s (libpam varies the delay from 0.5 to 1.5 times), ` +
      'longer than --auth-timeout 11 s: such answers are then given when --auth-timeout expires, cutting the delay short; set --auth-timeout 12 or more';
    assert.deepEqual(warnings(['--auth-timeout', '11']), [expected]);
    assert.deepEqual(warnings(['--auth-timeout', '12']), []);
    fs.rmSync(path.join(pamDir, 'imap'));
    assert.match(
      warnings(['--auth-timeout', '4'])[0] ?? '',
      /login:2: pam_faildelay delay=3000000 holds a wrong password's answer up to 4\.5 s .*set --auth-timeout 5 or more$/,
    );
  });

  test('the shipped /etc/default/saslauthd-ts passes without a single warning', () => {
    const r = check(['-f', '--defaults-file', SHIPPED]);
    assert.equal(r.code, 0, r.err);
    assert.equal(r.err, '');
  });

  test("START=yes in our defaults file is a warning naming file, line and key: Cyrus's init script would start on it", () => {
    const p = file('start-yes', 'MECHANISMS=shadow\nSTART=yes\n');
    const r = check(['-f', '--defaults-file', p]);
    assert.equal(r.code, 0, r.err);
    assert.match(
      r.err,
      new RegExp(`^saslauthd-ts: warning: ${p}:2: START: 'yes' makes Cyrus's saslauthd init script.*; set START=no`, 'm'),
    );
  });

  test('START=no in our defaults file passes without a warning', () => {
    const p = file('start-no', 'START=no\nMECHANISMS=shadow\n');
    const r = checkConfiguration(['-f', '--defaults-file', p], { cyrusInitScript: process.execPath });
    assert.deepEqual(
      r.issues.filter((i) => i.key === 'START'),
      [],
    );
  });

  test("a defaults file without START is a warning when Cyrus's init script is installed", () => {
    const p = file('start-unset', 'MECHANISMS=shadow\n');
    const r = checkConfiguration(['-f', '--defaults-file', p], { cyrusInitScript: process.execPath });
    const start = r.issues.filter((i) => i.key === 'START');
    assert.equal(start.length, 1, JSON.stringify(r.issues));
    assert.equal(start[0]?.severity, 'warning');
    assert.equal(start[0]?.file, p);
    assert.match(start[0]?.message ?? '', /^not set: .*set START=no/);
  });

  test("a defaults file without START passes without a warning when Cyrus's init script is not installed", () => {
    const p = file('start-unset-no-cyrus', 'MECHANISMS=shadow\n');
    const r = checkConfiguration(['-f', '--defaults-file', p], { cyrusInitScript: path.join(dir, 'no-init-script') });
    assert.deepEqual(
      r.issues.filter((i) => i.key === 'START'),
      [],
    );
  });

  test('--workers above the CPU count is a warning, and the settings show the count that runs', () => {
    const p = file('workers', 'MECHANISMS=shadow\nSTART=no\nOPTIONS="--workers 8"\n');
    const r = checkConfiguration(['-f', '--defaults-file', p], { cpus: 2 });
    const w = r.issues.filter((i) => i.severity === 'warning' && /--workers/.test(i.message));
    assert.equal(w.length, 1, JSON.stringify(r.issues));
    assert.equal(w[0]?.file, p);
    assert.equal(w[0]?.line, 3);
    assert.equal(w[0]?.key, 'OPTIONS');
    assert.match(w[0]?.message ?? '', /--workers 8: this machine has 2 CPUs, so 2 worker processes run/);
    assert.deepEqual(
      r.settings.find(([k]) => k === 'worker processes (--workers)'),
      ['worker processes (--workers)', '2 (--workers 8, capped at the CPU count)'],
    );
  });

  test('--workers within the CPU count is shown as given, without a warning', () => {
    const r = checkConfiguration(['-a', 'shadow', '--workers', '2'], { cpus: 2 });
    assert.deepEqual(
      r.issues.filter((i) => /--workers/.test(i.message)),
      [],
    );
    assert.deepEqual(
      r.settings.find(([k]) => k === 'worker processes (--workers)'),
      ['worker processes (--workers)', '2'],
    );
  });

  test('a run directory any user can enter is a warning', () => {
    const run = path.join(dir, 'open-run');
    fs.mkdirSync(run, { mode: 0o755 });
    fs.chmodSync(run, 0o755);
    const r = checkConfiguration(['-a', 'shadow', '-m', run], { postfixBinary: '/nonexistent' });
    const w = r.issues.filter((i) => i.severity === 'warning').map((i) => i.message);
    assert.ok(
      w.some((m) => /lets every local user reach the socket/.test(m)),
      w.join('\n'),
    );
    assert.equal(r.issues.filter((i) => i.severity === 'error').length, 0);
  });

  test('a run directory outside the Postfix chroot is a warning when Postfix is installed', () => {
    const r = checkConfiguration(['-a', 'shadow', '-m', '/var/run/saslauthd-ts-check-test'], {
      postfixBinary: process.execPath,
    });
    const w = r.issues.filter((i) => i.severity === 'warning').map((i) => i.message);
    assert.ok(
      w.some((m) => /outside Postfix's chroot/.test(m)),
      w.join('\n'),
    );
  });

  test('shows every throttle threshold, window, cap and TTL, with the flag that sets it', () => {
    const r = check(['-a', 'shadow', '-m', dir, '--throttle-free', '7', '--throttle-cooloff', '120', '--shed-after', '0']);
    assert.equal(r.code, 0, r.err);
    for (const re of [
      /throttle \(--throttle\)\s+on/,
      /window\s+600 s \(--throttle-window\)/,
      /free failures\s+7 \(--throttle-free\)/,
      /delays\s+2000 ms doubling to 15000 ms/,
      /refused past\s+20 failures, for 120 s/,
      /tracked at most\s+100000/,
      /known-good\s+100000 at most, for 604800 s/,
      /shedding\s+off \(--shed-after 0\)/,
    ]) {
      assert.match(r.out, re);
    }
  });

  test('--throttle off says it is Cyrus behaviour', () => {
    const r = check(['-a', 'shadow', '-m', dir, '--throttle', 'off']);
    assert.match(r.out, /throttle \(--throttle\)\s+off: no priority, delays, refusals or shedding \(Cyrus behaviour\)/);
  });

  test('thresholds that contradict each other are refused, naming both flags', () => {
    const r = check(['-a', 'shadow', '-m', dir, '--throttle-free', '20', '--throttle-refuse', '10']);
    assert.equal(r.code, 1);
    assert.match(r.err, /--throttle-refuse \(10\) must be above --throttle-free \(20\)/);
  });
});
