// The Debian package, for real: built by dpkg-buildpackage from a temp copy
// of this tree (offline: in a network namespace with no interfaces), installed
// with apt-get on this machine, checked, run as the unit's ExecStartPre and
// ExecStart lines would run it (CI has no systemd as PID 1), then purged and
// installed again. The machine is left as found: package purged, daemons
// stopped, users removed, temp dirs gone, group membership restored.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createUser, removeUser, userName, type TestUser } from '../helpers/users';
import { NO_LINE, OK_LINE, testsaslauthd } from '../helpers/testsaslauthd';
import { helpOptions, manOptions } from '../helpers/manpage';
import { run, type CmdResult, postfixCmd } from '../helpers/postfix';
import { ROOT } from '../helpers/daemon';

const PKG = 'saslauthd-ts';
const RUN_DIR = '/var/spool/postfix/var/run/saslauthd';
const MUX = `${RUN_DIR}/mux`;
const CHROOT_LINK = '/var/spool/postfix/var/spool/postfix';
const UNIT = '/lib/systemd/system/saslauthd-ts.service';
const DEFAULTS = '/etc/default/saslauthd-ts';
const STATE_DIR = '/var/lib/saslauthd-ts';
const PASSWORD = 'Deb-P4ss word!';

interface MachineState {
  statoverride: string;
  postfixInSasl: boolean;
  paths: Record<string, boolean>;
}

const WATCHED_PATHS = [
  '/usr/lib/saslauthd-ts',
  '/usr/sbin/saslauthd-ts',
  '/usr/sbin/testsaslauthd-ts',
  DEFAULTS,
  UNIT,
  STATE_DIR,
  RUN_DIR,
  CHROOT_LINK,
  '/var/spool/postfix/var',
  '/usr/share/doc/saslauthd-ts',
  '/usr/share/man/man8/saslauthd-ts.8.gz',
  '/etc/systemd/system/multi-user.target.wants/saslauthd-ts.service',
  '/var/lib/systemd/deb-systemd-helper-enabled/saslauthd-ts.service.dsh-also',
];

function exists(p: string): boolean {
  try {
    fs.lstatSync(p);
    return true;
  } catch {
    return false;
  }
}

function sh(
  cmd: string,
  args: string[],
  opts: { cwd?: string; input?: string; env?: NodeJS.ProcessEnv } = {},
): CmdResult {
  const r = spawnSync(cmd, args, { encoding: 'utf8', maxBuffer: 64 << 20, ...opts });
  return { code: r.status ?? -1, stdout: r.stdout ?? '', stderr: r.stderr ?? '' };
}

function postfixInSasl(): boolean {
  return sh('id', ['-Gn', 'postfix']).stdout.trim().split(/\s+/).includes('sasl');
}

function snapshot(): MachineState {
  const paths: Record<string, boolean> = {};
  for (const p of WATCHED_PATHS) paths[p] = exists(p);
  return {
    statoverride: sh('dpkg-statoverride', ['--list', RUN_DIR]).stdout.trim(),
    postfixInSasl: postfixInSasl(),
    paths,
  };
}

function installed(): boolean {
  return /^install ok installed/.test(sh('dpkg-query', ['-W', '-f=${Status}', PKG]).stdout);
}

const APT_ENV = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };

function aptInstall(deb: string): CmdResult {
  return sh('apt-get', ['install', '-y', '-q', '--no-install-recommends', deb], { env: APT_ENV });
}

function purge(): CmdResult {
  return sh('apt-get', ['purge', '-y', '-q', PKG], { env: APT_ENV });
}

/** ExecStartPre=/ExecStart= command lines of the installed unit, prefixes stripped. */
function unitCommands(key: 'ExecStartPre' | 'ExecStart'): string[][] {
  return fs
    .readFileSync(UNIT, 'utf8')
    .split('\n')
    .filter((l) => l.startsWith(`${key}=`))
    .map((l) =>
      l
        .slice(key.length + 1)
        .replace(/^[-@:+!]+/, '')
        .trim()
        .split(/\s+/),
    );
}

