// `saslauthd-ts --check`: with the same flags and files the service uses,
// validate the command line, the /etc/default file and the mechanism's own
// configuration; print the effective settings; exit non-zero on any error,
// naming file, line and key. The systemd unit runs it as ExecStartPre, so a
// broken configuration stops the start with a readable message in the
// journal instead of a daemon that answers NO to everyone.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { BACKENDS, CYRUS_ONLY } from '../backends';
import { checkLdapConfig, DEFAULT_CONF_FILE as LDAP_DEFAULT_CONF } from '../backends/ldap/config';
import { describeTarget, parseRimapOption, targetWarnings } from '../backends/rimap/options';
import { workerCount } from '../server/cluster';
import { SOCKET_NAME } from '../server/server';
import { describeAddress } from '../metrics/address';
import { type ArgOrigin, defaultsToArgs, type DefaultsFile, findDefaultsFileArg, readDefaultsFile } from './defaults-file';
import { type DaemonOptions, parseArgs } from './options';
import { maskCredentials } from '../log/redact';
import { KeyFileError, readKeyFile } from '../state/key-file';
import { maskStateUri } from '../state/uri';
import { probeState } from '../state/probe';
import { type ConfIssue, formatIssue } from './saslauthd-conf';
import { memberText, parseRoutes } from './routes';
import { TAKES_OPTION } from '../backends/chain';
import { describeRoutes } from '../backends/router';

/** Where chrooted Postfix (Debian's default) lives; sockets must be inside. */
export const POSTFIX_CHROOT = '/var/spool/postfix';
export const COMMAND_LINE = 'command line';
export const CYRUS_INIT_SCRIPT = '/etc/init.d/saslauthd';

export interface CheckResult {
  issues: ConfIssue[];
  /** Label and value, in print order. */
  settings: Array<[string, string]>;
  options: DaemonOptions | undefined;
}

/** Test seams: where to look for system facts. */
export interface CheckEnv {
  postfixUser?: string;
  shadowFile?: string;
  pamDir?: string;
  postfixBinary?: string;
  /** Cyrus's SysV script, which reads our defaults file too. */
  cyrusInitScript?: string;
  /** CPUs the --workers cap counts. */
  cpus?: number;
}

type Issues = ConfIssue[];

const where = (o: ArgOrigin | undefined): { file: string; line?: number; key?: string } =>
  o === undefined ? { file: COMMAND_LINE } : { file: o.file, line: o.line, key: o.key };

function origin(origins: Map<string, ArgOrigin>, flag: string, argv: readonly string[]): ArgOrigin | undefined {
  // A flag on the command line overrides the file's.
  return argv.includes(flag) ? undefined : origins.get(flag);
}

function modeString(st: fs.Stats): string {
  return (st.mode & 0o7777).toString(8).padStart(4, '0');
}

function nameOf(db: string, id: number): string {
  try {
    const line = fs
      .readFileSync(db, 'utf8')
      .split('\n')
      .find((l) => l.split(':')[2] === String(id));
    return line?.split(':')[0] ?? String(id);
  } catch {
    return String(id);
  }
}

/** uid and all gids of a user, or undefined if there is no such user. */
function userIds(user: string): { uid: number; gids: number[] } | undefined {
  try {
    const uid = Number(execFileSync('id', ['-u', user], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim());
    const gids = execFileSync('id', ['-G', user], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] })
      .trim()
      .split(/\s+/)
      .map(Number);
    return { uid, gids };
  } catch {
    return undefined;
  }
}

