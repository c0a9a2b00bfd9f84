// The run directory (-m) when the daemon has to create it: root:sasl 0710,
// what Debian's saslauthd init script and our unit's ExecStartPre helper make
// it, so only root and group sasl (Postfix) reach the socket even when the
// daemon is started by hand. Access to the socket is decided by this
// directory alone (the socket itself is 0777, as Cyrus's), so a directory
// created world-enterable would make the socket a password oracle for every
// local user. An existing directory is the admin's: it is left as it is.
import fs from 'node:fs';
import path from 'node:path';

export const RUN_DIR_MODE = 0o710;
export const RUN_DIR_GROUP = 'sasl';

/** gid of a group in the group file, or undefined. */
export function groupId(name: string, groupFile = '/etc/group'): number | undefined {
  let text: string;
  try {
    text = fs.readFileSync(groupFile, 'utf8');
  } catch {
    return undefined;
  }
  for (const line of text.split('\n')) {
    const [n, , gid] = line.split(':');
    if (n === name && gid !== undefined && /^\d+$/.test(gid)) return Number(gid);
  }
  return undefined;
}

/** mkdir -p, each new directory exactly 0755 whatever the umask. */
function makeParents(dir: string): void {
  if (fs.existsSync(dir)) return;
  makeParents(path.dirname(dir));
  try {
    fs.mkdirSync(dir);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    return;
  }
  fs.chmodSync(dir, 0o755);
}

export interface RunDirResult {
  created: boolean;
  /** The group the directory was given when created (root without a sasl group). */
  group?: string;
}

/**
 * Make sure `dir` exists. Missing parents are created 0755 (they must stay
 * traversable, e.g. /var/spool/postfix/var/run for chrooted smtpd); the
 * directory itself 0710, group sasl when that group exists and we are root.
 */
export function ensureRunDir(dir: string, groupFile = '/etc/group'): RunDirResult {
  if (fs.existsSync(dir)) return { created: false };
  makeParents(path.dirname(dir));
  try {
    fs.mkdirSync(dir, { mode: RUN_DIR_MODE });
  } catch (err) {
    // Another process made it meanwhile: theirs, then.
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') return { created: false };
    throw err;
  }
  let group = 'root';
  const gid = groupId(RUN_DIR_GROUP, groupFile);
  if (gid !== undefined && process.getuid?.() === 0) {
    fs.chownSync(dir, 0, gid);
    group = RUN_DIR_GROUP;
  }
  // mkdir(2) applies the umask; the mode is meant exactly.
  fs.chmodSync(dir, RUN_DIR_MODE);
  return { created: true, group };
}