function unitValue(key: string): string | undefined {
  const line = fs
    .readFileSync(UNIT, 'utf8')
    .split('\n')
    .find((l) => l.startsWith(`${key}=`));
  return line?.slice(key.length + 1);
}

/** Processes running code from the package. */
function packageProcesses(): string[] {
  const out: string[] = [];
  for (const pid of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(pid) || Number(pid) === process.pid) continue;
    try {
      const cmd = fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').replace(/\0/g, ' ');
      if (/\/usr\/(lib|sbin)\/saslauthd-ts/.test(cmd)) out.push(`${pid}: ${cmd}`);
    } catch {
      // gone
    }
  }
  return out;
}

// A stand-in for systemd's notification socket: records each datagram, and on
// READY=1 checks that the daemon's socket already accepts connections.
const NOTIFY_LISTENER = `
import os, socket, sys
path, out, mux = sys.argv[1:4]
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(path)
with open(out, 'a') as f:
    f.write('listening\\n'); f.flush()
    while True:
        data = s.recv(65536)  # systemd-notify's barrier fd is dropped (closed) here
        note = ''
        if b'READY=1' in data:
            c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                c.connect(mux); note = ' [mux accepts]'
            except OSError as e:
                note = ' [mux: ' + e.strerror + ']'
            c.close()
        f.write(data.decode(errors='replace').replace('\\n', ' ') + note + '\\n'); f.flush()
`;

// Connects as the postfix user from inside the chroot, as smtpd does, and
// sends one request (login and password on stdin).
const CHROOT_PROBE = `
import os, pwd, socket, struct, sys
root, path = sys.argv[1], sys.argv[2]
login, password = sys.stdin.read().split('\\n')[:2]
pf = pwd.getpwnam('postfix')
os.initgroups('postfix', pf.pw_gid)
os.chroot(root); os.chdir('/')
os.setgid(pf.pw_gid); os.setuid(pf.pw_uid)
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
try:
    s.connect(path)
except OSError as e:
    print('connect: ' + e.strerror); sys.exit(2)
f = lambda b: struct.pack('>H', len(b)) + b
s.sendall(f(login.encode()) + f(password.encode()) + f(b'smtp') + f(b''))
data = b''
while len(data) < 2 or len(data) < 2 + struct.unpack('>H', data[:2])[0]:
    chunk = s.recv(1024)
    if not chunk: break
    data += chunk
print(data[2:].decode())
`;

