// A private Dovecot for the rimap tests: throwaway dovecot.conf, base_dir,
// state_dir, log and passwd-file under one temp dir; plain+STARTTLS and imaps
// on free 127.0.0.1 ports; a self-signed CA and a server certificate for
// 127.0.0.1/localhost made with openssl (plus an unrelated second CA for
// "untrusted" tests). Runs `dovecot -F -c <conf>` as a child and stops it by
// PID. The system Dovecot is never touched.
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';

export const DOVECOT_BIN = '/usr/sbin/dovecot';

export interface DovecotUser {
  name: string;
  password: string;
}

export interface Dovecot {
  dir: string;
  /** Plain IMAP, STARTTLS offered. */
  imapPort: number;
  /** Implicit TLS. */
  imapsPort: number;
  /** CA that signed the server certificate (PEM). */
  caFile: string;
  /** A CA that did not sign it (PEM), for "untrusted certificate" tests. */
  otherCaFile: string;
  /** Dovecot's log so far. */
  log(): string;
  /** Waits until a log line matching re appears; throws with the log after timeoutMs. */
  waitForLog(re: RegExp, timeoutMs?: number): Promise<string>;
  /** Stops Dovecot and removes the temp dir. Safe to call twice. */
  stop(): Promise<void>;
}

/** A port nothing listens on right now (bound then released by the kernel). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address() as net.AddressInfo;
      srv.close(() => resolve(addr.port));
    });
  });
}

function openssl(args: string[], cwd: string): void {
  execFileSync('openssl', args, { cwd, stdio: ['ignore', 'ignore', 'pipe'] });
}

/** CA, server key and certificate (SAN IP:127.0.0.1, DNS:localhost), and an unrelated CA. */
export function makeCertificates(dir: string): { caFile: string; otherCaFile: string; certFile: string; keyFile: string } {
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes'];
  openssl(
    ['req', '-x509', ...ec, '-keyout', 'ca.key', '-out', 'ca.pem', '-days', '2', '-subj', '/CN=saslauthd-ts rimap test CA'],
    dir,
  );
  openssl(
    ['req', '-x509', ...ec, '-keyout', 'other-ca.key', '-out', 'other-ca.pem', '-days', '2', '-subj', '/CN=unrelated test CA'],
    dir,
  );
  openssl(['req', ...ec, '-keyout', 'server.key', '-out', 'server.csr', '-subj', '/CN=localhost'], dir);
  fs.writeFileSync(
    path.join(dir, 'server.ext'),
    'subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n',
  );
  openssl(
    [
      'x509',
      '-req',
      '-in',
      'server.csr',
      '-CA',
      'ca.pem',
      '-CAkey',
      'ca.key',
      '-CAcreateserial',
      '-out',
      'server.pem',
      '-days',
      '2',
      '-extfile',
      'server.ext',
    ],
    dir,
  );
  for (const f of ['ca.pem', 'other-ca.pem', 'server.pem']) fs.chmodSync(path.join(dir, f), 0o644);
  return {
    caFile: path.join(dir, 'ca.pem'),
    otherCaFile: path.join(dir, 'other-ca.pem'),
    certFile: path.join(dir, 'server.pem'),
    keyFile: path.join(dir, 'server.key'),
  };
}

/** {SHA256} is base64(sha256(password)): no colon or newline can break the passwd-file line. */
function passwdLine(u: DovecotUser): string {
  if (/[:\r\n]/.test(u.name)) throw new Error(`user name ${JSON.stringify(u.name)} cannot go in a passwd-file`);
  const hash = crypto.createHash('sha256').update(Buffer.from(u.password, 'utf8')).digest('base64');
  return `${u.name}:{SHA256}${hash}::::::\n`;
}

function descendants(pid: number): number[] {
  const children = new Map<number, number[]>();
  for (const entry of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = fs.readFileSync(`/proc/${entry}/stat`, 'latin1');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      const list = children.get(ppid) ?? [];
      list.push(Number(entry));
      children.set(ppid, list);
    } catch {
      // exited meanwhile
    }
  }
  const out: number[] = [];
  const walk = (p: number): void => {
    for (const c of children.get(p) ?? []) {
      out.push(c);
      walk(c);
    }
  };
  walk(pid);
  return out;
}

function killQuietly(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(pid, signal);
  } catch {
    // already gone
  }
}

