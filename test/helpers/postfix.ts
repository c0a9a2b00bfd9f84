// A throwaway Postfix (Debian's package) for end-to-end SMTP AUTH tests: its
// own config and queue directories under a temp dir, smtpd chrooted into
// that queue directory as Debian ships it (master.cf chroot "y"), listening
// on 127.0.0.1 high ports, logging to a file (CI has no syslog). Driven with
// swaks. Everything lives under one temp dir, removed by stop().
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';

/** The seed's /etc/postfix/sasl/smtpd.conf, unmodified. */
export const SEED_SMTPD_CONF =
  'pwcheck_method: saslauthd\n' + 'saslauthd_path: /var/spool/postfix/var/run/saslauthd/mux\n' + 'mech_list: PLAIN LOGIN\n';

/** The seed's main.cf SASL lines. */
export const SEED_MAIN_CF = {
  smtpd_sasl_auth_enable: 'yes',
  smtpd_recipient_restrictions: 'permit_sasl_authenticated, reject',
};

/** Where Debian's Postfix chroots smtpd; the socket path the seed names lives under it. */
export const DEBIAN_QUEUE_DIR = '/var/spool/postfix';

export interface ListenerSpec {
  /** master.cf -o overrides for this smtpd, e.g. { smtpd_sasl_local_domain: 'example.org' }. */
  overrides?: Record<string, string>;
}

export interface PostfixOptions {
  /** One smtpd per entry, each on its own free port. */
  listeners: ListenerSpec[];
  smtpdConf?: string;
  mainCf?: Record<string, string>;
  /**
   * Runs once Postfix has started (its queue directory, private/ included,
   * exists) and before the listeners are probed: where a test starts the
   * daemon an smtpd needs at its first connection (smtpd_sasl_type = dovecot
   * exits without its auth socket, and master then throttles the service).
   */
  beforeReady?: (pf: PostfixInstance) => Promise<void>;
}

export interface PostfixInstance {
  root: string;
  configDir: string;
  /** queue_directory, and the chroot of smtpd. */
  queueDir: string;
  /** The run dir a daemon must use so the seed's saslauthd_path reaches it from inside the chroot. */
  runDir: string;
  ports: number[];
  logFile: string;
  log: () => string;
  /** Wait for a maillog line matching re. */
  waitForLog(re: RegExp, timeoutMs?: number): Promise<string>;
  stop(): Promise<void>;
}

export { runTool as run, type ToolResult as CmdResult } from './testsaslauthd';
import { runTool as run, type ToolResult as CmdResult } from './testsaslauthd';

/**
 * postfix(1) with a pseudo-terminal: its errors go to syslog (absent in CI)
 * unless stderr is a tty, so `script` gives it one and we get the text.
 */
export function postfixCmd(configDir: string, action: string): Promise<CmdResult> {
  return run('script', ['-qec', `postfix -c '${configDir}' ${action}`, '/dev/null']);
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      const port = typeof addr === 'object' && addr !== null ? addr.port : 0;
      srv.close(() => resolve(port));
    });
  });
}

/**
 * Lay out, inside a queue directory, what the Debian package lays out in
 * /var/spool/postfix: var/run/saslauthd (root:sasl 0710) and the relative
 * symlink var/spool/postfix -> ../.. that makes the seed's absolute
 * saslauthd_path resolve to the same socket inside the chroot.
 */
export function makeChrootLayout(queueDir: string): string {
  const runDir = path.join(queueDir, 'var', 'run', 'saslauthd');
  fs.mkdirSync(runDir, { recursive: true });
  execFileSync('chown', ['root:sasl', runDir]);
  fs.chmodSync(runDir, 0o710);
  fs.mkdirSync(path.join(queueDir, 'var', 'spool'), { recursive: true });
  fs.symlinkSync('../..', path.join(queueDir, 'var', 'spool', 'postfix'));
  return runDir;
}

