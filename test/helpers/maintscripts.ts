// Runs dpkg (and apt-get) so that the package's maintainer scripts can be
// judged by what they do, on a machine without systemd as PID 1, and without
// touching the machine's own Cyrus setup.
//
// Each run happens in a private mount namespace (unshare --mount), where:
// - /run/systemd/system exists on a tmpfs, so the scripts' "is systemd
//   running?" guards pass and their start/stop/restart requests are made;
// - /etc/default/saslauthd is a file of the test's (START=, OPTIONS -m ...),
//   and /etc/rc[2-5].d are copies with Cyrus's SysV links enabled or not,
//   as `update-rc.d saslauthd enable|disable` leaves them;
// - PATH starts with wrappers that record every call to deb-systemd-helper,
//   deb-systemd-invoke, invoke-rc.d, systemctl, adduser, gpasswd, deluser
//   and dpkg-statoverride. Requests to a running systemd or init script
//   (start, restart, daemon-reload, invoke-rc.d ...) are only recorded;
//   offline work (deb-systemd-helper, systemctl is-enabled and preset, the
//   user and statoverride tools) runs for real, so its effects can be
//   checked on the machine. dpkg-query and getent can be told to lie about
//   sasl2-bin's state and the postfix user, to simulate a machine without
//   them: this machine's sasl2-bin and Postfix are used by other tests and
//   cannot be removed.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';

export interface CmdResult {
  code: number;
  stdout: string;
  stderr: string;
}

export function sh(
  cmd: string,
  args: string[],
  opts: { cwd?: string; input?: string; env?: NodeJS.ProcessEnv; timeout?: number } = {},
): CmdResult {
  const r = spawnSync(cmd, args, { encoding: 'utf8', maxBuffer: 64 << 20, ...opts });
  return { code: r.status ?? -1, stdout: r.stdout ?? '', stderr: r.stderr ?? '' };
}

export interface Scenario {
  /** The text of /etc/default/saslauthd during the run (default: stockCyrusDefaults() of the harness). */
  cyrusDefaults?: string;
  /** Cyrus's SysV script enabled (S01saslauthd links in rc2-5.d), as `update-rc.d saslauthd enable` leaves it. */
  cyrusRcEnabled?: boolean;
  /** What dpkg-query reports as sasl2-bin's status, e.g. 'config-files' (removed, not purged). Default: the truth. */
  sasl2bin?: string;
  /** getent does not know the postfix user (Postfix not installed yet). */
  noPostfixUser?: boolean;
}

export interface MaintRun {
  code: number;
  /** stdout and stderr of dpkg/apt-get and the maintainer scripts. */
  output: string;
  /** One line per recorded call, e.g. "deb-systemd-invoke start saslauthd-ts.service". */
  calls: string[];
}

const RECORDED = [
  'deb-systemd-helper',
  'deb-systemd-invoke',
  'invoke-rc.d',
  'systemctl',
  'adduser',
  'gpasswd',
  'deluser',
  'dpkg-statoverride',
  'dpkg-query',
  'getent',
] as const;

// Run as root by `unshare --mount`: the namespace's view, then the command.
const NS_SCRIPT = `set -eu
[ -d /run/systemd ]
mount -t tmpfs -o mode=0755 tmpfs /run/systemd
mkdir /run/systemd/system
mount --bind "$NS_CYRUS_DEFAULTS" /etc/default/saslauthd
for n in 2 3 4 5; do
	mount --bind "$NS_RC/rc$n.d" "/etc/rc$n.d"
done
PATH="$NS_WRAP:$PATH"
export PATH
exec "$@"
`;