describe('Debian package', () => {
  let work = '';
  let deb = '';
  let pre: MachineState;
  let user: TestUser | undefined;
  let daemon: ChildProcess | undefined;
  let daemonOut = '';
  let listener: ChildProcess | undefined;
  let notifyLog = '';
  let buildLog = '';
  let installedFiles: string[] = [];

  const stopDaemon = async (): Promise<number | null> => {
    const d = daemon;
    if (d === undefined) return null;
    daemon = undefined;
    if (d.exitCode !== null) return d.exitCode;
    const exited = new Promise<number | null>((res) => d.once('exit', (code) => res(code)));
    d.kill('SIGTERM');
    const t = setTimeout(() => d.kill('SIGKILL'), 20_000);
    const code = await exited;
    clearTimeout(t);
    return code;
  };

  before(async () => {
    // A leftover install (an earlier run that died) would spoil the baseline.
    if (installed()) purge();
    pre = snapshot();
    work = fs.mkdtempSync(path.join(os.tmpdir(), 'saslauthd-ts-deb-'));
    const src = path.join(work, 'src');
    fs.mkdirSync(src);
    const copy = sh('sh', [
      '-c',
      'tar -C "$1" --exclude=./.git --exclude=./dist --exclude=./build --exclude=./debian/stage ' +
        '--exclude=./debian/saslauthd-ts --exclude=./debian/.debhelper --exclude=./debian/files ' +
        '--exclude=\'./debian/*.substvars\' --exclude=./debian/debhelper-build-stamp -cf - . | tar -C "$2" -xf -',
      'copy',
      ROOT,
      src,
    ]);
    assert.equal(copy.code, 0, copy.stderr);
    // No network at all inside the build (a network namespace without
    // interfaces) proves it needs no registry; where namespaces are not
    // allowed, debian/rules' npm --offline settings still hold.
    const isolate = sh('unshare', ['--net', 'true']).code === 0 ? ['unshare', '--net'] : [];
    const [bcmd, ...bargs] = [...isolate, 'dpkg-buildpackage', '-us', '-uc', '-b'];
    const b = sh(bcmd ?? '', bargs, { cwd: src });
    buildLog = b.stdout + b.stderr;
    assert.equal(b.code, 0, `dpkg-buildpackage failed:\n${buildLog.slice(-6000)}`);
    const debs = fs.readdirSync(work).filter((f) => /^saslauthd-ts_.*\.deb$/.test(f));
    assert.equal(debs.length, 1, `expected one .deb in ${work}: ${fs.readdirSync(work).join(' ')}`);
    deb = path.join(work, debs[0] ?? '');
    const i = aptInstall(deb);
    assert.equal(i.code, 0, `apt-get install failed:\n${i.stdout}${i.stderr}`);
    installedFiles = sh('dpkg', ['-L', PKG])
      .stdout.split('\n')
      .filter((l) => l.startsWith('/'));
    user = createUser(userName('deb'), PASSWORD);
  });

  after(async () => {
    await stopDaemon();
    listener?.kill('SIGKILL');
    if (user !== undefined) removeUser(user.name);
    if (installed()) purge();
    // Put postfix's membership of sasl back as it was, whatever happened.
    if (pre !== undefined && postfixInSasl() !== pre.postfixInSasl) {
      sh('gpasswd', [pre.postfixInSasl ? '-a' : '-d', 'postfix', 'sasl']);
    }
    if (work !== '') fs.rmSync(work, { recursive: true, force: true });
  });

  test('dpkg-buildpackage writes the .deb and its build records next to the temp copy only', () => {
    const names = fs.readdirSync(work);
    assert.ok(
      names.some((n) => /^saslauthd-ts_0\.[\d.]+_\w+\.buildinfo$/.test(n)),
      names.join(' '),
    );
    assert.ok(
      names.some((n) => /^saslauthd-ts_0\.[\d.]+_\w+\.changes$/.test(n)),
      names.join(' '),
    );
    const parent = fs.readdirSync(path.dirname(ROOT));
    assert.ok(!parent.some((n) => /^saslauthd-ts_.*\.(deb|changes|buildinfo)$/.test(n)), parent.join(' '));
  });

  test('the package is Architecture: any and depends on nodejs (>= 20) and the addon libraries', () => {
    const arch = sh('dpkg', ['--print-architecture']).stdout.trim();
    assert.equal(sh('dpkg-deb', ['-f', deb, 'Architecture']).stdout.trim(), arch);
    const depends = sh('dpkg-deb', ['-f', deb, 'Depends']).stdout;
    assert.match(depends, /(^|, )nodejs \(>= 20\)/);
    assert.match(depends, /libcrypt1/, 'dh_shlibdeps found libcrypt through the .node file');
    assert.match(depends, /libpam0g/);
    assert.match(depends, /libc6/);
  });

  test('ships the app, the addon and production dependencies only under /usr/lib/saslauthd-ts', () => {
    const has = (p: string): boolean => installedFiles.includes(p);
    for (const p of [
      '/usr/lib/saslauthd-ts/bin/saslauthd-ts.js',
      '/usr/lib/saslauthd-ts/dist/src/cli/saslauthd.js',
      '/usr/lib/saslauthd-ts/dist/src/config/check.js',
      '/usr/lib/saslauthd-ts/build/Release/saslauthd_native.node',
      '/usr/lib/saslauthd-ts/node_modules/pino/package.json',
      '/usr/lib/saslauthd-ts/node_modules/commander/package.json',
      '/usr/lib/saslauthd-ts/package.json',
      '/usr/lib/saslauthd-ts/prepare-run-dir',
      '/usr/sbin/saslauthd-ts',
      '/usr/sbin/testsaslauthd-ts',
      '/usr/share/man/man8/saslauthd-ts.8.gz',
      '/usr/share/man/man8/testsaslauthd-ts.8.gz',
      '/usr/share/doc/saslauthd-ts/README.Debian',
      '/usr/share/doc/saslauthd-ts/copyright',
      DEFAULTS,
      UNIT,
      RUN_DIR,
      CHROOT_LINK,
    ]) {
      assert.ok(has(p), `not in the package: ${p}`);
    }
    const dev = installedFiles.filter((f) =>
      /\/node_modules\/(typescript|@types|undici-types)(\/|$)|\/dist\/test(\/|$)|^\/usr\/lib\/saslauthd-ts\/(src|dist\/.*\.(ts|map)$)|saslauthd-loadgen/.test(
        f,
      ),
    );
    assert.deepEqual(dev, []);
    assert.equal(fs.realpathSync('/usr/sbin/saslauthd-ts'), '/usr/lib/saslauthd-ts/bin/saslauthd-ts.js');
    assert.ok((fs.statSync('/usr/lib/saslauthd-ts/bin/saslauthd-ts.js').mode & 0o111) !== 0, 'launcher not executable');
    assert.match(sh('dpkg-query', ['-W', '-f=${Conffiles}', PKG]).stdout, /\/etc\/default\/saslauthd-ts /);
  });

  test('the installed commands run, and their man pages list the same options as -h', () => {
    const v = sh('/usr/sbin/saslauthd-ts', ['-v']);
    assert.equal(v.code, 0);
    assert.match(v.stderr, /^saslauthd-ts \d+\.\d+\.\d+\nauthentication mechanisms: .*pam/);
    for (const name of ['saslauthd-ts', 'testsaslauthd-ts']) {
      const help = sh(`/usr/sbin/${name}`, ['-h']).stdout;
      const roff = execFileSync('zcat', [`/usr/share/man/man8/${name}.8.gz`], { encoding: 'utf8' });
      assert.deepEqual(manOptions(roff), helpOptions(help), name);
      const warn = sh('man', ['--warnings', '-l', `/usr/share/man/man8/${name}.8.gz`]);
      assert.equal(warn.stderr, '', `man page warnings for ${name}`);
    }
  });

  test('the run directory is root:sasl 0710 under a dpkg statoverride, and postfix is in group sasl', () => {
    const st = fs.statSync(RUN_DIR);
    assert.equal(st.mode & 0o7777, 0o710);
    assert.equal(st.uid, 0);
    assert.equal(st.gid, 45, 'group sasl (static gid 45 in base-passwd)');
    if (pre.statoverride === '') {
      assert.equal(sh('dpkg-statoverride', ['--list', RUN_DIR]).stdout.trim(), `root sasl 710 ${RUN_DIR}`);
    }
    assert.equal(postfixInSasl(), true);
  });

  test('the chroot link gives the socket the same absolute path inside /var/spool/postfix', async () => {
    assert.equal(fs.readlinkSync(CHROOT_LINK), '../..');
    // What smtpd opens after chroot("/var/spool/postfix"), seen from outside:
    assert.equal(fs.realpathSync(`/var/spool/postfix${RUN_DIR}`), RUN_DIR);
    // And Postfix's own check has nothing to say about the package's files.
    const conf = path.join(work, 'postfix-check');
    fs.mkdirSync(conf);
    fs.writeFileSync(
      path.join(conf, 'main.cf'),
      `compatibility_level = 3.6\nqueue_directory = /var/spool/postfix\nmaillog_file = /dev/stdout\n` +
        `myhostname = mail.saslauthd-ts.test\n`,
    );
    fs.copyFileSync('/etc/postfix/master.cf', path.join(conf, 'master.cf'));
    // `postfix check` creates missing queue directories (hold, trace on a
    // Postfix never configured): take back what it adds.
    const watched = ['/var/spool/postfix', '/var/lib/postfix'];
    const before = new Map(watched.map((d) => [d, new Set(exists(d) ? fs.readdirSync(d) : [])]));
    let r: CmdResult;
    try {
      r = await postfixCmd(conf, 'check');
    } finally {
      for (const [d, had] of before) {
        for (const name of exists(d) ? fs.readdirSync(d) : []) {
          if (!had.has(name)) fs.rmSync(path.join(d, name), { recursive: true, force: true });
        }
      }
    }
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.doesNotMatch(r.stdout + r.stderr, /var\/spool\/postfix\/var|saslauthd/);
  });

  test('systemd-analyze verify accepts the unit', () => {
    const r = sh('systemd-analyze', ['verify', UNIT]);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.doesNotMatch(r.stdout + r.stderr, /saslauthd-ts/);
  });

  test('the unit is Type=notify, checks the configuration first, restarts on failure and conflicts with Cyrus', () => {
    assert.equal(unitValue('Type'), 'notify');
    assert.equal(unitValue('NotifyAccess'), 'all');
    assert.equal(unitValue('Conflicts'), 'saslauthd.service');
    assert.equal(unitValue('Restart'), 'on-failure');
    const pre = unitCommands('ExecStartPre');
    assert.deepEqual(pre[0], ['/usr/sbin/saslauthd-ts', '--check', '-f', '--defaults-file', DEFAULTS]);
    assert.deepEqual(unitCommands('ExecStart'), [['/usr/sbin/saslauthd-ts', '-f', '--defaults-file', DEFAULTS]]);
  });

  test('the shipped defaults pass --check exactly as ExecStartPre runs it', () => {
    const [cmd, ...args] = unitCommands('ExecStartPre')[0] ?? [];
    const r = sh(cmd ?? '', args);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.match(r.stdout, /^mechanism \(-a\) +pam$/m);
    assert.match(r.stdout, /^configuration OK$/m);
    assert.equal(r.stderr, '');
  });

  const checkWith = (text: string | undefined): { file: string; r: CmdResult } => {
    const file = path.join(work, `defaults-${Math.random().toString(36).slice(2)}`);
    if (text !== undefined) fs.writeFileSync(file, text);
    return { file, r: sh('/usr/sbin/saslauthd-ts', ['--check', '-f', '--defaults-file', file]) };
  };

  test('--check fails on an unknown key, naming file, line and key', () => {
    const { file, r } = checkWith('MECHANISMS="pam"\n# old Debian\nPWDIR=/var/run/saslauthd\n');
    assert.equal(r.code, 1);
    assert.match(r.stderr, new RegExp(`error: ${file}:3: PWDIR: unknown variable`));
  });

  test('--check fails on a bad value, naming file, line and key', () => {
    const { file, r } = checkWith('MECHANISMS="pam"\nOPTIONS="-c -t 0"\n');
    assert.equal(r.code, 1);
    assert.match(r.stderr, new RegExp(`error: ${file}:2: OPTIONS: '-c -t 0': -t: must be at least 1`));
  });

  test('--check fails on a missing file, naming it', () => {
    const { file, r } = checkWith(undefined);
    assert.equal(r.code, 1);
    assert.match(r.stderr, new RegExp(`error: ${file}: cannot read the defaults file: no such file`));
  });

  test("the unit's run-dir helper re-creates the directory with an admin's dpkg-statoverride, and the chroot link", () => {
    const prepare = unitCommands('ExecStartPre')[1] ?? [];
    assert.equal(prepare[0], '/usr/lib/saslauthd-ts/prepare-run-dir');
    const ours = sh('dpkg-statoverride', ['--list', RUN_DIR]).stdout.trim();
    try {
      sh('dpkg-statoverride', ['--remove', RUN_DIR]);
      assert.equal(sh('dpkg-statoverride', ['--add', 'root', 'sasl', '750', RUN_DIR]).code, 0);
      fs.rmSync(RUN_DIR, { recursive: true, force: true });
      fs.unlinkSync(CHROOT_LINK);
      const r = sh(prepare[0] ?? '', prepare.slice(1));
      assert.equal(r.code, 0, r.stderr);
      assert.equal(fs.statSync(RUN_DIR).mode & 0o7777, 0o750);
      assert.equal(fs.statSync(RUN_DIR).gid, 45);
      assert.equal(fs.readlinkSync(CHROOT_LINK), '../..');
    } finally {
      sh('dpkg-statoverride', ['--remove', RUN_DIR]);
      if (ours !== '') {
        const [owner, group, mode] = ours.split(' ');
        sh('dpkg-statoverride', ['--update', '--add', owner ?? 'root', group ?? 'sasl', mode ?? '710', RUN_DIR]);
      }
    }
    assert.equal(fs.statSync(RUN_DIR).mode & 0o7777, 0o710);
  });

  test('run as the unit runs it, the daemon tells systemd it is ready only once the socket accepts', async () => {
    const pres = unitCommands('ExecStartPre');
    for (const [cmd, ...args] of pres) {
      const r = sh(cmd ?? '', args);
      assert.equal(r.code, 0, `${cmd} ${args.join(' ')}: ${r.stdout}${r.stderr}`);
    }
    const notifyDir = path.join(work, 'notify');
    fs.mkdirSync(notifyDir);
    const notifySocket = path.join(notifyDir, 'notify');
    const notifyFile = path.join(notifyDir, 'log');
    fs.writeFileSync(path.join(notifyDir, 'listener.py'), NOTIFY_LISTENER);
    listener = spawn('python3', [path.join(notifyDir, 'listener.py'), notifySocket, notifyFile, MUX], {
      stdio: 'ignore',
    });
    const readNotify = (): string => (exists(notifyFile) ? fs.readFileSync(notifyFile, 'utf8') : '');
    for (let i = 0; i < 100 && !readNotify().includes('listening'); i++) await new Promise((r) => setTimeout(r, 50));

    const [cmd, ...args] = unitCommands('ExecStart')[0] ?? [];
    daemon = spawn(cmd ?? '', args, {
      env: { ...process.env, NOTIFY_SOCKET: notifySocket },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    daemon.stdout?.on('data', (d: Buffer) => (daemonOut += d.toString()));
    daemon.stderr?.on('data', (d: Buffer) => (daemonOut += d.toString()));
    const end = Date.now() + 15_000;
    while (!readNotify().includes('READY=1') && Date.now() < end && daemon.exitCode === null) {
      await new Promise((r) => setTimeout(r, 50));
    }
    notifyLog = readNotify();
    assert.match(
      notifyLog,
      /READY=1 STATUS=listening on \/var\/spool\/postfix\/var\/run\/saslauthd\/mux, mechanism pam \[mux accepts\]/,
      `${notifyLog}\n${daemonOut}`,
    );
    const st = fs.statSync(RUN_DIR);
    assert.equal(st.mode & 0o7777, 0o710);
    assert.ok(fs.statSync(MUX).isSocket());
  });

  test("Debian's testsaslauthd gets OK for the right password and NO for a wrong one, through PAM", async () => {
    assert.ok(user);
    const good = await testsaslauthd({ socket: MUX, user: user.name, password: PASSWORD, service: 'smtp' });
    assert.equal(good.stdout, OK_LINE, good.stderr + daemonOut);
    const bad = await testsaslauthd({ socket: MUX, user: user.name, password: 'wrong', service: 'smtp' });
    assert.equal(bad.stdout, NO_LINE);
  });

  test('testsaslauthd-ts from the package finds the socket at its default path', async () => {
    assert.ok(user);
    const r = await run('/usr/sbin/testsaslauthd-ts', ['-u', user.name, '-p', PASSWORD, '-s', 'smtp']);
    assert.equal(r.stdout, OK_LINE, r.stderr);
  });

  test('the postfix user reaches the socket from inside the chroot by the seed path', () => {
    assert.ok(user);
    const probe = path.join(work, 'chroot-probe.py');
    fs.writeFileSync(probe, CHROOT_PROBE);
    const r = sh('python3', [probe, '/var/spool/postfix', MUX], { input: `${user.name}\n${PASSWORD}\n` });
    assert.equal(r.stdout.trim(), 'OK', r.stdout + r.stderr);
    // Debian libsasl's default path, relative to the chroot, is the same socket.
    const d = sh('python3', [probe, '/var/spool/postfix', '/var/run/saslauthd/mux'], {
      input: `${user.name}\n${PASSWORD}\n`,
    });
    assert.equal(d.stdout.trim(), 'OK', d.stdout + d.stderr);
  });

  test('SIGHUP keeps it serving; SIGTERM removes the socket, tells systemd it is stopping, and exits 0', async () => {
    assert.ok(daemon && user);
    daemon.kill('SIGHUP');
    await new Promise((r) => setTimeout(r, 300));
    const again = await testsaslauthd({ socket: MUX, user: user.name, password: PASSWORD, service: 'smtp' });
    assert.equal(again.stdout, OK_LINE);
    const code = await stopDaemon();
    assert.equal(code, 0, daemonOut);
    assert.equal(exists(MUX), false);
    const end = Date.now() + 5000;
    while (!fs.readFileSync(path.join(work, 'notify', 'log'), 'utf8').includes('STOPPING=1') && Date.now() < end) {
      await new Promise((r) => setTimeout(r, 50));
    }
    assert.match(fs.readFileSync(path.join(work, 'notify', 'log'), 'utf8'), /STOPPING=1/);
    listener?.kill('SIGKILL');
    listener = undefined;
    assert.ok(!daemonOut.includes(PASSWORD), 'password in the daemon log');
  });

  test('when Postfix is (re)installed, the dpkg trigger puts postfix in group sasl', () => {
    sh('gpasswd', ['-d', 'postfix', 'sasl']);
    assert.equal(postfixInSasl(), false);
    const t = sh('dpkg-trigger', ['--by-package=postfix', '--no-await', '/usr/sbin/postfix']);
    assert.equal(t.code, 0, t.stderr);
    const p = sh('dpkg', ['--triggers-only', PKG]);
    assert.equal(p.code, 0, p.stdout + p.stderr);
    assert.equal(postfixInSasl(), true);
    if (pre.postfixInSasl) {
      // It was a member before we came: purge must not take that away.
      fs.rmSync(path.join(STATE_DIR, 'postfix-added-to-sasl'), { force: true });
    }
  });

  const assertGone = (): void => {
    assert.equal(installed(), false);
    // Shared directories (/usr/sbin, /var/spool/postfix, /lib -> usr/lib) stay.
    const ours = (f: string): boolean =>
      f.startsWith('/usr/lib/saslauthd-ts') || f.startsWith('/usr/share/doc/saslauthd-ts');
    const isDir = (f: string): boolean => {
      try {
        return fs.statSync(f).isDirectory();
      } catch {
        return false;
      }
    };
    const left = installedFiles.filter((f) => exists(f) && (ours(f) || !isDir(f)));
    assert.deepEqual(left, []);
    for (const p of WATCHED_PATHS)
      assert.equal(exists(p), pre.paths[p], `${p}: ${exists(p) ? 'left behind' : 'was there before'}`);
    assert.equal(sh('dpkg-statoverride', ['--list', RUN_DIR]).stdout.trim(), pre.statoverride);
    assert.equal(postfixInSasl(), pre.postfixInSasl);
    assert.deepEqual(packageProcesses(), []);
  };

  test('purge leaves no files, statoverride, group change or process behind', () => {
    const r = purge();
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assertGone();
  });

  test('it installs again after a purge, and purges clean again', () => {
    const i = aptInstall(deb);
    assert.equal(i.code, 0, i.stdout + i.stderr);
    assert.equal(fs.statSync(RUN_DIR).mode & 0o7777, 0o710);
    assert.equal(postfixInSasl(), true);
    const [cmd, ...args] = unitCommands('ExecStartPre')[0] ?? [];
    assert.equal(sh(cmd ?? '', args).code, 0);
    const r = purge();
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assertGone();
  });
});
