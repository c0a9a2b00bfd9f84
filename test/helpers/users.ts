// Real system users for integration tests: created with useradd + chpasswd
// (or usermod -p with a hash from mkpasswd) and removed afterwards.
import { execFileSync } from 'node:child_process';

export interface TestUser {
  name: string;
  password: string;
}

const created = new Set<string>();

function run(cmd: string, args: string[], input?: string): string {
  // useradd & co. take a lock on /etc/passwd; another test (or an admin)
  // holding it makes them fail at once, so retry for a while.
  for (let attempt = 0; ; attempt++) {
    try {
      return execFileSync(cmd, args, { input, encoding: 'utf8', stdio: ['pipe', 'pipe', 'pipe'] });
    } catch (err) {
      const raw = (err as { stderr?: Buffer | string }).stderr;
      const stderr = typeof raw === 'string' ? raw : (raw?.toString('utf8') ?? '');
      if (attempt < 50 && /lock|try again/i.test(stderr)) {
        Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 100);
        continue;
      }
      throw err;
    }
  }
}

/** Unique, short (<= 32 chars) user name for this test run. */
export function userName(tag: string): string {
  return `st${tag}${process.pid.toString(36)}${Math.floor(Math.random() * 1296).toString(36)}`.slice(0, 31);
}

/**
 * Create a user. method: a `mkpasswd -m` method (yescrypt, sha512crypt,
 * md5crypt, descrypt, bcrypt...) or 'chpasswd' for the system default.
 */
export function createUser(name: string, password: string, method = 'chpasswd'): TestUser {
  removeUser(name);
  run('useradd', ['-M', '-N', '-s', '/usr/sbin/nologin', name]);
  created.add(name);
  if (method === 'chpasswd') {
    run('chpasswd', [], `${name}:${password}\n`);
  } else {
    const hash = run('mkpasswd', ['-m', method, '--stdin'], password).trim();
    run('usermod', ['-p', hash, name]);
  }
  return { name, password };
}

export function shadowHash(name: string): string {
  const line = run('getent', ['shadow', name]).trim();
  return line.split(':')[1] ?? '';
}

export function removeUser(name: string): void {
  try {
    run('userdel', ['-f', name]);
  } catch {
    // not there
  }
  created.delete(name);
}

export function removeAllUsers(): void {
  for (const name of [...created]) removeUser(name);
}

export function setExpired(name: string): void {
  run('chage', ['-E', '0', name]);
}

export function lock(name: string): void {
  run('passwd', ['-l', name]);
}

export function runCmd(cmd: string, args: string[], input?: string): string {
  return run(cmd, args, input);
}