function wrapper(name: string, real: string): string {
  const record = `printf '%s\\n' "${name} $*" >> "$NS_CALLS"\n`;
  const exec = `exec '${real}' "$@"\n`;
  switch (name) {
    case 'deb-systemd-invoke':
    case 'invoke-rc.d':
      // Asks systemd or an init script to act: recorded only.
      return `#!/bin/sh\n${record}exit 0\n`;
    case 'systemctl':
      return (
        `#!/bin/sh\n${record}` +
        // Offline (unit files and links): for real. A running manager: nothing runs here.
        `for a in "$@"; do\n` +
        `\tcase "$a" in\n` +
        `\t--root=* | is-enabled | preset | enable | disable | list-unit-files | cat) exec '${real}' "$@" ;;\n` +
        `\tis-active | is-failed) exit 3 ;;\n` +
        `\tesac\n` +
        `done\n` +
        `exit 0\n`
      );
    case 'dpkg-query':
      return (
        `#!/bin/sh\n` +
        `for a in "$@"; do last=$a; done\n` +
        `if [ -n "$NS_SASL2BIN" ] && [ "$last" = sasl2-bin ]; then\n` +
        `\t${record}\tprintf '%s' "$NS_SASL2BIN"\n\texit 0\nfi\n` +
        exec
      );
    case 'getent':
      return (
        `#!/bin/sh\n` +
        `if [ -n "$NS_NO_POSTFIX" ] && [ "$1" = passwd ] && [ "$2" = postfix ]; then\n` +
        `\t${record}\texit 2\nfi\n` +
        exec
      );
    default:
      return `#!/bin/sh\n${record}${exec}`;
  }
}

export class MaintHarness {
  private readonly wrapDir: string;
  private readonly nsScript: string;
  private readonly callsFile: string;
  private readonly rcDisabled: string;
  private readonly rcEnabled: string;
  private runs = 0;
  /** Whether this harness created /run/systemd (absent on some machines), to take it back. */
  private readonly createdRunSystemd: boolean;

  constructor(
    private readonly work: string,
    /** Run directory of the default scenario's Cyrus: private, so a Cyrus of this machine never counts. */
    readonly cyrusRunDir = path.join(work, 'cyrus-run'),
  ) {
    this.wrapDir = path.join(work, 'wrap');
    fs.mkdirSync(this.wrapDir);
    for (const name of RECORDED) {
      const real = sh('sh', ['-c', `command -v ${name}`]).stdout.trim();
      if (real === '') throw new Error(`${name} is not installed`);
      fs.writeFileSync(path.join(this.wrapDir, name), wrapper(name, real), { mode: 0o755 });
    }
    this.nsScript = path.join(work, 'ns.sh');
    fs.writeFileSync(this.nsScript, NS_SCRIPT);
    this.callsFile = path.join(work, 'calls');
    // Cyrus's rc links as update-rc.d leaves them: K01 when disabled, S01 when enabled.
    this.rcDisabled = path.join(work, 'rc-disabled');
    this.rcEnabled = path.join(work, 'rc-enabled');
    for (const [root, prefix] of [
      [this.rcDisabled, 'K01'],
      [this.rcEnabled, 'S01'],
    ] as const) {
      for (const n of [2, 3, 4, 5]) {
        const dir = path.join(root, `rc${n}.d`);
        fs.mkdirSync(dir, { recursive: true });
        for (const entry of fs.readdirSync(`/etc/rc${n}.d`)) {
          if (/^[SK]\d\dsaslauthd$/.test(entry)) continue;
          fs.symlinkSync(fs.readlinkSync(`/etc/rc${n}.d/${entry}`), path.join(dir, entry));
        }
        fs.symlinkSync('../init.d/saslauthd', path.join(dir, `${prefix}saslauthd`));
      }
    }
    this.createdRunSystemd = !fs.existsSync('/run/systemd');
    if (this.createdRunSystemd) fs.mkdirSync('/run/systemd');
  }

  /** /etc/default/saslauthd as sasl2-bin ships it, its run directory private to the test. */
  stockCyrusDefaults(extra = '', runDir = this.cyrusRunDir): string {
    return (
      '#\n# Settings for saslauthd daemon\n#\n' +
      'DESC="SASL Authentication Daemon"\nNAME="saslauthd"\nMECHANISMS="pam"\nMECH_OPTIONS=""\nTHREADS=5\n' +
      '# Other options (default: -c -m /var/run/saslauthd)\n' +
      '# Example for chroot Postfix users: "-c -m /var/spool/postfix/var/run/saslauthd"\n' +
      '# Example for non-chroot Postfix users: "-c -m /var/run/saslauthd"\n' +
      `OPTIONS="-c -m ${runDir}"\n` +
      extra
    );
  }