function checkRunDir(opts: DaemonOptions, from: ArgOrigin | undefined, env: CheckEnv, issues: Issues): string {
  const dir = opts.runDir;
  const postfixInstalled = fs.existsSync(env.postfixBinary ?? '/usr/sbin/postfix');
  if (postfixInstalled && !dir.startsWith(`${POSTFIX_CHROOT}/`)) {
    issues.push({
      severity: 'warning',
      ...where(from),
      message:
        `run directory ${dir} is outside Postfix's chroot ${POSTFIX_CHROOT}: a chrooted smtpd (Debian's default) ` +
        `cannot reach it ("cannot connect to saslauthd server: No such file or directory"); ` +
        `use -m ${POSTFIX_CHROOT}/var/run/saslauthd`,
    });
  }
  let st: fs.Stats;
  try {
    st = fs.statSync(dir);
  } catch {
    return `${dir} (missing; created at start)`;
  }
  if (!st.isDirectory()) {
    issues.push({ severity: 'error', ...where(from), message: `run directory ${dir} exists but is not a directory` });
    return dir;
  }
  const owner = `${nameOf('/etc/passwd', st.uid)}:${nameOf('/etc/group', st.gid)} ${modeString(st)}`;
  if ((st.mode & 0o001) !== 0) {
    issues.push({
      severity: 'warning',
      file: dir,
      message:
        `mode ${modeString(st)} lets every local user reach the socket and try passwords; ` +
        `Debian uses root:sasl 0710 (dpkg-statoverride --update --add root sasl 710 ${dir})`,
    });
  }
  const postfixUser = env.postfixUser ?? 'postfix';
  const ids = postfixInstalled ? userIds(postfixUser) : undefined;
  if (ids !== undefined && ids.uid !== 0) {
    const canEnter =
      (ids.uid === st.uid && (st.mode & 0o100) !== 0) ||
      (ids.uid !== st.uid && ids.gids.includes(st.gid) && (st.mode & 0o010) !== 0) ||
      (ids.uid !== st.uid && !ids.gids.includes(st.gid) && (st.mode & 0o001) !== 0);
    if (!canEnter) {
      const group = nameOf('/etc/group', st.gid);
      issues.push({
        severity: 'warning',
        file: dir,
        message:
          `user ${postfixUser} cannot enter this directory (${owner}), so smtpd gets "cannot connect to saslauthd ` +
          `server: Permission denied"; run: adduser ${postfixUser} ${group}, then postfix reload`,
      });
    }
  }
  return `${dir} (${owner})`;
}

/** Can a user with these ids pass through (search) a directory, or write (connect to) a socket? */
function permits(st: fs.Stats, ids: { uid: number; gids: number[] }, bit: 'x' | 'w'): boolean {
  const [u, g, o] = bit === 'x' ? [0o100, 0o010, 0o001] : [0o200, 0o020, 0o002];
  if (ids.uid === st.uid) return (st.mode & u) !== 0;
  if (ids.gids.includes(st.gid)) return (st.mode & g) !== 0;
  return (st.mode & o) !== 0;
}

/**
 * --dovecot-socket: the path, where the daemon will (or did) put it, and
 * whether user postfix can reach it. The directory is never created by the
 * daemon (for Postfix, private/ is Postfix's own), so a missing one is an error.
 */