/** What Debian's configure-instance.sh copies into the chroot (resolver, NSS). */
function populateChroot(queueDir: string): void {
  for (const f of ['etc/localtime', 'etc/services', 'etc/resolv.conf', 'etc/hosts', 'etc/host.conf', 'etc/nsswitch.conf']) {
    const src = path.join('/', f);
    if (!fs.existsSync(src)) continue;
    const dst = path.join(queueDir, f);
    fs.mkdirSync(path.dirname(dst), { recursive: true });
    fs.copyFileSync(src, dst);
    fs.chmodSync(dst, 0o644);
  }
  const libDirs = ['/lib/x86_64-linux-gnu', '/lib/aarch64-linux-gnu', '/usr/lib/x86_64-linux-gnu'].filter((d) =>
    fs.existsSync(d),
  );
  for (const dir of libDirs) {
    for (const name of fs.readdirSync(dir)) {
      if (!/^lib(gcc_s|nss|resolv)[^/]*\.so/.test(name)) continue;
      const src = path.join(dir, name);
      const dst = path.join(queueDir, dir, name);
      fs.mkdirSync(path.dirname(dst), { recursive: true });
      if (!fs.existsSync(dst)) fs.copyFileSync(src, dst);
    }
  }
}

function mainCf(opts: PostfixOptions, configDir: string, queueDir: string, dataDir: string, logFile: string): string {
  const settings: Record<string, string> = {
    compatibility_level: '3.6',
    config_directory: configDir,
    queue_directory: queueDir,
    data_directory: dataDir,
    maillog_file: logFile,
    maillog_file_prefixes: path.dirname(logFile),
    myhostname: 'mail.saslauthd-ts.test',
    mydomain: 'saslauthd-ts.test',
    mydestination: '',
    inet_interfaces: '127.0.0.1',
    inet_protocols: 'ipv4',
    smtpd_peername_lookup: 'no',
    // Accepted mail is dropped at once: nothing leaves this machine.
    default_transport: 'discard',
    relay_transport: 'discard',
    local_transport: 'discard',
    smtpd_banner: '$myhostname ESMTP saslauthd-ts e2e',
    alias_maps: '',
    alias_database: '',
    ...SEED_MAIN_CF,
    ...opts.mainCf,
  };
  return Object.entries(settings)
    .map(([k, v]) => `${k} = ${v}\n`)
    .join('');
}

function masterCf(ports: number[], listeners: ListenerSpec[]): string {
  // Debian's master.cf, with its "smtp inet" line replaced by our listeners,
  // chrooted ("y") exactly as Debian ships smtpd.
  const debian = fs.readFileSync('/etc/postfix/master.cf', 'utf8').split('\n');
  const out: string[] = [];
  for (const line of debian) {
    if (/^smtp\s+inet\s/.test(line)) {
      listeners.forEach((l, i) => {
        out.push(`127.0.0.1:${ports[i]} inet n - y - - smtpd`);
        for (const [k, v] of Object.entries(l.overrides ?? {})) out.push(`  -o ${k}=${v}`);
      });
      continue;
    }
    out.push(line);
  }
  return out.join('\n');
}

export async function startPostfix(opts: PostfixOptions): Promise<PostfixInstance> {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'saslauthd-ts-postfix-'));
  fs.chmodSync(root, 0o755);
  const configDir = path.join(root, 'etc');
  const queueDir = path.join(root, 'spool');
  const dataDir = path.join(root, 'lib');
  const logFile = path.join(root, 'maillog');
  fs.mkdirSync(path.join(configDir, 'sasl'), { recursive: true });
  fs.mkdirSync(queueDir, { mode: 0o755 });
  fs.mkdirSync(dataDir, { mode: 0o700 });
  execFileSync('chown', ['postfix:postfix', dataDir]);

  const ports: number[] = [];
  for (const _l of opts.listeners) ports.push(await freePort());
  fs.writeFileSync(path.join(configDir, 'main.cf'), mainCf(opts, configDir, queueDir, dataDir, logFile));
  fs.writeFileSync(path.join(configDir, 'master.cf'), masterCf(ports, opts.listeners));
  fs.writeFileSync(path.join(configDir, 'sasl', 'smtpd.conf'), opts.smtpdConf ?? SEED_SMTPD_CONF);
  fs.writeFileSync(logFile, '');

  const runDir = makeChrootLayout(queueDir);
  populateChroot(queueDir);

  const instance: PostfixInstance = {
    root,
    configDir,
    queueDir,
    runDir,
    ports,
    logFile,
    log: () => {
      try {
        return fs.readFileSync(logFile, 'utf8');
      } catch {
        return '';
      }
    },
    async waitForLog(re, timeoutMs = 10_000) {
      const until = Date.now() + timeoutMs;
      for (;;) {
        const line = instance
          .log()
          .split('\n')
          .find((l) => re.test(l));
        if (line !== undefined) return line;
        if (Date.now() > until) throw new Error(`no maillog line matching ${re}:\n${instance.log()}`);
        await new Promise((r) => setTimeout(r, 100));
      }
    },
    async stop() {
      await postfixCmd(configDir, 'stop');
      // master exits after its children; wait for the pid lock to go.
      const pidFile = path.join(queueDir, 'pid', 'master.pid');
      const until = Date.now() + 10_000;
      while (Date.now() < until) {
        const pid = readPid(pidFile);
        if (pid === undefined || !alive(pid)) break;
        await new Promise((r) => setTimeout(r, 100));
      }
      const pid = readPid(pidFile);
      if (pid !== undefined && alive(pid)) process.kill(pid, 'SIGKILL');
      fs.rmSync(root, { recursive: true, force: true });
    },
  };

  // `postfix start` creates the missing queue directories itself.
  const start = await postfixCmd(configDir, 'start');
  if (start.code !== 0) {
    const log = instance.log();
    await instance.stop();
    throw new Error(`postfix did not start (${start.code}):\n${start.stdout}${start.stderr}\n${log}`);
  }
  try {
    await opts.beforeReady?.(instance);
    for (const port of ports) await waitForSmtp(port, 15_000);
  } catch (err) {
    await instance.stop();
    throw err;
  }
  return instance;
}

