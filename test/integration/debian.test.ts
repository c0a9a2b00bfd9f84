// The Debian package, for real: built by dpkg-buildpackage from a temp copy
// of this tree in a network namespace with no interfaces, then installed,
// upgraded, triggered, removed and purged with apt-get and dpkg on this
// machine. CI has no systemd as PID 1, so the daemon is run as the unit's
// ExecStartPre and ExecStart lines would run it, and the maintainer scripts
// are judged by their effects (links, statoverrides, group membership) and
// by the deb-systemd-helper/deb-systemd-invoke/invoke-rc.d calls they make
// (see helpers/maintscripts.ts). Each describe block sets up the state it
// needs and puts the machine back; the last after() leaves it as found:
// package purged, daemons stopped, users removed, temp dirs gone, group
// membership and statoverride as they were.
import { after, afterEach, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createUser, removeUser, userName, type TestUser } from '../helpers/users';
import { NO_LINE, OK_LINE, testsaslauthd } from '../helpers/testsaslauthd';
import { helpOptions, manOptions } from '../helpers/manpage';
import { run, postfixCmd } from '../helpers/postfix';
import { ROOT } from '../helpers/daemon';
import {
  alive,
  type CmdResult,
  MaintHarness,
  type MaintRun,
  type Scenario,
  sh,
  startCyrus,
  stopCyrus,
} from '../helpers/maintscripts';

const PKG = 'saslauthd-ts';
const UNIT_NAME = 'saslauthd-ts.service';
const RUN_DIR = '/var/spool/postfix/var/run/saslauthd';
const MUX = `${RUN_DIR}/mux`;
const CHROOT_LINK = '/var/spool/postfix/var/spool/postfix';
const UNIT = '/lib/systemd/system/saslauthd-ts.service';
const WANTS_LINK = '/etc/systemd/system/multi-user.target.wants/saslauthd-ts.service';
const DEFAULTS = '/etc/default/saslauthd-ts';
const STATE_DIR = '/var/lib/saslauthd-ts';
const PASSWORD = 'Deb-P4ss word!';

const ENABLE = `deb-systemd-helper enable ${UNIT_NAME}`;
const START = `deb-systemd-invoke start ${UNIT_NAME}`;
const RESTART = `deb-systemd-invoke restart ${UNIT_NAME}`;
const STOP = `deb-systemd-invoke stop ${UNIT_NAME}`;

interface MachineState {
  statoverride: string;
  cyrusStatoverride: string;
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
  '/var/spool/postfix/var/run',
  '/var/spool/postfix/var/spool',
  '/var/spool/postfix/var',
  '/usr/share/doc/saslauthd-ts',
  '/usr/share/man/man8/saslauthd-ts.8.gz',
  WANTS_LINK,
  '/var/lib/systemd/deb-systemd-helper-enabled/saslauthd-ts.service.dsh-also',
  '/var/lib/systemd/deb-systemd-helper-enabled/multi-user.target.wants/saslauthd-ts.service',
];

function exists(p: string): boolean {
  try {
    fs.lstatSync(p);
    return true;
  } catch {
    return false;
  }
}

function postfixInSasl(): boolean {
  return sh('id', ['-Gn', 'postfix']).stdout.trim().split(/\s+/).includes('sasl');
}

function statoverride(p: string): string {
  return sh('dpkg-statoverride', ['--list', p]).stdout.trim();
}

function snapshot(): MachineState {
  const paths: Record<string, boolean> = {};
  for (const p of WATCHED_PATHS) paths[p] = exists(p);
  return {
    statoverride: statoverride(RUN_DIR),
    cyrusStatoverride: statoverride('/var/run/saslauthd'),
    postfixInSasl: postfixInSasl(),
    paths,
  };
}