  /** Run a command (dpkg, apt-get, dpkg-trigger...) in the namespace described by the scenario. */
  run(cmd: string[], sc: Scenario = {}): MaintRun {
    const defaults = path.join(this.work, `cyrus-defaults-${++this.runs}`);
    fs.writeFileSync(defaults, sc.cyrusDefaults ?? this.stockCyrusDefaults());
    fs.writeFileSync(this.callsFile, '');
    const r = sh('unshare', ['--mount', '--propagation', 'private', 'sh', this.nsScript, ...cmd], {
      env: {
        ...process.env,
        DEBIAN_FRONTEND: 'noninteractive',
        NS_CYRUS_DEFAULTS: defaults,
        NS_RC: sc.cyrusRcEnabled === true ? this.rcEnabled : this.rcDisabled,
        NS_WRAP: this.wrapDir,
        NS_CALLS: this.callsFile,
        NS_SASL2BIN: sc.sasl2bin ?? '',
        NS_NO_POSTFIX: sc.noPostfixUser === true ? '1' : '',
      },
    });
    const calls = fs
      .readFileSync(this.callsFile, 'utf8')
      .split('\n')
      .filter((l) => l !== '');
    return { code: r.code, output: r.stdout + r.stderr, calls };
  }

  // dpkg rather than apt-get: apt runs dpkg with its own PATH (Dpkg::Path),
  // which would leave the wrappers out. The package's dependencies are
  // installed on this machine already, so apt would add nothing here.
  install(deb: string, sc: Scenario = {}): MaintRun {
    return this.run(['dpkg', '-i', deb], sc);
  }

  purge(pkg: string, sc: Scenario = {}): MaintRun {
    return this.run(['dpkg', '--purge', pkg], sc);
  }

  remove(pkg: string, sc: Scenario = {}): MaintRun {
    return this.run(['dpkg', '--remove', pkg], sc);
  }

  /** As an admin installs it, with apt-get (told to keep the wrappers in dpkg's PATH). */
  aptInstall(deb: string, sc: Scenario = {}): MaintRun {
    const dpkgPath = `DPkg::Path=${this.wrapDir}:/usr/sbin:/usr/bin:/sbin:/bin`;
    return this.run(['apt-get', '-o', dpkgPath, 'install', '-y', '-q', '--no-install-recommends', deb], sc);
  }

  /** What dpkg does for our interest in /usr/sbin/postfix when Postfix is installed, upgraded or reinstalled. */
  postfixTrigger(pkg: string, sc: Scenario = {}): MaintRun {
    return this.run(
      ['sh', '-c', 'dpkg-trigger --by-package=postfix --no-await /usr/sbin/postfix && exec dpkg --triggers-only "$0"', pkg],
      sc,
    );
  }

  cleanup(): void {
    if (this.createdRunSystemd) fs.rmSync('/run/systemd', { recursive: true, force: true });
  }
}

/** A real Cyrus saslauthd (sasl2-bin), detached as its init script starts it; its pid from its pid file. */
export function startCyrus(runDir: string, mech = 'pam'): number {
  fs.mkdirSync(runDir, { recursive: true });
  const r = sh('/usr/sbin/saslauthd', ['-a', mech, '-m', runDir, '-n', '1'], { timeout: 30_000 });
  if (r.code !== 0) throw new Error(`Cyrus saslauthd did not start: ${r.code} ${r.stderr}`);
  const pid = Number(fs.readFileSync(path.join(runDir, 'saslauthd.pid'), 'utf8').trim());
  if (!Number.isInteger(pid) || pid <= 0) throw new Error('no pid in Cyrus saslauthd.pid');
  return pid;
}

/** Running, not a zombie (a detached daemon's zombie waits for PID 1 to reap it). */
export function alive(pid: number): boolean {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    return !/^\d+ \(.*\) Z/.test(stat);
  } catch {
    return false;
  }
}

/** SIGTERM, then wait until the process is gone (its exit removes its files). */
export async function stopCyrus(pid: number): Promise<void> {
  try {
    process.kill(pid, 'SIGTERM');
  } catch {
    return;
  }
  const end = Date.now() + 30_000;
  while (alive(pid) && Date.now() < end) await new Promise((r) => setTimeout(r, 50));
  if (alive(pid)) process.kill(pid, 'SIGKILL');
}
