// The Dovecot door's socket file. It usually lives in Postfix's private/
// directory (owner postfix, mode 0700), which is Postfix's own: never created,
// chowned or chmodded here. The socket itself is made usable by user postfix
// alone (postfix:postfix 0660), since unlike the mux socket no directory of
// ours guards it. postfix owns the directory it sits in, so every step here
// is one that a file planted there meanwhile cannot turn against root: the
// mode comes from the umask at bind(2), the owner from lchown, and only a
// socket that is still ours is removed.
import fs from 'node:fs';
import path from 'node:path';
import { native } from '../../native/binding';
import { probeSocket, StartupError } from '../server';

export const FLAG = '--dovecot-socket';
export const SOCKET_USER = 'postfix';
export const SOCKET_MODE = 0o660;
/** Connections the kernel queues before they are accepted (a burst of smtpd processes starting). */
export const LISTEN_BACKLOG = 4096;

/** uid and primary gid of a user in the passwd file (Postfix's account is a local one), or undefined. */
export function userIds(name: string, passwdFile = '/etc/passwd'): { uid: number; gid: number } | undefined {
  let text: string;
  try {
    text = fs.readFileSync(passwdFile, 'utf8');
  } catch {
    return undefined;
  }
  for (const line of text.split('\n')) {
    const [n, , uid, gid] = line.split(':');
    if (n === name && uid !== undefined && gid !== undefined && /^\d+$/.test(uid) && /^\d+$/.test(gid)) {
      return { uid: Number(uid), gid: Number(gid) };
    }
  }
  return undefined;
}

export interface BoundSocket {
  fd: number;
  /** What the socket file was given, for the startup line ("postfix:postfix 0660"). */
  owner: string;
  /** Identity of the file we made, so that close removes only it. */
  dev: number;
  ino: number;
}

/**
 * Refuse a path that cannot be ours: a missing directory (never created
 * here), a live daemon's socket, anything but a socket. A stale socket left
 * by a crash is removed.
 */
export async function claimPath(socketPath: string): Promise<void> {
  if (!path.isAbsolute(socketPath)) throw new StartupError(`${FLAG} ${socketPath}: must be an absolute path`, 'EINVAL');
  const dir = path.dirname(socketPath);
  let st: fs.Stats;
  try {
    st = fs.statSync(dir);
  } catch {
    throw new StartupError(
      `${FLAG} ${socketPath}: directory ${dir} does not exist; for Postfix it is its queue directory's private/, ` +
        `which Postfix creates when it starts: start Postfix first (or choose another path)`,
      'ENOENT',
    );
  }
  if (!st.isDirectory()) throw new StartupError(`${FLAG} ${socketPath}: ${dir} is not a directory`, 'ENOTDIR');
  let existing: fs.Stats;
  try {
    existing = fs.lstatSync(socketPath);
  } catch {
    return; // free
  }
  if (!existing.isSocket()) {
    throw new StartupError(`${FLAG} ${socketPath}: exists and is not a socket; remove it or choose another path`, 'EEXIST');
  }
  const state = await probeSocket(socketPath);
  if (state === 'live') {
    throw new StartupError(
      `${FLAG} ${socketPath}: something is already answering there (another saslauthd-ts, or Dovecot); stop it first`,
      'EADDRINUSE',
    );
  }
  if (state === 'stale') fs.unlinkSync(socketPath);
}

/** Bind and listen; the socket file is SOCKET_MODE from birth, then handed to user postfix. */
export function bindSocket(socketPath: string, passwdFile?: string): BoundSocket {
  const old = process.umask(0o777 & ~SOCKET_MODE);
  let fd: number;
  try {
    fd = native.bindUnixSocket(socketPath, LISTEN_BACKLOG);
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    throw new StartupError(`${FLAG} ${socketPath}: ${e.message}`, e.code ?? 'ELISTEN');
  } finally {
    process.umask(old);
  }
  const st = fs.lstatSync(socketPath);
  const ids = userIds(SOCKET_USER, passwdFile);
  let owner = `root:root ${SOCKET_MODE.toString(8).padStart(4, '0')}`;
  if (ids !== undefined && process.getuid?.() === 0) {
    fs.lchownSync(socketPath, ids.uid, ids.gid);
    owner = `${SOCKET_USER}:${groupName(ids.gid)} ${SOCKET_MODE.toString(8).padStart(4, '0')}`;
  }
  return { fd, owner, dev: st.dev, ino: st.ino };
}

function groupName(gid: number): string {
  try {
    const line = fs
      .readFileSync('/etc/group', 'utf8')
      .split('\n')
      .find((l) => l.split(':')[2] === String(gid));
    return line?.split(':')[0] ?? String(gid);
  } catch {
    return String(gid);
  }
}

/** Remove the socket file if it is still the one bindSocket made. */
export function removeSocket(socketPath: string, made: { dev: number; ino: number }): void {
  try {
    const st = fs.lstatSync(socketPath);
    if (st.isSocket() && st.dev === made.dev && st.ino === made.ino) fs.unlinkSync(socketPath);
  } catch {
    // already gone
  }
}