function readPid(file: string): number | undefined {
  try {
    const n = Number(fs.readFileSync(file, 'utf8').trim());
    return Number.isInteger(n) && n > 0 ? n : undefined;
  } catch {
    return undefined;
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

async function waitForSmtp(port: number, timeoutMs: number): Promise<void> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const banner = await new Promise<string>((resolve) => {
      const s = net.connect(port, '127.0.0.1');
      let got = '';
      const done = (v: string): void => {
        s.destroy();
        resolve(v);
      };
      s.setTimeout(2000, () => done(got));
      s.on('data', (d: Buffer) => {
        got += d.toString('latin1');
        if (got.includes('\n')) done(got);
      });
      s.on('error', () => done(''));
      // An smtpd that exits before its banner (a fatal error) closes the connection.
      s.on('close', () => done(got));
    });
    if (banner.startsWith('220')) return;
    if (Date.now() > until) throw new Error(`no SMTP banner on 127.0.0.1:${port}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

export interface SwaksOptions {
  port: number;
  /** The client's source address (any 127.x.y.z reaches a 127.0.0.1 listener). */
  localAddress?: string;
  auth?: 'PLAIN' | 'LOGIN';
  user?: string;
  password?: string;
  from?: string;
  to?: string;
}

/** One SMTP transaction with swaks; the transcript is in stdout. */
export function swaks(o: SwaksOptions): Promise<CmdResult> {
  const args = [
    '--server',
    '127.0.0.1',
    '--port',
    String(o.port),
    '--helo',
    'client.saslauthd-ts.test',
    '--from',
    o.from ?? 'sender@example.net',
    '--to',
    o.to ?? 'rcpt@example.com',
    '--timeout',
    '20',
  ];
  if (o.localAddress !== undefined) args.push('--local-interface', o.localAddress);
  if (o.auth !== undefined) {
    args.push('--auth', o.auth, '--auth-user', o.user ?? '', '--auth-password', o.password ?? '');
  }
  return run('swaks', args, 60_000);
}

/** The server's reply line (e.g. "235 2.7.0 ...") to the command whose client line matches `sent`. */
export function replyTo(transcript: string, sent: RegExp): string | undefined {
  const lines = transcript.split('\n');
  const i = lines.findIndex((l) => /^ *[-~]> /.test(l) && sent.test(l));
  if (i < 0) return undefined;
  for (const l of lines.slice(i + 1)) {
    const m = /^ *<[-~*]{1,2} +(\d{3}[ -].*)$/.exec(l);
    if (m) return m[1];
  }
  return undefined;
}

/** Every server reply line of the transcript, in order. */
export function replies(transcript: string): string[] {
  return transcript
    .split('\n')
    .map((l) => /^ *<[-~*]{1,2} +(\d{3}[ -].*)$/.exec(l)?.[1])
    .filter((l): l is string => l !== undefined);
}

/** Add user to group for the test; returns how to undo it (no-op if already a member). */
export function ensureInGroup(user: string, group: string): () => void {
  const groups = execFileSync('id', ['-Gn', user], { encoding: 'utf8' }).trim().split(/\s+/);
  if (groups.includes(group)) return () => undefined;
  execFileSync('gpasswd', ['-a', user, group], { stdio: 'ignore' });
  return () => {
    try {
      execFileSync('gpasswd', ['-d', user, group], { stdio: 'ignore' });
    } catch {
      // already gone
    }
  };
}