function checkDovecotSocket(opts: DaemonOptions, from: ArgOrigin | undefined, env: CheckEnv, issues: Issues): string {
  const p = opts.dovecotSocket;
  if (p === undefined) return 'off (--dovecot-socket)';
  const dir = path.dirname(p);
  const postfixInstalled = fs.existsSync(env.postfixBinary ?? '/usr/sbin/postfix');
  const postfixUser = env.postfixUser ?? 'postfix';
  const inChroot = p.startsWith(`${POSTFIX_CHROOT}/`);
  if (postfixInstalled && !inChroot) {
    issues.push({
      severity: 'warning',
      ...where(from),
      message:
        `--dovecot-socket ${p} is outside Postfix's chroot ${POSTFIX_CHROOT}: a chrooted smtpd (Debian's default) cannot reach it; ` +
        `use --dovecot-socket ${POSTFIX_CHROOT}/private/saslauthd-ts with smtpd_sasl_path = private/saslauthd-ts`,
    });
  }
  let dst: fs.Stats;
  try {
    dst = fs.statSync(dir);
  } catch {
    issues.push({
      severity: 'error',
      ...where(from),
      message:
        `--dovecot-socket ${p}: directory ${dir} does not exist, and saslauthd-ts never creates it` +
        (dir === `${POSTFIX_CHROOT}/private` ? ' (Postfix does, when it starts: start Postfix first)' : ''),
    });
    return `${p} (directory missing)`;
  }
  if (!dst.isDirectory()) {
    issues.push({ severity: 'error', ...where(from), message: `--dovecot-socket ${p}: ${dir} is not a directory` });
    return p;
  }
  let sock: fs.Stats | undefined;
  try {
    sock = fs.lstatSync(p);
  } catch {
    sock = undefined;
  }
  if (sock !== undefined && !sock.isSocket()) {
    issues.push({
      severity: 'error',
      ...where(from),
      message: `--dovecot-socket ${p}: exists and is not a socket; remove it or choose another path`,
    });
    return p;
  }
  const ids = userIds(postfixUser);
  const chrootNote = inChroot ? `; Postfix: smtpd_sasl_path = ${path.relative(POSTFIX_CHROOT, p)}` : '';
  if (ids === undefined) {
    issues.push({
      severity: 'warning',
      ...where(from),
      message: `--dovecot-socket ${p}: there is no user ${postfixUser}, so the socket will be root:root 0660 and only root can use it`,
    });
    return `${p} (root:root 0660 at start${chrootNote})`;
  }
  // Every directory on the way must let postfix through.
  const blocked: string[] = [];
  for (let d = dir; ; d = path.dirname(d)) {
    try {
      const st = fs.statSync(d);
      if (ids.uid !== 0 && !permits(st, ids, 'x'))
        blocked.push(`${d} (${nameOf('/etc/passwd', st.uid)}:${nameOf('/etc/group', st.gid)} ${modeString(st)})`);
    } catch {
      // reported above for the directory itself
    }
    if (d === path.dirname(d)) break;
  }
  if (blocked.length > 0) {
    issues.push({
      severity: 'warning',
      ...where(from),
      message: `--dovecot-socket ${p}: user ${postfixUser} cannot reach it: ${blocked.reverse().join(', ')} does not let it through`,
    });
  }
  let state: string;
  if (sock === undefined) {
    state = `${postfixUser}:${nameOf('/etc/group', ids.gids[0] ?? 0)} 0660 at start`;
  } else {
    state = `now ${nameOf('/etc/passwd', sock.uid)}:${nameOf('/etc/group', sock.gid)} ${modeString(sock)}`;
    if (ids.uid !== 0 && !permits(sock, ids, 'w')) {
      issues.push({
        severity: 'warning',
        file: p,
        message: `user ${postfixUser} cannot connect to this socket (${state.slice(4)}); restart saslauthd-ts, which makes it ${postfixUser}:${postfixUser} 0660`,
      });
    }
  }
  const reach =
    blocked.length > 0 || (sock !== undefined && ids.uid !== 0 && !permits(sock, ids, 'w')) ? 'NOT reachable' : 'reachable';
  return `${p} (${state}; ${reach} by user ${postfixUser}${chrootNote})`;
}

/** --workers as the daemon applies it: never more processes than CPUs. */
function checkWorkers(opts: DaemonOptions, from: ArgOrigin | undefined, env: CheckEnv, issues: Issues): string {
  const effective = workerCount(opts.workers, env.cpus);
  if (effective === opts.workers) return String(effective);
  issues.push({
    severity: 'warning',
    ...where(from),
    message: `--workers ${opts.workers}: this machine has ${effective} CPUs, so ${effective} worker processes run`,
  });
  return `${effective} (--workers ${opts.workers}, capped at the CPU count)`;
}

/** libpam turns a requested fail delay into 0.5 to 1.5 times it. */
const PAM_DELAY_CEILING = 1.5;

interface FailDelay {
  file: string;
  line: number;
  delayUs: number;
}

