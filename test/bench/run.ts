// npm run bench: saslauthd-ts against Cyrus saslauthd (when /usr/sbin/saslauthd
// is installed), same machine, same run, identical load, alternating. The
// figures that matter are the ratios: these machines are shared and noisy.
//
// Load comes from build/Release/saslauthd-loadgen (C, threads, one request per
// connection as real clients do). BENCH_SECONDS sets the length of each run
// (default 3; the yescrypt rows run at least 10), BENCH_REPEAT the runs per daemon and row (default 3, median
// shown); BENCH_ROWS=crypt,shadow,cache,pam,idle,attack,state,metrics,dovecot,chain selects row groups. The state rows run
// saslauthd-ts against itself with --state (a private redis-server on 127.0.0.1) and without; the dovecot
// rows run the same daemon through its two doors: the Dovecot socket (--dovecot-socket), one persistent
// connection per client as Postfix keeps one per smtpd process, against mux, one connection per request. The
// chain rows run -a shadow,ldap against a private slapd for a user only in LDAP (shadow misses, ldap answers)
// beside its two parts alone: the chain should cost at most their sum, plus 5 %.
import assert from 'node:assert/strict';
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { native } from '../../src/native/binding';
import { BACKENDS } from '../../src/backends';
import { DAEMON_BIN, ROOT, waitForSocket } from '../helpers/daemon';
import { sendRequest } from '../../src/client/request';
import { createUser, removeAllUsers } from '../helpers/users';
import { childPids, groupPids } from '../helpers/procs';
import { makeKeyFile, startRedis } from '../helpers/redis';
import { scrape } from '../helpers/metrics';
import { PEOPLE, startSlapd, USERS } from '../helpers/slapd';

const SECONDS = Number(process.env.BENCH_SECONDS ?? 3);
/** Runs per daemon and row, alternating; the row shows the median run (by req/s). */
const REPEAT = Math.max(1, Number(process.env.BENCH_REPEAT ?? 3));
const GROUPS = new Set((process.env.BENCH_ROWS ?? 'crypt,shadow,cache,pam,idle,attack,state,metrics,dovecot,chain').split(','));
const CYRUS = '/usr/sbin/saslauthd';
const LOADGEN = path.join(ROOT, 'build', 'Release', 'saslauthd-loadgen');
const haveCyrus = fs.existsSync(CYRUS);

interface Load {
  requests: number;
  ok: number;
  no: number;
  errors: number;
  rps: number;
  p50_ms: number;
  p99_ms: number;
  max_ms: number;
  idle_open: number;
  wrong_done: number;
}

interface Measured extends Load {
  rssMb: number;
  /** The daemon's CPU time (all its processes and threads) per request, in microseconds. */
  cpuUs: number;
}

interface Daemon {
  socket: string;
  /** --metrics socket, when started with one. */
  metrics?: string;
  /** --dovecot-socket, when started with it. */
  dovecotSocket?: string;
  pids(): number[];
  stop(): Promise<void>;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

function procStatus(pid: number, key: string): number {
  try {
    const m = new RegExp(`^${key}:\\s+(\\d+) kB`, 'm').exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) : 0;
  } catch {
    return 0;
  }
}

const rssMb = (pids: number[], key = 'VmRSS'): number => pids.reduce((a, p) => a + procStatus(p, key), 0) / 1024;

const TICK_US = 1e6 / Number(process.env.BENCH_CLK_TCK ?? 100);

/** CPU time (user + system, all threads, and reaped children) of these processes, in microseconds. */
function cpuUs(pids: number[]): number {
  let ticks = 0;
  for (const pid of pids) {
    try {
      const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
      const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      // utime, stime, cutime, cstime: fields 14-17 of stat(5), 11-14 after "pid (comm) ".
      ticks += Number(f[11]) + Number(f[12]) + Number(f[13]) + Number(f[14]);
    } catch {
      // gone
    }
  }
  return ticks * TICK_US;
}

