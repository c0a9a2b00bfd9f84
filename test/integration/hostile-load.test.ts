// Hostile load on each answering path (-a shadow, -a shadow -c, -a pam):
// 8,000 clients, each dripping a 1 KB request at 2 bytes a second, so none
// ever completes; the read deadline cuts them off and they reconnect at once.
// Issue 13's bounds: the daemon's RSS stays within 50 MB of idle, and a
// valid request is answered within 1 s throughout. Before the native
// listener decoded for every path, the JavaScript path grew by about 95 MB
// under this load.
//
// The clients are a C program (test/fixtures/dripper.c) in its own process:
// one thread with epoll, so that the load costs little to make and the
// measurement is the daemon's. Throttling stays on, as deployed; the drippers
// never complete a request, so it never sees them.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import { startDaemon, type RunningDaemon } from '../helpers/daemon';
import { createUser, removeAllUsers, userName, type TestUser } from '../helpers/users';
import { COMMON_STACK, cleanupPam, installService, serviceName } from '../helpers/pam';
import { openConnections, rssBytes } from '../helpers/procs';
import { buildDripper, hardFdLimit, runDripper, tempDir, type DripperReport } from '../helpers/dripper';
import { sendRequest } from '../../src/client/request';

const CLIENTS = 8000;
const BYTES_PER_SECOND = 2;
// The default read deadline, given explicitly: what a deployed daemon does.
// A client sends 20 of its 1,024 bytes before it is cut off; 8,000 of them
// reconnect 800 times a second. (A 5 s deadline doubles that churn: pinned
// to one core beside other work, probes then took up to 2.6 s; with 10 s,
// under 0.2 s.)
const READ_TIMEOUT_S = 10;
// Clients start evenly over this long, so that their cuts and reconnects are
// spread out as real ones would be, rather than all in one instant.
const RAMP_S = 4;
// Every client is cut off at least twice (3 s to spare).
const RUN_S = RAMP_S + 2 * READ_TIMEOUT_S + 3;
const PROBE_EVERY_MS = 2000;
// The issue's own bounds.
const ANSWER_BOUND_MS = 1000;
const RSS_BOUND = 50 * 1024 * 1024;

const MB = (n: number): string => `${(n / 2 ** 20).toFixed(1)} MB`;

let user: TestUser;
let service: string;
let dir: string;
let dripperBin: string;

before(() => {
  // Each client is a descriptor in the dripper and one in the daemon; both
  // raise their soft limit to this hard one.
  const limit = hardFdLimit();
  assert.ok(limit >= CLIENTS + 256, `the descriptor hard limit (${limit}) is too low for ${CLIENTS} clients`);
  user = createUser(userName('hl'), 'Hostile-load-pw1', 'sha512crypt');
  service = installService(serviceName('hload'), COMMON_STACK);
  dir = tempDir();
  dripperBin = buildDripper(dir);
});

after(() => {
  removeAllUsers();
  cleanupPam();
  fs.rmSync(dir, { recursive: true, force: true });
});

const PATHS: [string, string[]][] = [
  ['-a shadow', ['-a', 'shadow']],
  ['-a shadow -c', ['-a', 'shadow', '-c']],
  ['-a pam', ['-a', 'pam']],
];

interface Probe {
  /** ms since the dripper started. */
  at: number;
  ms: number;
  answer: string;
}

