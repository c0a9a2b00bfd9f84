// --check and --dovecot-socket: the socket's row says where it is, what it
// will be (or is), and whether user postfix can reach it; a directory the
// daemon would refuse (missing, not a directory, a non-socket at the path)
// is an error, one postfix cannot get through a warning.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { checkConfiguration } from '../../../src/config/check';

const ROW = 'dovecot socket (--dovecot-socket)';

describe('--check with --dovecot-socket', () => {
  let dir: string;
  before(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'check-dovecot-'));
    fs.chmodSync(dir, 0o755);
  });
  after(() => {
    fs.rmSync(dir, { recursive: true, force: true });
  });

  const check = (socketPath: string | undefined, env: { postfixBinary?: string } = { postfixBinary: '/nonexistent' }) => {
    const r = checkConfiguration(
      ['-a', 'shadow', '-m', dir, ...(socketPath === undefined ? [] : ['--dovecot-socket', socketPath])],
      env,
    );
    return {
      row: r.settings.find(([k]) => k === ROW)?.[1] ?? '',
      errors: r.issues.filter((i) => i.severity === 'error').map((i) => i.message),
      warnings: r.issues.filter((i) => i.severity === 'warning').map((i) => i.message),
    };
  };

  test('without the flag the row says off', () => {
    assert.equal(check(undefined).row, 'off (--dovecot-socket)');
  });

  test('a path postfix can reach: what the socket will be, and reachable', () => {
    const r = check(path.join(dir, 'saslauthd-ts'));
    assert.deepEqual(r.errors, []);
    assert.match(r.row, /^\/.*saslauthd-ts \(postfix:postfix 0660 at start; reachable by user postfix\)$/);
  });

  test('a missing directory is an error: the daemon never creates it', () => {
    const r = check(path.join(dir, 'private', 'saslauthd-ts'));
    assert.equal(r.errors.length, 1);
    assert.match(r.errors[0]!, /--dovecot-socket .*: directory .*private does not exist, and saslauthd-ts never creates it/);
  });

  test('a file that is not a socket at the path is an error', () => {
    const p = path.join(dir, 'regular');
    fs.writeFileSync(p, '');
    assert.match(check(p).errors[0] ?? '', /exists and is not a socket/);
  });

  test('a directory postfix cannot get through is a warning naming it, and the row says NOT reachable', () => {
    const closed = path.join(dir, 'closed');
    fs.mkdirSync(closed);
    fs.chmodSync(closed, 0o700);
    const r = check(path.join(closed, 'saslauthd-ts'));
    assert.deepEqual(r.errors, []);
    assert.ok(
      r.warnings.some((w) => w.includes(`user postfix cannot reach it: ${closed} (root:root 0700) does not let it through`)),
      r.warnings.join('\n'),
    );
    assert.match(r.row, /NOT reachable by user postfix/);
  });

  test('an existing socket postfix may not connect to is a warning with the fix', () => {
    const p = path.join(dir, 'root-only');
    // A socket file left by a process that exited, made root-only.
    execFileSync(process.execPath, ['-e', `require('net').createServer().listen(${JSON.stringify(p)}, () => process.exit(0))`]);
    fs.chmodSync(p, 0o600);
    const r = check(p);
    assert.ok(
      r.warnings.some((w) => /user postfix cannot connect to this socket \(root:root 0600\); restart saslauthd-ts/.test(w)),
      r.warnings.join('\n'),
    );
    assert.match(r.row, /now root:root 0600; NOT reachable/);
  });

  test("outside Postfix's chroot is a warning when Postfix is installed, naming the path to use", () => {
    const r = check(path.join(dir, 'saslauthd-ts'), { postfixBinary: process.execPath });
    assert.ok(
      r.warnings.some((w) =>
        /outside Postfix's chroot .*use --dovecot-socket \/var\/spool\/postfix\/private\/saslauthd-ts/.test(w),
      ),
      r.warnings.join('\n'),
    );
  });

  test("inside the chroot, the row gives Postfix's smtpd_sasl_path", () => {
    const r = check('/var/spool/postfix/private/saslauthd-ts', { postfixBinary: process.execPath });
    if (!fs.existsSync('/var/spool/postfix/private')) {
      assert.match(r.errors[0] ?? '', /start Postfix first/);
      return;
    }
    assert.match(r.row, /Postfix: smtpd_sasl_path = private\/saslauthd-ts\)$/);
  });

  test('a relative path is refused', () => {
    const r = checkConfiguration(['-a', 'shadow', '-m', dir, '--dovecot-socket', 'private/saslauthd-ts'], {
      postfixBinary: '/nonexistent',
    });
    assert.match(r.issues[0]?.message ?? '', /--dovecot-socket private\/saslauthd-ts: needs an absolute path/);
  });
});