async function startOurs(args: string[], withMetrics = false, withDovecot = false): Promise<Daemon> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'bench-ts-'));
  const log = fs.openSync(path.join(dir, 'daemon.log'), 'w');
  const metrics = withMetrics ? path.join(dir, 'metrics.sock') : undefined;
  const dovecotSocket = withDovecot ? path.join(dir, 'dovecot') : undefined;
  const dovecot = dovecotSocket === undefined ? [] : ['--dovecot-socket', dovecotSocket];
  const child: ChildProcess = spawn(
    process.execPath,
    [DAEMON_BIN, '-f', '-m', dir, ...dovecot, ...args, ...(metrics ? ['--metrics', metrics] : [])],
    {
      stdio: ['ignore', log, log],
    },
  );
  await waitForSocket(path.join(dir, 'mux'), 10_000, child);
  if (dovecotSocket !== undefined) await waitForSocket(dovecotSocket, 10_000, child);
  // With worker processes the socket answers as soon as the first listens;
  // wait for the "listening" line the primary logs once all of them do.
  for (let i = 0; i < 100 && !/listening on socket/.test(fs.readFileSync(path.join(dir, 'daemon.log'), 'utf8')); i++)
    await sleep(50);
  return {
    socket: path.join(dir, 'mux'),
    ...(metrics ? { metrics } : {}),
    ...(dovecotSocket !== undefined ? { dovecotSocket } : {}),
    pids: () => (child.pid ? [child.pid, ...childPids(child.pid)] : []),
    async stop() {
      child.kill('SIGTERM');
      await new Promise((r) => child.once('exit', r));
      fs.closeSync(log);
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}

async function startCyrus(args: string[]): Promise<Daemon> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'bench-cyrus-'));
  await new Promise<void>((resolve, reject) =>
    execFile(CYRUS, ['-m', dir, '-n', '5', ...args], (err) =>
      err ? reject(new Error(`Cyrus did not start: ${err.message}`)) : resolve(),
    ),
  );
  await waitForSocket(path.join(dir, 'mux'), 10_000);
  const pid = Number(fs.readFileSync(path.join(dir, 'saslauthd.pid'), 'utf8').trim());
  return {
    socket: path.join(dir, 'mux'),
    pids: () => groupPids(pid),
    async stop() {
      process.kill(pid, 'SIGTERM');
      for (let i = 0; i < 100 && groupPids(pid).length > 0; i++) await sleep(50);
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}

function loadgen(socket: string, args: string[], seconds: number): Promise<Load> {
  return new Promise((resolve, reject) => {
    execFile(LOADGEN, ['-s', socket, '-d', String(seconds), ...args], { timeout: (seconds + 60) * 1000 }, (err, stdout) => {
      if (err) reject(new Error(`loadgen failed: ${err.message}`));
      else resolve(JSON.parse(stdout) as Load);
    });
  });
}

async function measure(
  start: () => Promise<Daemon>,
  args: string[],
  seconds: number,
  door: 'mux' | 'dovecot' = 'mux',
): Promise<Measured> {
  const d = await start();
  try {
    await sleep(200);
    const before = cpuUs(d.pids());
    const load =
      door === 'dovecot'
        ? await loadgen(d.dovecotSocket ?? '', ['-P', 'dovecot', ...args], seconds)
        : await loadgen(d.socket, args, seconds);
    const used = cpuUs(d.pids()) - before;
    return { ...load, rssMb: rssMb(d.pids(), 'VmHWM'), cpuUs: load.requests > 0 ? used / load.requests : 0 };
  } finally {
    await d.stop();
  }
}

interface Row {
  name: string;
  ours: Measured;
  cyrus?: Measured;
  /** Unloaded reference for the head-of-line rows (ours / cyrus). */
  note?: string;
}

const rows: Row[] = [];
const fmt = (n: number, d = 0): string => n.toFixed(d);

function printRow(r: Row): void {
  const cell = (m?: Measured): string =>
    m
      ? `${fmt(m.rps).padStart(7)} ${fmt(m.p50_ms, 2).padStart(7)} ${fmt(m.p99_ms, 2).padStart(8)} ${fmt(m.ok).padStart(6)}/${fmt(m.no)}/${fmt(m.errors)} ${fmt(m.rssMb).padStart(4)}MB ${fmt(m.cpuUs).padStart(5)}us`
      : '        (no Cyrus)                               ';
  const ratio = r.cyrus && r.cyrus.rps > 0 ? `${(r.ours.rps / r.cyrus.rps).toFixed(2)}x` : r.cyrus ? 'inf' : '-';
  console.log(`${r.name.padEnd(34)} | ${cell(r.ours)} | ${cell(r.cyrus)} | ${ratio.padStart(6)} ${r.note ?? ''}`);
}

function median(runs: Measured[]): Measured {
  const sorted = [...runs].sort((a, b) => a.rps - b.rps);
  const mid = sorted[Math.floor(sorted.length / 2)]!;
  // Peak RSS is a maximum, not a typical value.
  return { ...mid, rssMb: Math.max(...runs.map((r) => r.rssMb)) };
}

async function compare(
  name: string,
  oursArgs: string[],
  cyrusArgs: string[] | undefined,
  load: string[],
  note?: string,
  seconds = SECONDS,
): Promise<Row> {
  // Alternate who goes first on every run, so drift in the machine's load
  // hits both daemons alike; report the median of REPEAT runs each.
  const oursRuns: Measured[] = [];
  const cyrusRuns: Measured[] = [];
  const withCyrus = haveCyrus && cyrusArgs !== undefined;
  for (let i = 0; i < REPEAT; i++) {
    const cyrusFirst = (rows.length + i) % 2 === 0;
    if (withCyrus && cyrusFirst) cyrusRuns.push(await measure(() => startCyrus(cyrusArgs), load, seconds));
    oursRuns.push(await measure(() => startOurs(oursArgs), load, seconds));
    if (withCyrus && !cyrusFirst) cyrusRuns.push(await measure(() => startCyrus(cyrusArgs), load, seconds));
  }
  const cyrus = cyrusRuns.length > 0 ? median(cyrusRuns) : undefined;
  const row: Row = { name, ours: median(oursRuns), ...(cyrus ? { cyrus } : {}), ...(note ? { note } : {}) };
  rows.push(row);
  printRow(row);
  return row;
}

interface AttackRun {
  victim: Load;
  bystander: Load;
  attack: Load | undefined;
}

/**
 * The brute-force rows (issue: password guessing): a victim logging in at
 * C=1 with its right password, a bystander at C=4 (both logged in once
 * before the run), and 64 connections attacking: guessing the victim's password (a new
 * one every request) or spraying unknown logins. Returns the figures of one
 * run; attack undefined runs the same load without an attacker.
 */
async function attackRun(
  start: () => Promise<Daemon>,
  victim: { name: string; password: string },
  bystander: { name: string; password: string },
  attack: 'guess' | 'spray' | undefined,
  seconds: number,
): Promise<AttackRun> {
  const d = await start();
  try {
    await sleep(200);
    // Both are users who log in routinely, so both have logged in before the
    // run. A first-ever login during a flood is ordinary work: it waits behind
    // the flood's queue (up to the shedding bound) until it has succeeded once.
    for (const u of [victim, bystander]) {
      assert.equal(await sendRequest(d.socket, { login: u.name, password: u.password, service: 'smtp', realm: '' }), 'OK');
    }
    const attacker =
      attack === undefined
        ? undefined
        : loadgen(
            d.socket,
            ['-c', '64', '-m', attack, '-u', attack === 'guess' ? victim.name : 'nosuchuser', '-p', 'attack'],
            seconds + 1,
          );
    if (attacker !== undefined) await sleep(1000); // the flood is on before the measured load starts
    const [v, b] = await Promise.all([
      loadgen(d.socket, ['-c', '1', '-u', victim.name, '-p', victim.password], seconds),
      loadgen(d.socket, ['-c', '4', '-u', bystander.name, '-p', bystander.password], seconds),
    ]);
    return { victim: v, bystander: b, attack: attacker === undefined ? undefined : await attacker };
  } finally {
    await d.stop();
  }
}

async function attackRows(
  victim: { name: string; password: string },
  bystander: { name: string; password: string },
): Promise<void> {
  const seconds = Math.max(SECONDS, 10);
  const daemons: Array<[string, () => Promise<Daemon>]> = [['ours', () => startOurs(['-a', 'shadow'])]];
  if (haveCyrus) daemons.push(['Cyrus', () => startCyrus(['-a', 'shadow'])]);
  console.log(
    `\nguessing flood (yescrypt, ${seconds} s, median of ${REPEAT}): victim C=1 and bystander C=4 (both logged in once before), 64 attacking connections`,
  );
  console.log(
    `${'row'.padEnd(26)} | ${'victim: req/s p99 ms OK/NO'.padEnd(30)} | ${'bystander: req/s (of unloaded)'.padEnd(32)} | attack: req/s OK`,
  );
  for (const [label, start] of daemons) {
    const runs: Record<string, AttackRun[]> = { none: [], guess: [], spray: [] };
    for (let i = 0; i < REPEAT; i++) {
      for (const kind of ['none', 'guess', 'spray'] as const) {
        runs[kind]!.push(await attackRun(start, victim, bystander, kind === 'none' ? undefined : kind, seconds));
      }
    }
    const mid = (rs: AttackRun[]): AttackRun =>
      [...rs].sort((a, b) => a.bystander.rps - b.bystander.rps)[Math.floor(rs.length / 2)]!;
    const base = mid(runs.none!);
    for (const kind of ['none', 'guess', 'spray'] as const) {
      const r = mid(runs[kind]!);
      const share = base.bystander.rps > 0 ? (r.bystander.rps / base.bystander.rps) * 100 : 0;
      console.log(
        `${`${label} ${kind === 'none' ? 'unloaded' : kind === 'guess' ? 'guessing the victim' : 'spraying unknowns'}`.padEnd(26)} | ` +
          `${fmt(r.victim.rps).padStart(6)} ${fmt(r.victim.p99_ms, 1).padStart(8)} ${fmt(r.victim.ok).padStart(6)}/${fmt(r.victim.no)}`.padEnd(
            30,
          ) +
          ` | ${fmt(r.bystander.rps).padStart(6)} (${fmt(share).padStart(3)} %)`.padEnd(35) +
          ` | ${r.attack ? `${fmt(r.attack.rps, 1).padStart(6)} ${fmt(r.attack.ok)}` : '-'}`,
      );
    }
  }
}

/**
 * The hot path with --state against without it (issue: fleet state): the
 * same daemon and load, runs alternating, medians; the cost is the ratio.
 */
async function stateRows(rowsToRun: Array<{ name: string; args: string[]; load: string[] }>): Promise<void> {
  const redis = await startRedis();
  const keyFile = makeKeyFile(redis.dir);
  try {
    console.log(
      `\nshared state (--state, redis-server ${redis.port} on 127.0.0.1; median of ${REPEAT} runs of ${SECONDS} s, alternating)`,
    );
    console.log(`${'row'.padEnd(34)} | ${'without --state'.padEnd(48)} | ${'with --state'.padEnd(48)} | with/without`);
    const state = ['--state', redis.url(), '--state-key', keyFile, '--state-prefix', 'bench:'];
    for (const r of rowsToRun) {
      const without: Measured[] = [];
      const withState: Measured[] = [];
      for (let i = 0; i < REPEAT; i++) {
        const first = i % 2 === 0;
        if (first) without.push(await measure(() => startOurs(r.args), r.load, SECONDS));
        withState.push(await measure(() => startOurs([...r.args, ...state]), r.load, SECONDS));
        if (!first) without.push(await measure(() => startOurs(r.args), r.load, SECONDS));
      }
      const w = median(without);
      const s = median(withState);
      const cell = (m: Measured): string =>
        `${fmt(m.rps).padStart(7)} ${fmt(m.p50_ms, 2).padStart(7)} ${fmt(m.p99_ms, 2).padStart(8)} ${fmt(m.ok).padStart(6)}/${fmt(m.no)}/${fmt(m.errors)} ${fmt(m.rssMb).padStart(4)}MB ${fmt(m.cpuUs).padStart(5)}us`;
      const runs = (ms: Measured[]): string => ms.map((m) => fmt(m.rps)).join('/');
      console.log(
        `${r.name.padEnd(34)} | ${cell(w)} | ${cell(s)} | ${(s.rps / w.rps).toFixed(3)}x  (runs: ${runs(without)} vs ${runs(withState)} req/s)`,
      );
    }
  } finally {
    await redis.stop();
  }
}

/**
 * The cost of --metrics: the same load on the same daemon without and with
 * it (counting, the endpoint, and a scrape every second as Prometheus would
 * do at most), alternating which goes first; medians of REPEAT runs. Without
 * --metrics (and without NOTIFY_SOCKET, as here) nothing is counted: that is
 * today's request path.
 */
async function metricsRows(rows: Array<[string, string[], string[]]>): Promise<void> {
  let cachedCpuUs = 0;
  console.log(`\n--metrics cost (median of ${REPEAT} runs of ${SECONDS} s each, alternating; a scrape every second while on)`);
  console.log(
    `${'row'.padEnd(20)} | ${'without: req/s  p99 ms  CPU us/req'.padEnd(36)} | ${'with: req/s  p99 ms  CPU us/req'.padEnd(36)} | req/s with/without, CPU per req with/without`,
  );
  for (const [name, args, load] of rows) {
    const off: Array<Measured & { cpuUs: number }> = [];
    const on: Array<Measured & { cpuUs: number }> = [];
    for (let i = 0; i < REPEAT; i++) {
      for (const withMetrics of i % 2 === 0 ? [false, true] : [true, false]) {
        const d = await startOurs(args, withMetrics);
        try {
          await sleep(200);
          let scrapes = 0;
          let scraping = true;
          const scraper = (async () => {
            while (scraping && d.metrics !== undefined) {
              const s = await scrape({ socketPath: d.metrics });
              if (s.status === 200) scrapes++;
              await sleep(1000);
            }
          })();
          const cpuBefore = cpuUs(d.pids());
          const result = await loadgen(d.socket, load, SECONDS);
          const perRequest = (cpuUs(d.pids()) - cpuBefore) / Math.max(1, result.requests);
          scraping = false;
          await scraper;
          if (withMetrics) assert.ok(scrapes >= SECONDS - 1, `only ${scrapes} scrapes`);
          (withMetrics ? on : off).push({ ...result, rssMb: rssMb(d.pids(), 'VmHWM'), cpuUs: perRequest });
        } finally {
          await d.stop();
        }
      }
    }
    const a = median(off);
    const b = median(on);
    const mid = (xs: number[]): number => [...xs].sort((x, y) => x - y)[Math.floor(xs.length / 2)] ?? 0;
    const ca = mid(off.map((m) => m.cpuUs));
    const cb = mid(on.map((m) => m.cpuUs));
    const cell = (m: Measured, cpu: number): string =>
      `${fmt(m.rps).padStart(8)} ${fmt(m.p99_ms, 2).padStart(8)} ${fmt(cpu, 1).padStart(10)}`.padEnd(36);
    console.log(
      `${name.padEnd(20)} | ${cell(a, ca)} | ${cell(b, cb)} | ${((b.rps / a.rps) * 100).toFixed(1).padStart(6)} %, ${((cb / ca) * 100).toFixed(1).padStart(6)} %`,
    );
    if (name === 'cache hit C=8') cachedCpuUs = ca;
  }
  // The socket rows move by a few per cent between identical daemons on a
  // shared machine; what counting itself costs is measured without sockets.
  const hot = await new Promise<string>((resolve, reject) =>
    execFile(process.execPath, [path.join(__dirname, 'metrics-hot.js')], (err, stdout) =>
      err ? reject(new Error(`metrics-hot failed: ${err.message}`)) : resolve(stdout.trim()),
    ),
  );
  const extraNs = Number(/\+(-?\d+) ns per request/.exec(hot)?.[1] ?? NaN);
  const share =
    cachedCpuUs > 0
      ? ` = ${((extraNs / (cachedCpuUs * 1000)) * 100).toFixed(2)} % of a cache hit's ${fmt(cachedCpuUs, 1)} us above`
      : '';
  console.log(`counting alone (${hot})${share}`);
}

/**
 * A two-mechanism chain whose first mechanism misses (-a shadow,ldap, a user
 * only in LDAP: shadow hashes against its dummy hash and says Invalid
 * username, then ldap binds) against each part alone: shadow for an unknown
 * user, ldap for the same user. The chain should cost at most the sum of its
 * parts (latency at C=1, CPU per request), plus at most 5 %.
 *
 * In the chain, each LDAP request comes after a hash's worth of quiet on the
 * event loop, and a request that comes to a quiet loop costs more than one
 * of a back-to-back stream (cold caches, a wake-up per request): at C=1 an
 * ldap request's CPU more than doubles. So ldap alone runs twice: back to
 * back, and paced (loadgen -g) as the chain paces it, each connection
 * waiting what a shadow request took in the same repetition. The sum of the
 * parts is shadow alone plus ldap paced; the back-to-back row is shown too.
 * Runs alternate; medians of REPEAT runs.
 */
async function chainRows(): Promise<void> {
  const slapd = await startSlapd();
  try {
    const conf = path.join(slapd.dir, 'bench-ldap.conf');
    fs.writeFileSync(conf, `ldap_servers: ${slapd.ldapUrl}\nldap_search_base: ${PEOPLE}\nldap_filter: (uid=%u)\n`);
    const u = USERS.alice;
    const names = [
      'shadow alone (unknown user)',
      'ldap alone, back to back',
      'ldap alone, paced as in the chain',
      'chain shadow,ldap (shadow misses)',
    ];
    const args = [
      ['-a', 'shadow'],
      ['-a', 'ldap', '-O', conf],
      ['-a', 'ldap', '-O', conf],
      ['-a', 'shadow,ldap', '-O', conf],
    ];
    console.log(
      `\na chain whose first mechanism misses, against its parts alone (median of ${REPEAT} runs of ${SECONDS} s, alternating)`,
    );
    console.log(`${'row'.padEnd(44)} | req/s  p50 ms  p99 ms  ok/no/err  CPU us/req`);
    for (const c of [1, 8]) {
      const load = ['-c', String(c), '-u', u.uid, '-p', u.password];
      const runs = names.map((): Measured[] => []);
      const gaps: number[] = [];
      for (let i = 0; i < REPEAT; i++) {
        // shadow first: its time per request paces this repetition's ldap.
        const shadow = await measure(() => startOurs(args[0] ?? []), load, SECONDS);
        runs[0]?.push(shadow);
        const gapUs = Math.round((c * 1e6) / Math.max(1, shadow.rps));
        gaps.push(gapUs);
        const rest: Array<[number, string[]]> = [
          [1, load],
          [2, [...load, '-g', String(gapUs)]],
          [3, load],
        ];
        if (i % 2 === 1) rest.reverse();
        for (const [k, l] of rest) runs[k]?.push(await measure(() => startOurs(args[k] ?? []), l, SECONDS));
      }
      const [shadow, ldapFast, ldap, chain] = runs.map(median) as [Measured, Measured, Measured, Measured];
      for (const [k, m] of [shadow, ldapFast, ldap, chain].entries()) {
        console.log(
          `${`${names[k] ?? ''} C=${c}`.padEnd(44)} | ${fmt(m.rps).padStart(7)} ${fmt(m.p50_ms, 2).padStart(7)} ${fmt(m.p99_ms, 2).padStart(7)} ${fmt(m.ok).padStart(6)}/${fmt(m.no)}/${fmt(m.errors)} ${fmt(m.cpuUs).padStart(7)}`,
        );
      }
      const pct = (a: number, b: number): string => fmt((a / b) * 100, 1);
      console.log(
        `  chain / (shadow + ldap paced, gap ${fmt(([...gaps].sort((a, b) => a - b)[Math.floor(gaps.length / 2)] ?? 0) / 1000, 1)} ms): ` +
          `CPU per request ${pct(chain.cpuUs, shadow.cpuUs + ldap.cpuUs)} %` +
          (c === 1 ? `, p50 ${pct(chain.p50_ms, shadow.p50_ms + ldap.p50_ms)} %` : '') +
          ` (target: at most 105 %); against ldap back to back: CPU ${pct(chain.cpuUs, shadow.cpuUs + ldapFast.cpuUs)} %` +
          (c === 1 ? `, p50 ${pct(chain.p50_ms, shadow.p50_ms + ldapFast.p50_ms)} %` : '') +
          `; req/s ${pct(chain.rps, shadow.rps)} % of shadow alone's`,
      );
    }
  } finally {
    await slapd.cleanup();
  }
}

/**
 * The two doors of one daemon on the same mechanism and load: the Dovecot
 * socket with a persistent connection per client (what Postfix's Dovecot
 * client keeps), against mux with a connection per request (what libsasl
 * opens). Runs alternate which door goes first; medians.
 */
async function dovecotRows(rowsToRun: Array<{ name: string; args: string[]; load: string[]; seconds?: number }>): Promise<void> {
  console.log(
    `\nthe Dovecot door (--dovecot-socket, persistent connections) against mux (a connection per request); median of ${REPEAT} runs, alternating`,
  );
  console.log(`${'row'.padEnd(34)} | ${'mux'.padEnd(48)} | ${'dovecot'.padEnd(48)} | dovecot/mux`);
  for (const r of rowsToRun) {
    const seconds = r.seconds ?? SECONDS;
    const mux: Measured[] = [];
    const dovecot: Measured[] = [];
    for (let i = 0; i < REPEAT; i++) {
      const start = (): Promise<Daemon> => startOurs(r.args, false, true);
      if (i % 2 === 0) mux.push(await measure(start, r.load, seconds));
      dovecot.push(await measure(start, r.load, seconds, 'dovecot'));
      if (i % 2 !== 0) mux.push(await measure(start, r.load, seconds));
    }
    const m = median(mux);
    const v = median(dovecot);
    const cell = (x: Measured): string =>
      `${fmt(x.rps).padStart(7)} ${fmt(x.p50_ms, 2).padStart(7)} ${fmt(x.p99_ms, 2).padStart(8)} ${fmt(x.ok).padStart(6)}/${fmt(x.no)}/${fmt(x.errors)} ${fmt(x.rssMb).padStart(4)}MB ${fmt(x.cpuUs).padStart(5)}us`;
    console.log(`${r.name.padEnd(34)} | ${cell(m)} | ${cell(v)} | ${(v.rps / m.rps).toFixed(2)}x`);
  }
}

async function cryptCpuMs(hash: string, password: string, n: number): Promise<number> {
  const pw = Buffer.from(password);
  const before = process.cpuUsage();
  for (let i = 0; i < n; i++) await native.cryptVerify(pw, hash);
  const used = process.cpuUsage(before);
  return (used.user + used.system) / 1000 / n;
}

async function main(): Promise<void> {
  const cores = os.availableParallelism();
  console.log(
    `saslauthd-ts benchmark: ${cores} cores, median of ${REPEAT} runs of ${SECONDS} s, Cyrus ${haveCyrus ? CYRUS : 'not installed'}`,
  );
  console.log(
    'columns: req/s  p50 ms  p99 ms  OK/NO/errors  peak RSS (all processes)  CPU time per request (all processes and threads); ratio = ours/Cyrus req/s\n',
  );
  const pw = 'Bench-pw-1';
  const sha = createUser(`bsha${process.pid}`, pw, 'sha512crypt');
  const yes = createUser(`byes${process.pid}`, pw); // chpasswd: Debian's default, yescrypt
  const shadowHash = (u: string): string =>
    fs
      .readFileSync('/etc/shadow', 'utf8')
      .split('\n')
      .find((l) => l.startsWith(`${u}:`))!
      .split(':')[1]!;

  try {
    console.log(`${'row'.padEnd(34)} | ${'saslauthd-ts'.padEnd(48)} | ${'Cyrus saslauthd -n 5'.padEnd(48)} | ratio`);
    if (GROUPS.has('crypt')) {
      for (const [label, u] of [
        ['sha512', sha],
        ['yescrypt', yes],
      ] as const) {
        const n = label === 'sha512' ? 300 : 40;
        const ms = await cryptCpuMs(shadowHash(u.name), pw, n);
        console.log(
          `crypt limit ${label}: ${ms.toFixed(2)} ms CPU per hash -> ${fmt((cores * 1000) / ms)} req/s on ${cores} cores`,
        );
      }
    }
    if (GROUPS.has('shadow')) {
      for (const [label, u] of [
        ['sha512', sha],
        ['yescrypt', yes],
      ] as const) {
        // About 35 yescrypt logins/s on 2 cores: a 3 s run counts some 100,
        // so one login is 1 % of the ratio. Those rows run at least 10 s.
        const seconds = label === 'yescrypt' ? Math.max(SECONDS, 10) : SECONDS;
        for (const c of [1, 8, 64]) {
          const load = ['-c', String(c), '-u', u.name, '-p', pw];
          await compare(`shadow ${label} C=${c}`, ['-a', 'shadow'], ['-a', 'shadow'], load, undefined, seconds);
        }
      }
    }
    if (GROUPS.has('cache')) {
      for (const c of [1, 8, 64]) {
        await compare(
          `cache hit C=${c}`,
          ['-a', 'shadow', '-c'],
          ['-a', 'shadow', '-c'],
          ['-c', String(c), '-u', yes.name, '-p', pw],
        );
      }
    }
    if (GROUPS.has('pam') && BACKENDS.pam !== undefined) {
      // sha512 users: a wrong password costs PAM one hash, and with yescrypt
      // (~70 ms CPU) 16 of them every ~2 s take a third of a 2-core machine:
      // that row would measure the CPU, not head-of-line blocking.
      const base = await compare('pam good logins C=4', ['-a', 'pam'], ['-a', 'pam'], ['-c', '4', '-u', sha.name, '-p', pw]);
      const loaded = await compare(
        'pam C=4 + 16 wrong in flight',
        ['-a', 'pam'],
        ['-a', 'pam'],
        ['-c', '4', '-u', sha.name, '-p', pw, '-w', '16', '-W', 'wrong-password'],
      );
      console.log(
        `  head-of-line: ours ${fmt((loaded.ours.rps / base.ours.rps) * 100)} % of unloaded` +
          (base.cyrus && loaded.cyrus ? `, Cyrus ${fmt((loaded.cyrus.rps / base.cyrus.rps) * 100)} %` : ''),
      );
    }
    if (GROUPS.has('idle')) {
      const base = await compare(
        'shadow sha512 C=8 (reference)',
        ['-a', 'shadow'],
        ['-a', 'shadow'],
        ['-c', '8', '-u', sha.name, '-p', pw],
      );
      const loaded = await compare(
        'shadow sha512 C=8 + 5000 idle conns',
        ['-a', 'shadow'],
        ['-a', 'shadow'],
        ['-c', '8', '-u', sha.name, '-p', pw, '-i', '5000'],
      );
      console.log(
        `  idle connections held: ours ${loaded.ours.idle_open}${loaded.cyrus ? `, Cyrus ${loaded.cyrus.idle_open}` : ''}; ` +
          `good logins: ours ${fmt((loaded.ours.rps / base.ours.rps) * 100)} % of unloaded` +
          (base.cyrus && loaded.cyrus ? `, Cyrus ${fmt((loaded.cyrus.rps / base.cyrus.rps) * 100)} %` : ''),
      );
    }
    if (GROUPS.has('metrics')) {
      await metricsRows([
        ['cache hit C=1', ['-a', 'shadow', '-c'], ['-c', '1', '-u', yes.name, '-p', pw]],
        ['cache hit C=8', ['-a', 'shadow', '-c'], ['-c', '8', '-u', yes.name, '-p', pw]],
        ['shadow sha512 C=8', ['-a', 'shadow'], ['-c', '8', '-u', sha.name, '-p', pw]],
      ]);
    }
    if (GROUPS.has('attack')) {
      const victim = createUser(`bvic${process.pid}`, 'Victim-pw-1');
      const bystander = createUser(`bbys${process.pid}`, 'Bystander-pw-1');
      await attackRows(victim, bystander);
    }
    if (GROUPS.has('state')) {
      await stateRows([
        { name: 'cache hit C=8', args: ['-a', 'shadow', '-c'], load: ['-c', '8', '-u', yes.name, '-p', pw] },
        { name: 'shadow sha512 C=8', args: ['-a', 'shadow'], load: ['-c', '8', '-u', sha.name, '-p', pw] },
      ]);
    }
    if (GROUPS.has('dovecot')) {
      const rowsToRun: Array<{ name: string; args: string[]; load: string[]; seconds?: number }> = [];
      for (const c of [1, 8, 64]) {
        rowsToRun.push({
          name: `cache hit C=${c}`,
          args: ['-a', 'shadow', '-c'],
          load: ['-c', String(c), '-u', yes.name, '-p', pw],
        });
      }
      for (const c of [1, 8, 64]) {
        rowsToRun.push({
          name: `shadow sha512 C=${c}`,
          args: ['-a', 'shadow'],
          load: ['-c', String(c), '-u', sha.name, '-p', pw],
        });
      }
      await dovecotRows(rowsToRun);
    }
    if (GROUPS.has('chain')) await chainRows();
    const idle = await startOurs(['-a', 'shadow']);
    await sleep(500);
    console.log(`\nsaslauthd-ts idle RSS: ${fmt(rssMb(idle.pids()), 1)} MB`);
    await idle.stop();
  } finally {
    removeAllUsers();
  }
}

main().catch((err: unknown) => {
  console.error(err);
  removeAllUsers();
  process.exitCode = 1;
});