/** The longest `pam_faildelay.so delay=` in the files of dir (includes are not followed). */
function longestFailDelay(dir: string): FailDelay | undefined {
  let names: string[];
  try {
    names = fs.readdirSync(dir).sort();
  } catch {
    return undefined;
  }
  let longest: FailDelay | undefined;
  for (const name of names) {
    const file = path.join(dir, name);
    let text: string;
    try {
      if (!fs.statSync(file).isFile()) continue;
      text = fs.readFileSync(file, 'utf8');
    } catch {
      continue;
    }
    text.split('\n').forEach((raw, i) => {
      const m = /\bpam_faildelay\.so\b.*\bdelay=(\d+)/.exec(raw.replace(/#.*/, ''));
      const delayUs = Number(m?.[1] ?? 0);
      if (delayUs > (longest?.delayUs ?? 0)) longest = { file, line: i + 1, delayUs };
    });
  }
  return longest;
}

function checkMechanism(
  opts: DaemonOptions,
  mechFrom: ArgOrigin | undefined,
  optFrom: ArgOrigin | undefined,
  env: CheckEnv,
  issues: Issues,
  settings: Array<[string, string]>,
): void {
  const mech = opts.mech;
  if (BACKENDS[mech] === undefined) {
    const available = Object.keys(BACKENDS).join(', ');
    issues.push({
      severity: 'error',
      ...where(mechFrom),
      message: CYRUS_ONLY.includes(mech)
        ? `${mech} is a Cyrus mechanism that saslauthd-ts does not implement (available: ${available})`
        : `unknown authentication mechanism '${mech}' (available: ${available})`,
    });
    return;
  }
  switch (mech) {
    case 'ldap': {
      const file = opts.mechOption ?? LDAP_DEFAULT_CONF;
      settings.push(['ldap config file', file]);
      const r = checkLdapConfig(file);
      // checkLdapConfig formats `file:line: key: message` itself.
      for (const e of r.errors) issues.push({ severity: 'error', file: '', message: e });
      for (const w of r.warnings) issues.push({ severity: 'warning', file: '', message: w });
      for (const [k, v] of Object.entries(r.effective)) settings.push([`  ${k}`, v]);
      return;
    }
    case 'rimap': {
      try {
        for (const t of parseRimapOption(opts.mechOption)) {
          settings.push(['imap server', describeTarget(t)]);
          for (const w of targetWarnings(t)) issues.push({ severity: 'warning', ...where(optFrom), message: w });
        }
      } catch (err) {
        const o = optFrom ?? (opts.mechOption === undefined ? mechFrom : undefined);
        issues.push({ severity: 'error', ...where(o), message: `rimap: ${(err as Error).message}` });
      }
      return;
    }
    case 'pam': {
      const dir = env.pamDir ?? '/etc/pam.d';
      if (opts.mechOption !== undefined) {
        issues.push({
          severity: 'warning',
          ...where(optFrom),
          message: `pam ignores the mechanism option '${opts.mechOption}'`,
        });
      }
      if (!fs.existsSync(path.join(dir, 'other'))) {
        issues.push({
          severity: 'error',
          file: path.join(dir, 'other'),
          message: 'missing: PAM has no fallback service',
        });
      }
      // Since a denial during its fail delay is answered at the deadline, a
      // short --auth-timeout no longer turns it into an outage, but still
      // cuts short the delay that slows password guessing.
      const delay = longestFailDelay(dir);
      const longestMs = delay === undefined ? 0 : (delay.delayUs * PAM_DELAY_CEILING) / 1000;
      if (delay !== undefined && opts.authTimeoutMs < longestMs) {
        issues.push({
          severity: 'warning',
          file: delay.file,
          line: delay.line,
          message:
            `pam_faildelay delay=${delay.delayUs} holds a wrong password's answer up to ${longestMs / 1000} s (libpam varies the delay from 0.5 to 1.5 times), ` +
            `longer than --auth-timeout ${opts.authTimeoutMs / 1000} s: such answers are then given when --auth-timeout expires, ` +
            `cutting the delay short; set --auth-timeout ${Math.ceil(longestMs / 1000)} or more`,
        });
      }
      const svc = (s: string): string =>
        fs.existsSync(path.join(dir, s)) ? path.join(dir, s) : `${path.join(dir, 'other')} (no ${s} file)`;
      settings.push(['pam service smtp', svc('smtp')]);
      settings.push(['pam service imap', svc('imap')]);
      return;
    }
    case 'shadow': {
      const shadow = env.shadowFile ?? '/etc/shadow';
      try {
        fs.accessSync(shadow, fs.constants.R_OK);
      } catch {
        issues.push({
          severity: 'warning',
          file: shadow,
          message: 'not readable by this user; the shadow mechanism must run as root',
        });
      }
      if (opts.mechOption !== undefined) {
        issues.push({
          severity: 'warning',
          ...where(optFrom),
          message: `shadow ignores the mechanism option '${opts.mechOption}'`,
        });
      }
      return;
    }
    default:
      return;
  }
}

/**
 * --routes: the file's syntax (line:column), each mechanism instance's own
 * configuration (once per MECH:OPTION), and the effective table in the
 * order matching uses.
 */
function checkRoutes(opts: DaemonOptions, env: CheckEnv, issues: Issues, settings: Array<[string, string]>): void {
  const file = opts.routesFile ?? '';
  settings.push(['routes (--routes)', file]);
  let text: string;
  try {
    text = fs.readFileSync(file, 'latin1');
  } catch (err) {
    issues.push({ severity: 'error', file, message: `cannot read: ${(err as NodeJS.ErrnoException).code ?? String(err)}` });
    return;
  }
  const parsed = parseRoutes(text, Object.keys(BACKENDS));
  for (const i of parsed.issues) {
    issues.push({ severity: i.severity, file, line: i.line, column: i.column, message: i.message });
  }
  const seen = new Set<string>();
  for (const r of parsed.routes) {
    for (const m of r.chain) {
      const id = memberText(m);
      if (seen.has(id)) continue;
      seen.add(id);
      if (m.mech === 'ldap') {
        const conf = m.option ?? LDAP_DEFAULT_CONF;
        try {
          fs.accessSync(conf, fs.constants.R_OK);
        } catch (err) {
          issues.push({
            severity: 'error',
            file,
            line: r.line,
            column: columnOf(text, r.line, id),
            message: `${id}: cannot read ${conf}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`,
          });
          continue;
        }
      }
      const sub: Array<[string, string]> = [];
      checkMechanism({ ...opts, mech: m.mech, mechOption: m.option }, undefined, undefined, env, issues, sub);
      for (const [k, v] of sub) settings.push([`${id}: ${k.trim()}`, v]);
    }
  }
  const joinText = (j: boolean | undefined): string => ((j ?? opts.concatRealm) ? 'login@realm' : 'login');
  for (const line of describeRoutes(
    parsed.routes.map((r) => ({
      name: r.name,
      join: r.join,
      chain: r.chain.map((m) => maskCredentials(memberText(m))).join(' '),
    })),
  )) {
    const name = line.split(' ')[0] ?? '';
    const route = parsed.routes.find((r) => r.name === name);
    settings.push([`route ${name}`, `${line.slice(name.length + 1)} (mechanisms see ${joinText(route?.join)})`]);
  }
  if (!parsed.routes.some((r) => r.pattern.kind === 'any')) {
    settings.push(['route (other realms)', 'none: answered NO, logged with the realm']);
  }
}

/** The column of `token` on line `line` of text (1-based), or 1. */
function columnOf(text: string, line: number, token: string): number {
  const at = (text.split('\n')[line - 1] ?? '').indexOf(token);
  return at < 0 ? 1 : at + 1;
}

/**
 * START means nothing to saslauthd-ts, but Cyrus's init script (sasl2-bin)
 * reads every /etc/default/saslauthd* file, ours too, as one of its
 * instances, sourcing them one after the other in one shell: START=yes here,
 * or no START here after START=yes in /etc/default/saslauthd, makes it start
 * a Cyrus saslauthd with these settings on our socket.
 */
function checkStart(df: DefaultsFile, env: CheckEnv, issues: Issues): void {
  const start = df.vars.get('START');
  const fix = 'set START=no (saslauthd-ts ignores START: use systemctl enable|disable saslauthd-ts)';
  const initScript = env.cyrusInitScript ?? CYRUS_INIT_SCRIPT;
  if (start !== undefined && start.value === 'yes') {
    issues.push({
      severity: 'warning',
      file: df.file,
      line: start.line,
      key: 'START',
      message:
        `'yes' makes Cyrus's saslauthd init script, which reads every /etc/default/saslauthd* file, start a Cyrus ` +
        `saslauthd with these settings on this socket; ${fix}`,
    });
  } else if (start === undefined && fs.existsSync(initScript)) {
    issues.push({
      severity: 'warning',
      file: df.file,
      key: 'START',
      message:
        `not set: Cyrus's saslauthd init script (${initScript}) reads this file too, and with START=yes in ` +
        `/etc/default/saslauthd it would start a Cyrus saslauthd with these settings on this socket; ${fix}`,
    });
  }
}

/** Validate everything the daemon would use with these arguments. */
export function checkConfiguration(argv: string[], env: CheckEnv = {}): CheckResult {
  const issues: Issues = [];
  const settings: Array<[string, string]> = [];
  const cmdline = argv.filter((a) => a !== '--check');

  let fileArgs: string[] = [];
  let origins = new Map<string, ArgOrigin>();
  const file = findDefaultsFileArg(cmdline);
  if (file !== undefined) {
    settings.push(['defaults file', file]);
    const df = readDefaultsFile(file);
    issues.push(...df.issues);
    checkStart(df, env, issues);
    const converted = defaultsToArgs(df);
    issues.push(...converted.issues);
    fileArgs = converted.args;
    origins = converted.origins;
  }

  const parsed = parseArgs([...fileArgs, ...cmdline]);
  if (parsed.kind === 'exit') {
    const message = (parsed.stderr ?? parsed.stdout ?? '').trim().replace(/^saslauthd-ts: /, '');
    // Without a readable MECHANISMS there is no -a: already reported against the file.
    const duplicate =
      /no authentication mechanism/.test(message) && issues.some((i) => i.file === file && i.severity === 'error');
    if (parsed.code === 0) {
      issues.push({ severity: 'error', file: COMMAND_LINE, message: '-h/-v print and exit; remove them to check' });
    } else if (!duplicate) {
      issues.push({ severity: 'error', file: COMMAND_LINE, message: message.split('\n')[0] ?? message });
    }
    return { issues, settings, options: undefined };
  }
  const opts = parsed.options;
  const mechFrom = origin(origins, '-a', cmdline);
  const optFrom = origin(origins, '-O', cmdline);
  const runFrom = origin(origins, '-m', cmdline);

  if (opts.routesFile !== undefined) {
    checkRoutes(opts, env, issues, settings);
  } else if (opts.mech.includes(',')) {
    settings.push(['mechanism chain (-a)', `${opts.mech} (the next asked only when a login is unknown to the one before)`]);
    settings.push(['mechanism option (-O)', opts.mechOption ?? '(none)']);
    for (const mech of opts.mech.split(',')) {
      const mechOption = TAKES_OPTION.has(mech) ? opts.mechOption : undefined;
      checkMechanism({ ...opts, mech, mechOption }, mechFrom, optFrom, env, issues, settings);
    }
  } else {
    settings.push(['mechanism (-a)', opts.mech]);
    settings.push(['mechanism option (-O)', opts.mechOption ?? '(none)']);
    checkMechanism(opts, mechFrom, optFrom, env, issues, settings);
  }
  settings.push(['run directory (-m)', checkRunDir(opts, runFrom, env, issues)]);
  settings.push(['socket', path.join(opts.runDir, SOCKET_NAME)]);
  settings.push([
    'dovecot socket (--dovecot-socket)',
    checkDovecotSocket(opts, origin(origins, '--dovecot-socket', cmdline), env, issues),
  ]);
  settings.push(['Cyrus processes (-n)', `${opts.threads} (accepted for compatibility; no effect)`]);
  const workersFrom = origin(origins, '--workers', cmdline);
  settings.push(['worker processes (--workers)', checkWorkers(opts, workersFrom, env, issues)]);
  settings.push([
    'credential cache (-c)',
    opts.cache
      ? `on, entries live ${opts.cacheTimeoutSec} s, size ${opts.cacheSizeKb === undefined ? 'default' : `${opts.cacheSizeKb} KiB`}, mode ${opts.cacheMode}`
      : 'off',
  ]);
  settings.push(['realm join (-r)', opts.concatRealm ? 'on: login@realm when a realm is sent' : 'off']);
  settings.push(['foreground', opts.foreground ? `yes${opts.debug ? ' (-d, debug)' : ''}` : 'no: detaches']);
  settings.push(['verbose (-V)', opts.verbose ? 'yes' : 'no']);
  settings.push([
    'timeouts',
    `read ${opts.readTimeoutMs / 1000} s, auth ${opts.authTimeoutMs / 1000} s, drain ${opts.drainTimeoutMs / 1000} s`,
  ]);
  settings.push(['connections (--max-connections)', String(opts.maxConnections)]);
  settings.push(['PAM threads (--pam-threads)', String(opts.pamThreads)]);
  for (const row of throttleSettings(opts)) settings.push(row);
  settings.push(['metrics (--metrics)', checkMetrics(opts, origin(origins, '--metrics', cmdline), issues)]);
  for (const row of stateSettings(opts, origins, cmdline, issues)) settings.push(row);
  settings.push([
    'failure lines',
    `${opts.failureLinesPerLogin} per login a minute, ${opts.failureLinesPerSecond} a second in all; the rest summarised each minute`,
  ]);
  if (opts.debug && origins.has('-d') && !cmdline.includes('-d')) {
    issues.push({
      severity: 'warning',
      ...where(origins.get('-d')),
      message: '-d turns on debug logging (user names and reasons of every attempt); remove it for normal use',
    });
  }
  settings.push([
    'effective flags',
    [...fileArgs, ...cmdline.filter((_a, i) => !isDefaultsFileArg(cmdline, i))].map(maskArg).join(' '),
  ]);
  return { issues, settings, options: opts };
}

/** Where the metrics endpoint would listen, and what to know about it. */
function checkMetrics(opts: DaemonOptions, from: ArgOrigin | undefined, issues: Issues): string {
  const a = opts.metrics;
  if (a === undefined) return 'off';
  const shown = describeAddress(a);
  if (a.kind === 'tcp') {
    if (!a.loopback) {
      issues.push({
        severity: 'warning',
        ...where(from),
        message:
          `--metrics ${shown}: not a loopback address, so anyone who can reach this machine on port ${a.port} reads ` +
          `the metrics (request counts, LDAP/IMAP server names); firewall it, or use 127.0.0.1:${a.port}`,
      });
    }
    return `http://${shown}/metrics`;
  }
  const dir = path.dirname(a.path);
  try {
    const st = fs.statSync(dir);
    if (!st.isDirectory()) throw new Error('not a directory');
    return `${a.path} (HTTP at /metrics; mode 0660, group ${nameOf('/etc/group', st.gid)} from ${dir})`;
  } catch {
    issues.push({
      severity: 'error',
      ...where(from),
      message: `--metrics ${shown}: the directory ${dir} does not exist; create it (e.g. install -d -m 0750 -g prometheus ${dir})`,
    });
    return a.path;
  }
}

/** The throttle's settings as --check prints them: every threshold, window, cap and TTL. */
export function throttleSettings(opts: DaemonOptions): Array<[string, string]> {
  const t = opts.throttle;
  if (t === undefined) return [['throttle (--throttle)', 'off: no priority, delays, refusals or shedding (Cyrus behaviour)']];
  const s = (ms: number): string => `${ms / 1000} s`;
  return [
    ['throttle (--throttle)', 'on'],
    ['  window', `${s(t.windowMs)} (--throttle-window)`],
    ['  free failures', `${t.freeFailures} (--throttle-free)`],
    ['  delays', `${t.delayMs} ms doubling to ${t.maxDelayMs} ms (--throttle-delay, --throttle-max-delay)`],
    ['  refused past', `${t.refuseAfter} failures, for ${s(t.cooloffMs)} (--throttle-refuse, --throttle-cooloff)`],
    ['  tracked at most', `${t.trackedMax} logins and addresses (--throttle-tracked)`],
    [
      '  known-good',
      `${t.knownGoodMax} at most, for ${s(t.knownGoodTtlMs)} after their last success (--known-good-max, --known-good-ttl)`,
    ],
    [
      '  shedding',
      t.shedAfterMs === 0
        ? 'off (--shed-after 0)'
        : `after ${t.shedAfterMs} ms in a queue, refused after ${t.shedDelayMs} ms (--shed-after, --shed-delay)`,
    ],
  ];
}

/** A --state URI's password is never printed. */
function maskArg(a: string): string {
  return /^[a-z]+:\/\//i.test(a) ? maskStateUri(a) : a.startsWith('--state=') ? `--state=${maskStateUri(a.slice(8))}` : a;
}

/** --state and --state-key as --check prints them; the key file is checked as the daemon will. */
function stateSettings(
  opts: DaemonOptions,
  origins: Map<string, ArgOrigin>,
  argv: readonly string[],
  issues: Issues,
): Array<[string, string]> {
  const rows: Array<[string, string]> = [];
  if (opts.stateKeyFile !== undefined) {
    try {
      const key = readKeyFile(opts.stateKeyFile);
      rows.push(['fleet key (--state-key)', `${opts.stateKeyFile} (${key.length} bytes, root-only)`]);
      key.fill(0);
    } catch (err) {
      if (!(err instanceof KeyFileError)) throw err;
      issues.push({
        severity: 'error',
        file: opts.stateKeyFile,
        message: err.message.replace(`--state-key ${opts.stateKeyFile}: `, ''),
      });
      rows.push(['fleet key (--state-key)', `${opts.stateKeyFile} (unusable)`]);
    }
  }
  const st = opts.state;
  if (st === undefined) {
    rows.push(['shared state (--state)', "off: this host's memory only"]);
    return rows;
  }
  rows.push(['shared state (--state)', st.target.display]);
  rows.push(['  prefix', `${st.prefix} (--state-prefix)`]);
  rows.push(['  deadline', `${st.timeoutMs} ms per operation, then local state decides (--state-timeout)`]);
  if (st.target.kind === 'tls') {
    rows.push([
      '  TLS',
      `CA ${st.tls.caFile ?? "the system's"}${st.tls.certFile ? `, client certificate ${st.tls.certFile}` : ''}`,
    ]);
  }
  rows.push([
    '  shared',
    `throttle counts, penalties and known-good marks${st.shareCache ? '; credential cache entries (--state-cache)' : ''}`,
  ]);
  if (st.target.password !== undefined) {
    const from = origins.get('--state') ?? [...origins.entries()].find(([k]) => k.startsWith('--state='))?.[1];
    if (from === undefined || argv.includes('--state') || argv.some((a) => a.startsWith('--state='))) {
      issues.push({
        severity: 'warning',
        file: COMMAND_LINE,
        message:
          '--state carries a password, which every local user can read in ps; put --state in the defaults file (mode 0600) instead',
      });
    } else {
      try {
        const mode = fs.statSync(from.file).mode;
        if ((mode & 0o044) !== 0) {
          issues.push({
            severity: 'warning',
            ...where(from),
            message: `--state carries a password and the file is readable by others (mode ${(mode & 0o777).toString(8).padStart(4, '0')}); run: chmod 0600 ${from.file}`,
          });
        }
      } catch {
        // reported elsewhere
      }
    }
  }
  return rows;
}

function isDefaultsFileArg(argv: readonly string[], i: number): boolean {
  const a = argv[i] ?? '';
  return a === '--defaults-file' || a.startsWith('--defaults-file=') || argv[i - 1] === '--defaults-file';
}

function formatIssueLine(i: ConfIssue): string {
  // Issues that come preformatted (from the ldap checker) have no file.
  return i.file === '' ? i.message : formatIssue(i);
}

/**
 * --check with the connections it implies: with --state, connect to the
 * store and report its version and latency (or why it cannot be used).
 */
export async function runCheckWithState(
  argv: string[],
  out: { write(s: string): unknown } = process.stdout,
  err: { write(s: string): unknown } = process.stderr,
  env: CheckEnv = {},
): Promise<number> {
  const r = checkConfiguration(argv, env);
  const st = r.options?.state;
  if (st !== undefined) {
    const p = await probeState(st);
    // Printed under the other --state rows.
    const at = r.settings.findIndex(([k]) => k === '  shared') + 1;
    const rows: Array<[string, string]> = [];
    if (p.ok) {
      rows.push(['  server', `${p.server} ${p.version}, ${p.mode}`]);
      rows.push([
        '  latency',
        `${p.latencyMs.map((ms) => ms.toFixed(2)).join(' ')} ms (PING round trips; deadline ${st.timeoutMs} ms)`,
      ]);
      if (p.warning !== undefined) r.issues.push({ severity: 'warning', file: COMMAND_LINE, message: p.warning });
    } else {
      rows.push(['  server', 'unusable (see the error below)']);
      r.issues.push({ severity: 'error', file: COMMAND_LINE, message: `--state ${st.target.display}: ${p.error}` });
    }
    r.settings.splice(at > 0 ? at : r.settings.length, 0, ...rows);
  }
  return printCheck(r, out, err);
}

/** Run --check: settings on stdout, problems on stderr; exit code 0 or 1. */
export function runCheck(
  argv: string[],
  out: { write(s: string): unknown } = process.stdout,
  err: { write(s: string): unknown } = process.stderr,
  env: CheckEnv = {},
): number {
  return printCheck(checkConfiguration(argv, env), out, err);
}

function printCheck(r: CheckResult, out: { write(s: string): unknown }, err: { write(s: string): unknown }): number {
  const width = Math.max(0, ...r.settings.map(([k]) => k.length));
  // -O values, the flags and the messages quoting them can hold a URI with a password.
  for (const [k, v] of r.settings) out.write(`${k.padEnd(width)}  ${maskCredentials(v)}\n`);
  // In file order, so the first line to fix comes first.
  const sorted = [...r.issues].sort((a, b) => (a.file === b.file ? (a.line ?? 0) - (b.line ?? 0) : 0));
  const errors = sorted.filter((i) => i.severity === 'error');
  const warnings = sorted.filter((i) => i.severity === 'warning');
  for (const w of warnings) err.write(`saslauthd-ts: warning: ${maskCredentials(formatIssueLine(w))}\n`);
  for (const e of errors) err.write(`saslauthd-ts: error: ${maskCredentials(formatIssueLine(e))}\n`);
  if (errors.length > 0) {
    err.write(`saslauthd-ts: configuration check failed: ${errors.length} error(s), ${warnings.length} warning(s)\n`);
    return 1;
  }
  out.write(`configuration OK${warnings.length > 0 ? ` (${warnings.length} warning(s))` : ''}\n`);
  return 0;
}