export async function startDovecot(users: DovecotUser[]): Promise<Dovecot> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'rimap-dovecot-'));
  // Dovecot's auth process (user dovecot) reads the passwd-file, and mail
  // processes run as nobody: the tree must be traversable.
  fs.chmodSync(dir, 0o755);
  let child: ChildProcess | undefined;
  let stopped = false;
  const logFile = path.join(dir, 'dovecot.log');
  let stderr = '';
  const readLog = (): string => {
    try {
      return fs.readFileSync(logFile, 'utf8');
    } catch {
      return '';
    }
  };
  const emergency = (): void => {
    // The test process is exiting without stop(): do not leave Dovecot behind.
    if (child?.pid !== undefined && child.exitCode === null) {
      for (const p of descendants(child.pid)) killQuietly(p, 'SIGKILL');
      killQuietly(child.pid, 'SIGKILL');
    }
    fs.rmSync(dir, { recursive: true, force: true });
  };
  process.once('exit', emergency);

  const stop = async (): Promise<void> => {
    if (stopped) return;
    stopped = true;
    const c = child;
    if (c?.pid !== undefined && c.exitCode === null && c.signalCode === null) {
      const exited = new Promise<void>((resolve) => c.once('exit', () => resolve()));
      c.kill('SIGTERM');
      let timer: NodeJS.Timeout | undefined;
      const late = await Promise.race([
        exited.then(() => false),
        new Promise<boolean>((r) => (timer = setTimeout(() => r(true), 10_000))),
      ]);
      clearTimeout(timer);
      if (late) {
        for (const p of descendants(c.pid)) killQuietly(p, 'SIGKILL');
        c.kill('SIGKILL');
        await exited;
      }
    }
    fs.rmSync(dir, { recursive: true, force: true });
    // Only now: if this process dies mid-stop, the exit hook still cleans up.
    process.off('exit', emergency);
  };

  try {
    const certs = makeCertificates(dir);
    for (const sub of ['run', 'state']) fs.mkdirSync(path.join(dir, sub));
    fs.mkdirSync(path.join(dir, 'mail'), { mode: 0o1777 });
    fs.chmodSync(path.join(dir, 'mail'), 0o1777);
    const usersFile = path.join(dir, 'users');
    fs.writeFileSync(usersFile, users.map(passwdLine).join(''), { mode: 0o644 });
    const imapPort = await freePort();
    let imapsPort = await freePort();
    while (imapsPort === imapPort) imapsPort = await freePort();

    const conf = `# saslauthd-ts rimap test instance; generated, thrown away after the test
protocols = imap
listen = 127.0.0.1
base_dir = ${dir}/run
state_dir = ${dir}/state
instance_name = rimap-test-${path.basename(dir)}
log_path = ${logFile}
auth_verbose = yes
auth_failure_delay = 0
# Empty: any user name, UTF-8 included (the default allows only [A-Za-z0-9.@_-]).
auth_username_chars =
disable_plaintext_auth = no
ssl = yes
ssl_cert = <${certs.certFile}
ssl_key = <${certs.keyFile}
mail_location = maildir:${dir}/mail/%u
mail_max_userip_connections = 1000
passdb {
  driver = passwd-file
  args = ${usersFile}
}
userdb {
  driver = static
  args = uid=65534 gid=65534 home=${dir}/mail/%u
}
service imap-login {
  inet_listener imap {
    address = 127.0.0.1
    port = ${imapPort}
  }
  inet_listener imaps {
    address = 127.0.0.1
    port = ${imapsPort}
    ssl = yes
  }
  # One login process serving many clients: 100 concurrent logins stay cheap.
  service_count = 0
  client_limit = 1000
  process_min_avail = 1
}
service imap {
  process_limit = 1000
}
# No per-IP auth penalty (2 s, 4 s ... 15 s after failures from one IP):
# every test connects from 127.0.0.1 and many use wrong passwords on purpose.
service anvil {
  unix_listener anvil-auth-penalty {
    mode = 0
  }
}
`;
    const confFile = path.join(dir, 'dovecot.conf');
    fs.writeFileSync(confFile, conf, { mode: 0o644 });
    child = spawn(DOVECOT_BIN, ['-F', '-c', confFile], { stdio: ['ignore', 'pipe', 'pipe'] });
    child.stdout!.on('data', (d: Buffer) => (stderr += d.toString('utf8')));
    child.stderr!.on('data', (d: Buffer) => (stderr += d.toString('utf8')));
    await waitForGreeting(imapPort, 15_000, child);

    return {
      dir,
      imapPort,
      imapsPort,
      caFile: certs.caFile,
      otherCaFile: certs.otherCaFile,
      log: readLog,
      async waitForLog(re, timeoutMs = 5000) {
        const until = Date.now() + timeoutMs;
        for (;;) {
          const line = readLog()
            .split('\n')
            .find((l) => re.test(l));
          if (line !== undefined) return line;
          if (Date.now() > until) throw new Error(`no Dovecot log line matching ${re} within ${timeoutMs} ms:\n${readLog()}`);
          await new Promise((r) => setTimeout(r, 50));
        }
      },
      stop,
    };
  } catch (err) {
    const details = `${(err as Error).message}\n--- dovecot output ---\n${stderr}\n--- dovecot.log ---\n${readLog()}`;
    await stop();
    throw new Error(details);
  }
}

async function waitForGreeting(port: number, timeoutMs: number, child: ChildProcess): Promise<void> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`dovecot exited with ${child.exitCode} during startup`);
    const ok = await new Promise<boolean>((resolve) => {
      const s = net.connect(port, '127.0.0.1');
      const t = setTimeout(() => {
        s.destroy();
        resolve(false);
      }, 1000);
      s.once('data', (d: Buffer) => {
        clearTimeout(t);
        s.destroy();
        resolve(d.toString('latin1').startsWith('* OK'));
      });
      s.once('error', () => {
        clearTimeout(t);
        resolve(false);
      });
    });
    if (ok) return;
    if (Date.now() > until) throw new Error(`dovecot not answering on 127.0.0.1:${port} within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 100));
  }
}