for (const [name, mechArgs] of PATHS) {
  describe(`${CLIENTS} clients dripping ${BYTES_PER_SECOND} bytes a second against ${name}`, () => {
    let d: RunningDaemon;
    let pid: number;
    let idleRss: number;
    let maxRss = 0;
    let maxOpen = 0;
    const probes: Probe[] = [];
    let final: DripperReport | undefined;
    let exitCode: number | null = null;
    let dripperErr = '';
    let drained = false;

    const valid = (): Promise<string> =>
      sendRequest(d.socketPath, { login: user.name, password: user.password, service, realm: '' });

    before(async () => {
      d = await startDaemon({ args: [...mechArgs, '--read-timeout', String(READ_TIMEOUT_S)] });
      pid = d.child.pid!;
      // Idle: after the first requests have set up what they need (the
      // pools, PAM's modules, the cache entry, the known-good mark).
      for (let i = 0; i < 5; i++) assert.equal(await valid(), 'OK');
      await new Promise((r) => setTimeout(r, 500));
      idleRss = rssBytes(pid);

      const run = runDripper(dripperBin, {
        socketPath: d.socketPath,
        clients: CLIENTS,
        seconds: RUN_S,
        bytesPerSecond: BYTES_PER_SECOND,
        rampSeconds: RAMP_S,
      });
      const started = performance.now();
      let running = true;
      void run.done.then(() => (running = false));
      const sampler = setInterval(() => {
        maxRss = Math.max(maxRss, rssBytes(pid));
      }, 250);
      // Probing stops a second before the dripper leaves: its exit closes
      // 8,000 connections in the same instant, which no real crowd does,
      // and which costs the daemon's loop a few hundred ms.
      const probeUntil = started + (RUN_S - 1) * 1000;
      try {
        while (running && performance.now() < probeUntil) {
          const t = performance.now();
          const answer = await valid().catch((err: Error) => `error: ${err.message}`);
          probes.push({ at: Math.round(t - started), ms: performance.now() - t, answer });
          // Between probes, never during one: reading 8,000 descriptors
          // takes this process a moment.
          maxOpen = Math.max(maxOpen, openConnections(pid, d.socketPath));
          const wait = PROBE_EVERY_MS - (performance.now() - t);
          await Promise.race([run.done, new Promise((r) => setTimeout(r, Math.max(0, wait)))]);
        }
        await run.done;
      } finally {
        clearInterval(sampler);
        run.kill();
        exitCode = await run.done;
      }
      final = run.reports.at(-1);
      dripperErr = run.output();
      // The dripper closed all its connections as it left: they are EOFs the
      // daemon closes at once; the read deadline is the outside bound.
      const until = Date.now() + (READ_TIMEOUT_S + 5) * 1000;
      while (!(drained = openConnections(pid, d.socketPath) === 0) && Date.now() < until) {
        await new Promise((r) => setTimeout(r, 100));
      }
    });

    after(async () => {
      await d?.stop();
    });

    test('the clients really were there: all open at once, each cut off and reconnected', (t) => {
      t.diagnostic(`at most ${maxOpen} open; ${final?.connects} connects, ${final?.cuts} cuts, ${final?.sent} bytes`);
      assert.equal(exitCode, 0, dripperErr);
      assert.ok(final, 'the dripper reported nothing');
      assert.equal(final.errors, 0, `dripper errors, last: ${final.lastError}`);
      assert.ok(maxOpen >= CLIENTS * 0.95, `the daemon held at most ${maxOpen} connections open`);
      assert.ok(final.cuts >= CLIENTS * 2, `${final.cuts} cuts for ${CLIENTS} clients`);
      assert.ok(final.connects >= final.cuts, `${final.connects} connects`);
      // No request ever completed, so the daemon never answered one.
      assert.equal(final.received, 0);
    });

    test('stays within 50 MB of its idle RSS throughout', (t) => {
      t.diagnostic(`RSS ${MB(idleRss)} idle, at most ${MB(maxRss)}`);
      assert.ok(maxRss > 0, 'no RSS sample');
      assert.ok(maxRss - idleRss <= RSS_BOUND, `RSS rose from ${MB(idleRss)} idle to ${MB(maxRss)}`);
    });

    test('answers a valid request within 1 s throughout', (t) => {
      const ms = probes.map((p) => p.ms).sort((a, b) => a - b);
      const slowest = probes.reduce((a, b) => (b.ms > a.ms ? b : a), probes[0]!);
      t.diagnostic(
        `${ms.length} probes, median ${Math.round(ms[ms.length >> 1] ?? 0)} ms, ` +
          `slowest ${Math.round(slowest.ms)} ms at ${slowest.at} ms into the run`,
      );
      // One probe every 2 s over the whole run, ramp and reconnect waves included.
      assert.ok(probes.length >= (RUN_S * 1000) / PROBE_EVERY_MS - 2, `only ${probes.length} probes`);
      const late = probes.filter((p) => p.answer !== 'OK' || p.ms > ANSWER_BOUND_MS);
      // The load average says whether other work shared the 2 cores (here,
      // alone, probes take a few ms; beside a benchmark, over a second).
      assert.deepEqual(
        late.map((p) => `${p.at} ms in: ${p.answer} after ${Math.round(p.ms)} ms`),
        [],
        `load average ${os
          .loadavg()
          .map((l) => l.toFixed(1))
          .join(' ')} on ${os.availableParallelism()} CPUs`,
      );
    });

    test('is the same process afterwards, answers, and holds no connection once the clients are gone', async () => {
      assert.equal(d.child.exitCode, null, d.output().slice(-2000));
      assert.equal(d.child.signalCode, null);
      assert.equal(drained, true, `${openConnections(pid, d.socketPath)} connections still open`);
      assert.equal(await valid(), 'OK');
    });
  });
}
