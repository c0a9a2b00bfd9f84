// The run directory the daemon creates itself (started by hand, without the
// unit's ExecStartPre helper) is what the man page says: root:sasl 0710,
// with traversable parents; an existing directory is left alone.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ensureRunDir, groupId } from '../../../src/server/run-dir';

describe('run directory', () => {
  let dir: string;
  let groupFile: string;

  before(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'run-dir-'));
    // A group file of our own, so the test does not depend on this machine's.
    groupFile = path.join(dir, 'group');
    fs.writeFileSync(groupFile, 'root:x:0:\nsaslish:x:44:\nsasl:x:4545:postfix\n');
  });
  after(() => {
    fs.rmSync(dir, { recursive: true, force: true });
  });

  test('groupId reads the gid of the named group, not of a group whose name starts the same', () => {
    assert.equal(groupId('sasl', groupFile), 4545);
    assert.equal(groupId('nosuch', groupFile), undefined);
  });

  test('a missing run directory is created 0710, group sasl, with 0755 parents, whatever the umask', () => {
    const target = path.join(dir, 'a', 'b', 'saslauthd');
    const old = process.umask(0o077);
    let r;
    try {
      r = ensureRunDir(target, groupFile);
    } finally {
      process.umask(old);
    }
    assert.deepEqual(r, { created: true, group: process.getuid?.() === 0 ? 'sasl' : 'root' });
    const st = fs.statSync(target);
    assert.equal(st.mode & 0o7777, 0o710);
    if (process.getuid?.() === 0) assert.equal(st.gid, 4545);
    assert.equal(fs.statSync(path.join(dir, 'a')).mode & 0o7777, 0o755);
    assert.equal(fs.statSync(path.join(dir, 'a', 'b')).mode & 0o7777, 0o755);
  });

  test('without a sasl group the created directory is root:root 0710', () => {
    const noSasl = path.join(dir, 'group-without-sasl');
    fs.writeFileSync(noSasl, 'root:x:0:\n');
    const target = path.join(dir, 'no-sasl', 'saslauthd');
    assert.deepEqual(ensureRunDir(target, noSasl), { created: true, group: 'root' });
    const st = fs.statSync(target);
    assert.equal(st.mode & 0o7777, 0o710);
    assert.equal(st.gid, process.getgid?.());
  });

  test("an existing run directory keeps the admin's owner and mode", () => {
    const target = path.join(dir, 'existing');
    fs.mkdirSync(target);
    fs.chmodSync(target, 0o750);
    assert.deepEqual(ensureRunDir(target, groupFile), { created: false });
    assert.equal(fs.statSync(target).mode & 0o7777, 0o750);
  });
});