function installed(): boolean {
  return /^install ok installed/.test(sh('dpkg-query', ['-W', '-f=${Status}', PKG]).stdout);
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

/** A daemon started as the unit starts it, with a stand-in for systemd's notification socket. */
interface UnitDaemon {
  child: ChildProcess;
  output: () => string;
  notifyLog: () => string;
  stop: () => Promise<number | null>;
}

describe('Debian package', () => {
  let work = '';
  let deb = '';
  let upgradeDeb = '';
  /** The machine before the tests; restored at the end. */
  let original: MachineState | undefined;
  /** The machine each block starts from: no statoverride on the run dir, postfix not in sasl. */
  let baseline: MachineState;
  let h: MaintHarness;
  let user: TestUser | undefined;
  let buildLog = '';
  let builtOffline = false;
  let offlineProblem = '';
  const cyrusPids = new Set<number>();

  /** Purge and take back whatever a test left, down to the baseline. */
  const resetMachine = (): void => {
    if (installed() || /config-files/.test(sh('dpkg-query', ['-W', '-f=${Status}', PKG]).stdout)) {
      // sasl2-bin "removed", so that purge takes back the sasl membership too.
      h.purge(PKG, { sasl2bin: 'config-files' });
    }
    if (postfixInSasl() !== baseline.postfixInSasl) {
      sh('gpasswd', [baseline.postfixInSasl ? '-a' : '-d', 'postfix', 'sasl']);
    }
    if (statoverride(RUN_DIR) !== baseline.statoverride) sh('dpkg-statoverride', ['--remove', RUN_DIR]);
    for (const p of [
      RUN_DIR,
      CHROOT_LINK,
      '/var/spool/postfix/var/run',
      '/var/spool/postfix/var/spool',
      '/var/spool/postfix/var',
    ]) {
      if (!baseline.paths[p] && exists(p)) fs.rmSync(p, { recursive: true, force: true });
    }
    if (!baseline.paths[STATE_DIR]) fs.rmSync(STATE_DIR, { recursive: true, force: true });
  };

  const install = (sc: Scenario = {}): MaintRun => {
    const r = h.install(deb, sc);
    assert.equal(r.code, 0, `install failed:\n${r.output}`);
    return r;
  };

  const ensureInstalled = (): void => {
    if (!installed()) install();
  };

  const cyrus = (runDir: string, mech = 'pam'): number => {
    const pid = startCyrus(runDir, mech);
    cyrusPids.add(pid);
    return pid;
  };

  const stopAllCyrus = async (): Promise<void> => {
    for (const pid of cyrusPids) await stopCyrus(pid);
    cyrusPids.clear();
  };

  const startAsUnit = async (): Promise<UnitDaemon> => {
    for (const [cmd, ...args] of unitCommands('ExecStartPre')) {
      const r = sh(cmd ?? '', args);
      assert.equal(r.code, 0, `${cmd} ${args.join(' ')}: ${r.stdout}${r.stderr}`);
    }
    const notifyDir = fs.mkdtempSync(path.join(work, 'notify-'));
    const notifySocket = path.join(notifyDir, 'notify');
    const notifyFile = path.join(notifyDir, 'log');
    fs.writeFileSync(path.join(notifyDir, 'listener.py'), NOTIFY_LISTENER);
    const listener = spawn('python3', [path.join(notifyDir, 'listener.py'), notifySocket, notifyFile, MUX], {
      stdio: 'ignore',
    });
    const notifyLog = (): string => (exists(notifyFile) ? fs.readFileSync(notifyFile, 'utf8') : '');
    for (let i = 0; i < 100 && !notifyLog().includes('listening'); i++) await new Promise((r) => setTimeout(r, 50));

    const [cmd, ...args] = unitCommands('ExecStart')[0] ?? [];
    const child = spawn(cmd ?? '', args, {
      env: { ...process.env, NOTIFY_SOCKET: notifySocket },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    child.stdout?.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr?.on('data', (d: Buffer) => (out += d.toString()));
    const end = Date.now() + 15_000;
    while (!notifyLog().includes('READY=1') && Date.now() < end && child.exitCode === null) {
      await new Promise((r) => setTimeout(r, 50));
    }
    const stop = async (): Promise<number | null> => {
      let code: number | null = child.exitCode;
      if (code === null) {
        const exited = new Promise<number | null>((res) => child.once('exit', (c) => res(c)));
        child.kill('SIGTERM');
        const t = setTimeout(() => child.kill('SIGKILL'), 20_000);
        code = await exited;
        clearTimeout(t);
      }
      // Let the listener record what the daemon sent last (STOPPING=1).
      const until = Date.now() + 5000;
      while (!notifyLog().includes('STOPPING=1') && Date.now() < until) await new Promise((r) => setTimeout(r, 50));
      listener.kill('SIGKILL');
      return code;
    };
    return { child, output: () => out, notifyLog, stop };
  };

  before(() => {
    // A leftover install (an earlier run that died) would spoil the baseline.
    work = fs.mkdtempSync(path.join(os.tmpdir(), 'saslauthd-ts-deb-'));
    h = new MaintHarness(work);
    if (installed()) h.purge(PKG);
    original = snapshot();
    // The first-install steps can only be seen on a machine without them.
    if (original.postfixInSasl) sh('gpasswd', ['-d', 'postfix', 'sasl']);
    if (original.statoverride !== '') sh('dpkg-statoverride', ['--remove', RUN_DIR]);
    baseline = snapshot();

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
    // Without a network namespace the build still runs (the other tests need
    // the .deb), but the test that claims an offline build then fails.
    const probe = sh('unshare', ['--net', 'true']);
    builtOffline = probe.code === 0;
    offlineProblem = builtOffline ? '' : `unshare --net failed (${probe.code}): ${probe.stderr.trim()}`;
    const b = builtOffline
      ? sh('unshare', ['--net', 'dpkg-buildpackage', '-us', '-uc', '-b'], { cwd: src })
      : sh('dpkg-buildpackage', ['-us', '-uc', '-b'], { cwd: src });
    buildLog = b.stdout + b.stderr;
    assert.equal(b.code, 0, `dpkg-buildpackage failed:\n${buildLog.slice(-6000)}`);
    const debs = fs.readdirSync(work).filter((f) => /^saslauthd-ts_.*\.deb$/.test(f));
    assert.equal(debs.length, 1, `expected one .deb in ${work}: ${fs.readdirSync(work).join(' ')}`);
    deb = path.join(work, debs[0] ?? '');

    // The same package with a higher version: installing it runs the
    // maintainer scripts' upgrade path (postinst configure <old version>).
    const raw = path.join(work, 'upgrade-root');
    assert.equal(sh('dpkg-deb', ['-R', deb, raw]).code, 0);
    const control = path.join(raw, 'DEBIAN', 'control');
    fs.writeFileSync(control, fs.readFileSync(control, 'utf8').replace(/^Version: (.*)$/m, 'Version: $1+upgradetest1'));
    upgradeDeb = path.join(work, 'upgrade.deb');
    const b2 = sh('dpkg-deb', ['--build', raw, upgradeDeb]);
    assert.equal(b2.code, 0, b2.stderr);

    user = createUser(userName('deb'), PASSWORD);
  });

  after(async () => {
    await stopAllCyrus();
    if (user !== undefined) removeUser(user.name);
    if (h !== undefined && baseline !== undefined) resetMachine();
    // Put postfix's membership and the statoverride back as they were, whatever happened.
    if (original !== undefined) {
      if (postfixInSasl() !== original.postfixInSasl) {
        sh('gpasswd', [original.postfixInSasl ? '-a' : '-d', 'postfix', 'sasl']);
      }
      if (statoverride(RUN_DIR) !== original.statoverride) {
        sh('dpkg-statoverride', ['--remove', RUN_DIR]);
        const [owner, group, mode] = original.statoverride.split(' ');
        if (original.statoverride !== '') sh('dpkg-statoverride', ['--add', owner ?? '', group ?? '', mode ?? '', RUN_DIR]);
      }
    }
    h?.cleanup();
    if (work !== '') fs.rmSync(work, { recursive: true, force: true });
  });

  describe('build', () => {
    test('dpkg-buildpackage builds the .deb with no network at all (a network namespace without interfaces)', () => {
      assert.ok(builtOffline, `the build could not be cut off from the network: ${offlineProblem}`);
      assert.match(buildLog, /dpkg-deb: building package 'saslauthd-ts'/);
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

    test('Maintainer and Homepage name the project, not a placeholder, and Standards-Version is 4.7.x', () => {
      const maintainer = sh('dpkg-deb', ['-f', deb, 'Maintainer']).stdout.trim();
      const homepage = sh('dpkg-deb', ['-f', deb, 'Homepage']).stdout.trim();
      assert.match(maintainer, /^[^<>]+ <[^@\s]+@[^@\s]+\.[a-z]+>$/);
      assert.match(homepage, /^https:\/\/[^/\s]+\//);
      for (const v of [maintainer, homepage]) {
        assert.doesNotMatch(v, /example\.(com|org|net)|\.invalid\b|\.example\b|\.test\b|localhost|placeholder/i);
      }
      const control = fs.readFileSync(path.join(ROOT, 'debian', 'control'), 'utf8');
      assert.match(control, /^Standards-Version: 4\.7\.\d+$/m);
      const copyright = fs.readFileSync(path.join(ROOT, 'debian', 'copyright'), 'utf8');
      assert.match(copyright, new RegExp(`^Upstream-Contact: ${maintainer.replace(/[.+]/g, '\\$&')}$`, 'm'));
    });
  });

  describe('first install with apt-get, no Cyrus saslauthd in use', () => {
    let first: MaintRun;
    let installedFiles: string[] = [];

    before(() => {
      resetMachine();
      first = h.aptInstall(deb);
      assert.equal(first.code, 0, `apt-get install failed:\n${first.output}`);
      installedFiles = sh('dpkg', ['-L', PKG])
        .stdout.split('\n')
        .filter((l) => l.startsWith('/'));
    });
    after(resetMachine);

    test('postinst enables the unit and starts it', () => {
      assert.ok(first.calls.includes(ENABLE), first.calls.join('\n'));
      assert.ok(first.calls.includes(START), first.calls.join('\n'));
      assert.ok(exists(WANTS_LINK), `${WANTS_LINK} missing`);
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
        '/usr/share/doc/saslauthd-ts/NEWS.Debian.gz',
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
      assert.match(sh('dpkg-query', ['-W', '-f=${Conffiles}', PKG]).stdout, /\/etc\/default\/saslauthd-ts /);
    });

    test('the launchers start with #!/usr/bin/node (Policy 10.4), are executable, and run', () => {
      for (const name of ['saslauthd-ts', 'testsaslauthd-ts']) {
        const file = `/usr/lib/saslauthd-ts/bin/${name}.js`;
        assert.equal(fs.readFileSync(file, 'utf8').split('\n')[0], '#!/usr/bin/node', file);
        assert.ok((fs.statSync(file).mode & 0o111) !== 0, `${file} not executable`);
      }
      const v = sh('/usr/sbin/saslauthd-ts', ['-v']);
      assert.equal(v.code, 0, v.stderr);
      assert.match(v.stderr, /^saslauthd-ts \d+\.\d+\.\d+\nauthentication mechanisms: .*pam/);
      assert.equal(sh('/usr/sbin/testsaslauthd-ts', ['-h']).code, 0);
    });

    test('the installed commands list the same options as their man pages, which man reads without warnings', () => {
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
      assert.equal(statoverride(RUN_DIR), `root sasl 710 ${RUN_DIR}`);
      assert.equal(postfixInSasl(), true);
      assert.ok(exists(path.join(STATE_DIR, 'postfix-added-to-sasl')));
    });

    test('the chroot link gives the socket the same absolute path inside /var/spool/postfix', async () => {
      assert.equal(fs.readlinkSync(CHROOT_LINK), '../..');
      // What smtpd opens after chroot("/var/spool/postfix"), seen from outside:
      assert.equal(fs.realpathSync(`/var/spool/postfix${RUN_DIR}`), RUN_DIR);
      // And Postfix's own check has nothing to say about the package's files.
      const conf = fs.mkdtempSync(path.join(work, 'postfix-check-'));
      fs.writeFileSync(
        path.join(conf, 'main.cf'),
        `compatibility_level = 3.6\nqueue_directory = /var/spool/postfix\nmaillog_file = /dev/stdout\n` +
          `myhostname = mail.saslauthd-ts.test\n`,
      );
      fs.copyFileSync('/etc/postfix/master.cf', path.join(conf, 'master.cf'));
      // `postfix check` creates missing queue directories (hold, trace on a
      // Postfix never configured): take back what it adds.
      const watched = ['/var/spool/postfix', '/var/lib/postfix'];
      const had = new Map(watched.map((d) => [d, new Set(exists(d) ? fs.readdirSync(d) : [])]));
      let r: CmdResult;
      try {
        r = await postfixCmd(conf, 'check');
      } finally {
        for (const [d, names] of had) {
          for (const name of exists(d) ? fs.readdirSync(d) : []) {
            if (!names.has(name)) fs.rmSync(path.join(d, name), { recursive: true, force: true });
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

    test('the unit is Type=notify, checks the configuration first, and restarts on failure', () => {
      assert.equal(unitValue('Type'), 'notify');
      assert.equal(unitValue('NotifyAccess'), 'all');
      assert.equal(unitValue('Restart'), 'on-failure');
      const pre = unitCommands('ExecStartPre');
      assert.deepEqual(pre[0], ['/usr/sbin/saslauthd-ts', '--check', '-f', '--defaults-file', DEFAULTS]);
      assert.deepEqual(unitCommands('ExecStart'), [['/usr/sbin/saslauthd-ts', '-f', '--defaults-file', DEFAULTS]]);
    });

    test("the unit has no Conflicts= with Cyrus's saslauthd, and does not restart on exit status 2", () => {
      assert.equal(unitValue('Conflicts'), undefined);
      assert.equal(unitValue('RestartPreventExitStatus'), '2');
    });

    test('the unit logs to facility auth and sets LimitNOFILE explicitly', () => {
      assert.equal(unitValue('SyslogFacility'), 'auth');
      assert.equal(unitValue('LimitNOFILE'), '65536');
    });

    test('the shipped defaults set START=no and pass --check exactly as ExecStartPre runs it, without a warning', () => {
      assert.match(fs.readFileSync(DEFAULTS, 'utf8'), /^START=no$/m);
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

    test('--check warns about START=yes in our defaults file, naming file, line and key', () => {
      const { file, r } = checkWith('MECHANISMS="pam"\nSTART=yes\n');
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stderr, new RegExp(`warning: ${file}:2: START: 'yes' makes Cyrus's saslauthd init script`));
    });

    test("the unit's run-dir helper re-creates the directory with an admin's dpkg-statoverride, and the chroot link", () => {
      const prepare = unitCommands('ExecStartPre')[1] ?? [];
      assert.equal(prepare[0], '/usr/lib/saslauthd-ts/prepare-run-dir');
      const ours = statoverride(RUN_DIR);
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
    });
  });

  describe('run as the unit runs it', () => {
    let d: UnitDaemon;

    before(async () => {
      ensureInstalled();
      d = await startAsUnit();
    });
    after(async () => {
      await d?.stop();
      resetMachine();
    });

    test('the daemon tells systemd it is ready only once the socket accepts', () => {
      assert.match(
        d.notifyLog(),
        /READY=1 STATUS=listening on \/var\/spool\/postfix\/var\/run\/saslauthd\/mux, mechanism pam \[mux accepts\]/,
        `${d.notifyLog()}\n${d.output()}`,
      );
      assert.equal(fs.statSync(RUN_DIR).mode & 0o7777, 0o710);
      assert.ok(fs.statSync(MUX).isSocket());
    });

    test("Debian's testsaslauthd gets OK for the right password and NO for a wrong one, through PAM", async () => {
      assert.ok(user);
      const good = await testsaslauthd({ socket: MUX, user: user.name, password: PASSWORD, service: 'smtp' });
      assert.equal(good.stdout, OK_LINE, good.stderr + d.output());
      const bad = await testsaslauthd({ socket: MUX, user: user.name, password: 'wrong', service: 'smtp' });
      assert.equal(bad.stdout, NO_LINE);
    });

    test('testsaslauthd-ts from the package finds the socket at its default path', async () => {
      assert.ok(user);
      const r = await run('/usr/sbin/testsaslauthd-ts', ['-u', user.name, '-p', PASSWORD, '-s', 'smtp']);
      assert.equal(r.stdout, OK_LINE, r.stderr);
    });

    test('the postfix user reaches the socket from inside the chroot by the seed path and by the default path', () => {
      assert.ok(user);
      const probe = path.join(work, 'chroot-probe.py');
      fs.writeFileSync(probe, CHROOT_PROBE);
      const r = sh('python3', [probe, '/var/spool/postfix', MUX], { input: `${user.name}\n${PASSWORD}\n` });
      assert.equal(r.stdout.trim(), 'OK', r.stdout + r.stderr);
      // Debian libsasl's default path, relative to the chroot, is the same socket.
      const dflt = sh('python3', [probe, '/var/spool/postfix', '/var/run/saslauthd/mux'], {
        input: `${user.name}\n${PASSWORD}\n`,
      });
      assert.equal(dflt.stdout.trim(), 'OK', dflt.stdout + dflt.stderr);
    });

    test('SIGHUP keeps it serving', async () => {
      assert.ok(user);
      d.child.kill('SIGHUP');
      const end = Date.now() + 10_000;
      while (!/SIGHUP/.test(d.output()) && Date.now() < end) await new Promise((r) => setTimeout(r, 50));
      assert.match(d.output(), /SIGHUP/);
      const again = await testsaslauthd({ socket: MUX, user: user.name, password: PASSWORD, service: 'smtp' });
      assert.equal(again.stdout, OK_LINE);
      assert.equal(d.child.exitCode, null);
    });

    test('a second daemon started as the unit starts it exits 2, the status the unit does not restart on', () => {
      const [cmd, ...args] = unitCommands('ExecStart')[0] ?? [];
      const r = sh(cmd ?? '', args, { timeout: 30_000 });
      assert.equal(r.code, 2, r.stdout + r.stderr);
      assert.match(r.stderr, /already answering/);
      assert.equal(unitValue('RestartPreventExitStatus'), '2');
      assert.ok(fs.statSync(MUX).isSocket(), 'the first daemon lost its socket');
    });
  });

  describe('stopping as systemd stops it', () => {
    let d: UnitDaemon;

    before(async () => {
      ensureInstalled();
      d = await startAsUnit();
    });
    after(async () => {
      await d?.stop();
      resetMachine();
    });

    test('SIGTERM removes the socket, tells systemd it is stopping, exits 0 and never logs the password', async () => {
      assert.ok(user);
      const ok = await testsaslauthd({ socket: MUX, user: user.name, password: PASSWORD, service: 'smtp' });
      assert.equal(ok.stdout, OK_LINE);
      const code = await d.stop();
      assert.equal(code, 0, d.output());
      assert.equal(exists(MUX), false);
      assert.match(d.notifyLog(), /STOPPING=1/);
      assert.ok(!d.output().includes(PASSWORD), 'password in the daemon log');
    });
  });

  describe("first install next to Cyrus's saslauthd", () => {
    afterEach(async () => {
      await stopAllCyrus();
      resetMachine();
    });

    const assertNotTakenOver = (r: MaintRun): void => {
      assert.ok(!r.calls.includes(ENABLE), r.calls.join('\n'));
      assert.ok(!r.calls.some((c) => /^deb-systemd-invoke (start|restart) /.test(c)), r.calls.join('\n'));
      assert.equal(exists(WANTS_LINK), false, `${WANTS_LINK} exists`);
      assert.match(r.output, /NEWS\.Debian/);
      assert.match(r.output, /systemctl enable --now saslauthd-ts/);
    };

    test('over a running Cyrus saslauthd, the unit is neither enabled nor started, and postinst says why and how to switch', () => {
      const pid = cyrus(h.cyrusRunDir);
      const r = install();
      assertNotTakenOver(r);
      assert.match(r.output, new RegExp(`running \\(pid ${pid} in ${h.cyrusRunDir}/saslauthd\\.pid\\)`));
      assert.ok(alive(pid), 'Cyrus saslauthd was stopped');
    });

    test('with START=yes in /etc/default/saslauthd, the unit is neither enabled nor started', () => {
      const r = install({ cyrusDefaults: h.stockCyrusDefaults('START=yes\n') });
      assertNotTakenOver(r);
      assert.match(r.output, /START=yes in \/etc\/default\/saslauthd/);
    });

    test("with Cyrus's SysV links enabled (update-rc.d saslauthd enable), the unit is neither enabled nor started", () => {
      const r = install({ cyrusRcEnabled: true });
      assertNotTakenOver(r);
      assert.match(r.output, /enabled \(systemctl is-enabled saslauthd\)/);
    });

    test("with Cyrus in use, the statoverride and postfix's sasl membership are still set up", () => {
      install({ cyrusDefaults: h.stockCyrusDefaults('START=yes\n') });
      assert.equal(statoverride(RUN_DIR), `root sasl 710 ${RUN_DIR}`);
      assert.equal(postfixInSasl(), true);
    });

    test('START=yes in a comment only does not count: the unit is enabled and started', () => {
      const r = install({ cyrusDefaults: h.stockCyrusDefaults('#START=yes\n# START=yes\n') });
      assert.ok(r.calls.includes(ENABLE), r.calls.join('\n'));
      assert.ok(r.calls.includes(START), r.calls.join('\n'));
    });

    test('with sasl2-bin removed, its leftover START=yes and rc links do not keep the unit off', () => {
      const r = install({
        cyrusDefaults: h.stockCyrusDefaults('START=yes\n'),
        cyrusRcEnabled: true,
        sasl2bin: 'config-files',
      });
      assert.ok(r.calls.includes(ENABLE), r.calls.join('\n'));
      assert.ok(r.calls.includes(START), r.calls.join('\n'));
      assert.ok(exists(WANTS_LINK));
    });
  });

  describe('upgrade', () => {
    afterEach(resetMachine);

    const upgrade = (sc: Scenario = {}): MaintRun => {
      const r = h.run(['dpkg', '-i', upgradeDeb], sc);
      assert.equal(r.code, 0, r.output);
      assert.match(sh('dpkg-query', ['-W', '-f=${Version}', PKG]).stdout, /\+upgradetest1$/);
      return r;
    };

    test('an upgrade does not put back a statoverride the admin removed', () => {
      install();
      sh('dpkg-statoverride', ['--remove', RUN_DIR]);
      const r = upgrade();
      assert.equal(statoverride(RUN_DIR), '');
      assert.ok(!r.calls.some((c) => /^dpkg-statoverride .*--add/.test(c)), r.calls.join('\n'));
    });

    test('an upgrade does not put postfix back in group sasl after the admin took it out', () => {
      install();
      sh('gpasswd', ['-d', 'postfix', 'sasl']);
      const r = upgrade();
      assert.equal(postfixInSasl(), false);
      assert.ok(!r.calls.some((c) => /^adduser /.test(c)), r.calls.join('\n'));
    });

    test('an upgrade restarts an enabled unit and does not start it as a first install would', () => {
      install();
      const r = upgrade();
      assert.ok(r.calls.includes(RESTART), r.calls.join('\n'));
      assert.ok(!r.calls.includes(START), r.calls.join('\n'));
      assert.ok(exists(WANTS_LINK));
    });

    test('an upgrade does not enable a unit that was left off for Cyrus, even once Cyrus is gone', () => {
      install({ cyrusDefaults: h.stockCyrusDefaults('START=yes\n') });
      const r = upgrade();
      assert.ok(!r.calls.includes(ENABLE), r.calls.join('\n'));
      assert.ok(!r.calls.includes(START), r.calls.join('\n'));
      assert.equal(exists(WANTS_LINK), false);
    });

    test('an upgrade does not enable a unit the admin disabled', () => {
      install();
      assert.equal(sh('systemctl', ['disable', UNIT_NAME]).code, 0);
      const r = upgrade();
      assert.ok(!r.calls.includes(ENABLE), r.calls.join('\n'));
      assert.equal(exists(WANTS_LINK), false);
    });
  });

  describe('dpkg trigger on /usr/sbin/postfix', () => {
    afterEach(resetMachine);

    test('a Postfix upgrade or reinstall does not put postfix back in group sasl after the admin took it out', () => {
      install();
      sh('gpasswd', ['-d', 'postfix', 'sasl']);
      const t = h.postfixTrigger(PKG);
      assert.equal(t.code, 0, t.output);
      assert.equal(postfixInSasl(), false);
    });

    test('Postfix installed after us gets postfix into group sasl once, and not again', () => {
      install({ noPostfixUser: true });
      assert.equal(postfixInSasl(), false, 'postfix was added although "not installed"');
      const first = h.postfixTrigger(PKG);
      assert.equal(first.code, 0, first.output);
      assert.equal(postfixInSasl(), true);
      sh('gpasswd', ['-d', 'postfix', 'sasl']);
      const again = h.postfixTrigger(PKG);
      assert.equal(again.code, 0, again.output);
      assert.equal(postfixInSasl(), false);
    });

    test('a Postfix reinstall puts back the run directory and chroot link its purge removed', () => {
      install();
      fs.rmSync(RUN_DIR, { recursive: true, force: true });
      fs.unlinkSync(CHROOT_LINK);
      const t = h.postfixTrigger(PKG);
      assert.equal(t.code, 0, t.output);
      assert.equal(fs.statSync(RUN_DIR).mode & 0o7777, 0o710);
      assert.equal(fs.statSync(RUN_DIR).gid, 45);
      assert.equal(fs.readlinkSync(CHROOT_LINK), '../..');
    });
  });

  describe('remove and purge', () => {
    afterEach(async () => {
      await stopAllCyrus();
      resetMachine();
    });

    test('remove stops the unit and keeps /etc/default/saslauthd-ts', () => {
      install();
      const r = h.remove(PKG);
      assert.equal(r.code, 0, r.output);
      assert.ok(r.calls.includes(STOP), r.calls.join('\n'));
      assert.ok(exists(DEFAULTS));
      assert.equal(installed(), false);
    });

    test('purge with sasl2-bin installed keeps postfix in group sasl, and says so', () => {
      install();
      assert.equal(postfixInSasl(), true);
      const r = h.purge(PKG);
      assert.equal(r.code, 0, r.output);
      assert.equal(postfixInSasl(), true);
      assert.match(r.output, /postfix stays in group sasl/);
      assert.ok(!r.calls.some((c) => /^(gpasswd|deluser) /.test(c)), r.calls.join('\n'));
    });

    test('purge without sasl2-bin takes postfix out of group sasl again', () => {
      install();
      const r = h.purge(PKG, { sasl2bin: 'config-files' });
      assert.equal(r.code, 0, r.output);
      assert.equal(postfixInSasl(), false);
    });

    test("purge leaves a running Cyrus's socket and pid file alone in the run directory its uncommented OPTIONS names", () => {
      const sc = { cyrusDefaults: h.stockCyrusDefaults('', RUN_DIR) };
      install(sc);
      const pid = cyrus(RUN_DIR);
      const r = h.purge(PKG, sc);
      assert.equal(r.code, 0, r.output);
      assert.ok(fs.statSync(MUX).isSocket(), 'the socket of Cyrus is gone');
      assert.equal(fs.readFileSync(path.join(RUN_DIR, 'saslauthd.pid'), 'utf8').trim(), String(pid));
      assert.ok(alive(pid));
    });

    test("purge clears what a killed daemon left in the run directory when Cyrus's defaults name it in a comment only", () => {
      // The stock file's comment reads: Example for chroot Postfix users: "-c -m /var/spool/postfix/var/run/saslauthd"
      const sc = { cyrusDefaults: h.stockCyrusDefaults() };
      assert.match(sc.cyrusDefaults, /^# .*-m \/var\/spool\/postfix\/var\/run\/saslauthd/m);
      install(sc);
      // A daemon killed with SIGKILL leaves its socket (and, detached, its pid file).
      const bind = sh('python3', ['-c', 'import socket,sys; socket.socket(socket.AF_UNIX).bind(sys.argv[1])', MUX]);
      assert.equal(bind.code, 0, bind.stderr);
      fs.writeFileSync(path.join(RUN_DIR, 'saslauthd.pid'), '999999\n');
      const r = h.purge(PKG, sc);
      assert.equal(r.code, 0, r.output);
      assert.equal(exists(MUX), false, 'stale socket left behind');
      assert.equal(exists(RUN_DIR), baseline.paths[RUN_DIR]);
    });

    test('purge leaves no files, statoverride, group change, unit link or process behind', () => {
      install();
      const installedFiles = sh('dpkg', ['-L', PKG])
        .stdout.split('\n')
        .filter((l) => l.startsWith('/'));
      const r = h.purge(PKG, { sasl2bin: 'config-files' });
      assert.equal(r.code, 0, r.output);
      assert.equal(installed(), false);
      // Shared directories (/usr/sbin, /var/spool/postfix, /lib -> usr/lib) stay.
      const ours = (f: string): boolean => f.startsWith('/usr/lib/saslauthd-ts') || f.startsWith('/usr/share/doc/saslauthd-ts');
      const isDir = (f: string): boolean => {
        try {
          return fs.statSync(f).isDirectory();
        } catch {
          return false;
        }
      };
      assert.deepEqual(
        installedFiles.filter((f) => exists(f) && (ours(f) || !isDir(f))),
        [],
      );
      for (const p of WATCHED_PATHS) {
        assert.equal(exists(p), baseline.paths[p], `${p}: ${exists(p) ? 'left behind' : 'was there before'}`);
      }
      assert.equal(statoverride(RUN_DIR), baseline.statoverride);
      assert.equal(statoverride('/var/run/saslauthd'), baseline.cyrusStatoverride, "Cyrus's statoverride changed");
      assert.equal(postfixInSasl(), baseline.postfixInSasl);
      assert.deepEqual(packageProcesses(), []);
    });

    test('after a purge it installs again as a first install: statoverride, group, unit enabled and started', () => {
      install();
      assert.equal(h.purge(PKG, { sasl2bin: 'config-files' }).code, 0);
      const again = install();
      assert.equal(statoverride(RUN_DIR), `root sasl 710 ${RUN_DIR}`);
      assert.equal(postfixInSasl(), true);
      assert.ok(again.calls.includes(ENABLE), again.calls.join('\n'));
      assert.ok(again.calls.includes(START), again.calls.join('\n'));
    });
  });

  describe('rollback to Cyrus', () => {
    after(async () => {
      await stopAllCyrus();
      resetMachine();
    });

    test('with Cyrus back on the chroot run directory, purge keeps it answering the postfix user inside the chroot', () => {
      assert.ok(user);
      // Cyrus set up as sasl2-bin's README says for a chrooted Postfix, and
      // started again by the admin (saslauthd-ts stopped and disabled).
      const sc = { cyrusDefaults: h.stockCyrusDefaults('START=yes\n', RUN_DIR) };
      install(sc);
      cyrus(RUN_DIR, 'shadow');
      const p = h.purge(PKG, sc);
      assert.equal(p.code, 0, p.output);
      const probe = path.join(work, 'chroot-probe.py');
      fs.writeFileSync(probe, CHROOT_PROBE);
      const r = sh('python3', [probe, '/var/spool/postfix', '/var/run/saslauthd/mux'], {
        input: `${user.name}\n${PASSWORD}\n`,
      });
      assert.equal(r.stdout.trim(), 'OK', r.stdout + r.stderr);
    });
  });
});
