// --state-key FILE: the secret every host of a fleet shares. The credentials'
// fingerprints (known-good marks, wrong-password marks, cache entries) are
// HMACs under a key derived from it, so a user known-good through one host is
// recognised by the others; without one shared key each host's
// fingerprints are its own. The names of the keys in the shared store are
// HMACs under a second key derived from it, so the store never holds a login
// in clear. Whoever holds the file can test guesses against what the store
// holds (docs/fleet.md), hence the checks: a regular file, owned by root (or
// the daemon's own user), unreadable by group and others, 32 bytes at least.
import crypto from 'node:crypto';
import fs from 'node:fs';

export const MIN_KEY_BYTES = 32;
/** More than any sane key; a bigger file is a mistake (the wrong file named). */
const MAX_KEY_BYTES = 4096;

export class KeyFileError extends Error {
  readonly code = 'STATE_KEY_FILE';
}

export const KEY_FILE_FIX =
  'create one with: (umask 077; head -c 32 /dev/urandom > FILE) and copy the same file to every host (docs/fleet.md)';

/** Reads and checks the key file; throws KeyFileError naming the file and the fix. */
export function readKeyFile(file: string): Buffer {
  const fix = KEY_FILE_FIX.replace('FILE', file);
  let fd: number;
  try {
    // O_NOFOLLOW: the checks below must be about the file read, not a link's target chosen later.
    fd = fs.openSync(file, fs.constants.O_RDONLY | fs.constants.O_NOFOLLOW);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') throw new KeyFileError(`--state-key ${file}: no such file; ${fix}`);
    if (code === 'ELOOP') throw new KeyFileError(`--state-key ${file}: is a symbolic link; name the file itself`);
    throw new KeyFileError(`--state-key ${file}: cannot open: ${(err as Error).message}`);
  }
  try {
    const st = fs.fstatSync(fd);
    if (!st.isFile()) throw new KeyFileError(`--state-key ${file}: not a regular file; ${fix}`);
    const me = process.getuid?.() ?? 0;
    if (st.uid !== 0 && st.uid !== me) {
      throw new KeyFileError(`--state-key ${file}: owned by uid ${st.uid}; it must be owned by root: chown root:root ${file}`);
    }
    if ((st.mode & 0o077) !== 0) {
      const mode = (st.mode & 0o777).toString(8).padStart(4, '0');
      throw new KeyFileError(
        `--state-key ${file}: mode ${mode} lets group or others reach the fleet's key; run: chmod 0600 ${file}`,
      );
    }
    if (st.size < MIN_KEY_BYTES) {
      throw new KeyFileError(`--state-key ${file}: ${st.size} bytes; at least ${MIN_KEY_BYTES} are needed; ${fix}`);
    }
    if (st.size > MAX_KEY_BYTES)
      throw new KeyFileError(`--state-key ${file}: ${st.size} bytes is not a key file (at most ${MAX_KEY_BYTES})`);
    const key = Buffer.alloc(st.size);
    const n = fs.readSync(fd, key, 0, st.size, 0);
    if (n < MIN_KEY_BYTES)
      throw new KeyFileError(`--state-key ${file}: read ${n} bytes; at least ${MIN_KEY_BYTES} are needed; ${fix}`);
    return key.subarray(0, n);
  } finally {
    fs.closeSync(fd);
  }
}

/**
 * The keys derived from the file's secret, one per use, so that no value
 * in the store is ever an HMAC under the key of another.
 */
export function deriveKeys(secret: Buffer): { fingerprint: Buffer; names: Buffer } {
  const derive = (label: string): Buffer => crypto.createHmac('sha256', secret).update(label).digest();
  return {
    fingerprint: derive('saslauthd-ts v1 credential fingerprints'),
    names: derive('saslauthd-ts v1 shared state key names'),
  };
}
