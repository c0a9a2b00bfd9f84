// Socket-level fuzzing of the Dovecot door, as test/integration/fuzz.test.ts
// does the mux door: many clients at once, each running random actions
// (whole valid sessions with many requests in flight, random bytes before
// and after the handshake, valid lines with bytes flipped, overlong lines,
// dripping, half-closed and reset connections, idle ones) against a running
// daemon, once with -a shadow -c (cache hits answered at once, hashes on the
// pool's job path) and once with -a pam. Every answer is checked as it
// comes: an OK only ever for the right password, every answer for a request
// that was asked, every connection answered or closed by the daemon within
// its deadlines. Afterwards the daemon (same pid) still answers on both
// doors, holds no connection, and its RSS has not grown in the second half of
// the run (a connection here is JavaScript objects: the heap grows to the
// load in the first half and stays there; a leak would keep growing).
//
// Wrong passwords only go to logins that do not exist, each used once, and
// without a client address (the throttle counts per address too), so the
// throttle (on, as deployed) never holds an answer back.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { sendRequest } from '../../src/client/request';
import { startDaemon, type RunningDaemon } from '../helpers/daemon';
import { DovecotAuthClient } from '../helpers/dovecot-auth-client';
import { COMMON_STACK, cleanupPam, installService, serviceName } from '../helpers/pam';
import { openConnections, rssBytes } from '../helpers/procs';
import { createUser, removeAllUsers, userName, type TestUser } from '../helpers/users';
import { hostileMix, waitUntil, type MixResult, type Rng } from '../helpers/fuzz-mix';

// About the minute allowed: 36 s with -a shadow -c, whose last two thirds
// show whether memory keeps growing (the first is how long the daemon takes
// to reach its working size under this load), and 15 s with -a pam.
const CLIENTS = 32;
const READ_TIMEOUT_S = 1;
/** A client action that takes this long is hung. Not a speed bound: past every deadline and PAM's fail delay. */
const ACTION_TIMEOUT_MS = 15_000;
const RSS_SLACK = 10 * 1024 * 1024;
const SEED = Number(process.env.FUZZ_SEED ?? Math.floor(Math.random() * 2 ** 31));

/** Rich in the bytes the protocol gives meaning to: TAB, LF, 0x01 (an escape) and '='. */
const fuzzByte = (r: Rng): number => (r() < 0.15 ? r.pick([0x09, 0x0a, 0x01, 0x3d]) : r.int(0, 255));
// Each client runs at least this many actions in each third of a run, however long they take.
const ACTIONS_PER_CLIENT = 4;

const b64 = (s: string | Buffer): string => Buffer.from(s).toString('base64');

interface Target {
  socket: string;
  users: TestUser[];
  service: string;
}

let seq = 0;

/**
 * A raw session: connect, send the chunks (with pauses), then read until the
 * daemon closes or until `linger` ms of quiet; returns everything it sent.
 */
function raw(
  socket: string,
  chunks: Array<{ bytes: Buffer; delayMs: number }>,
  then: 'end' | 'destroy' | 'linger',
): Promise<{ text: string; closed: boolean; timedOut: boolean }> {
  return new Promise((resolve) => {
    const s = net.connect({ path: socket, allowHalfOpen: true });
    let text = '';
    let closed = false;
    let done = false;
    const finish = (timedOut: boolean): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      s.destroy();
      resolve({ text, closed, timedOut });
    };
    const timer = setTimeout(() => finish(true), ACTION_TIMEOUT_MS);
    s.on('data', (d: Buffer) => (text += d.toString('latin1')));
    s.on('end', () => {
      closed = true;
      finish(false);
    });
    s.on('close', () => {
      closed = true;
      finish(false);
    });
    s.on('error', () => {
      closed = true;
      finish(false);
    });
    s.on('connect', () => {
      void (async () => {
        for (const c of chunks) {
          if (c.delayMs > 0) await new Promise((r) => setTimeout(r, c.delayMs));
          if (done || closed) return;
          s.write(c.bytes);
        }
        if (then === 'destroy') finish(false);
        else if (then === 'end') s.end();
        // 'linger': wait for the daemon to close (a violation) or to cut us at a deadline.
      })();
    });
  });
}

/** OK, FAIL and CONT lines are well-formed; no OK at all (these sessions never send a right password). */
function badAnswers(text: string): string | undefined {
  const lines = text.split('\n').slice(0, -1);
  for (const l of lines) {
    if (/^(VERSION|MECH|SPID|CUID|COOKIE|DONE)(\t|$)/.test(l)) continue;
    if (/^OK\t/.test(l)) return `an OK for a session without a right password: ${l}`;
    if (!/^(FAIL|CONT)\t\d+(\t|$)/.test(l)) return `a malformed line: ${JSON.stringify(l)}`;
  }
  return undefined;
}

const HELLO = Buffer.from('VERSION\t1\t0\nCPID\t99\n');

// The mix's kinds; a whole session three times as likely as the rest.
const ACTION_MIX = [
  'session',
  'session',
  'session',
  'random-after',
  'random-before',
  'mutated',
  'overlong',
  'drip',
  'half-open',
  'reset',
  'idle',
] as const;
const ACTION_KINDS = new Set<string>(ACTION_MIX);

async function action(rng: Rng, t: Target, seen: Set<string>): Promise<string | undefined> {
  const kind = rng.pick(ACTION_MIX);
  seen.add(kind);
  const unknownPlain = (id: number): string => {
    const login = `fz${process.pid}d${++seq}`;
    // No rip=: the throttle counts failures per address, and would hold these answers back.
    return `AUTH\t${id}\tPLAIN\tservice=${t.service}\tresp=${b64(`\0${login}\0pw${rng.int(0, 1e9)}`)}\n`;
  };
  switch (kind) {
    case 'session': {
      // A well-behaved client with several requests in flight: right passwords for real users, wrong ones for unknown users.
      const c = await DovecotAuthClient.connect(t.socket, { timeoutMs: ACTION_TIMEOUT_MS });
      try {
        const n = rng.int(1, 12);
        const asks = Array.from({ length: n }, (_, i) => {
          const id = i + 1;
          if (rng() < 0.6) {
            const u = rng.pick(t.users);
            const p =
              rng() < 0.5 ? c.plain(u.name, u.password, { id, rip: '198.51.100.1' }) : c.login(u.name, u.password, { id });
            return p.then((r) =>
              r.kind === 'OK' && r.params.user === u.name ? undefined : `right password for ${u.name}: ${r.line || r.kind}`,
            );
          }
          const login = `fz${process.pid}s${++seq}`;
          return c
            .plain(login, 'wrong', { id })
            .then((r) => (r.kind === 'FAIL' ? undefined : `unknown user ${login}: ${r.line || r.kind}`));
        });
        const timeout = new Promise<string>((r) => setTimeout(() => r('session hung'), ACTION_TIMEOUT_MS).unref());
        const results = await Promise.race([Promise.all(asks), timeout.then((x) => [x])]);
        return results.find((x) => x !== undefined);
      } finally {
        c.destroy();
      }
    }
    case 'random-after':
    case 'random-before': {
      // Random lines, after a good handshake or instead of one: FAILs, CONTs or a close; never an OK; the daemon ends it by a deadline at the latest.
      const junk = Buffer.concat(
        Array.from({ length: rng.int(1, 6) }, () => Buffer.concat([rng.bytes(rng.int(0, 80)), Buffer.from('\n')])),
      );
      const o = await raw(
        t.socket,
        [{ bytes: kind === 'random-after' ? Buffer.concat([HELLO, junk]) : junk, delayMs: 0 }],
        'linger',
      );
      if (o.timedOut) return `${kind}: never closed: ${JSON.stringify(o.text.slice(-200))}`;
      return badAnswers(o.text);
    }
    case 'mutated': {
      // A valid line for an unknown user with a few bytes flipped.
      const line = Buffer.from(unknownPlain(rng.int(1, 9)));
      for (let i = rng.int(1, 4); i > 0; i--) line[rng.int(0, line.length - 2)] = rng.int(0, 255);
      // Half-closed after it: whatever the line became, the daemon answers or refuses it, then closes.
      const o = await raw(t.socket, [{ bytes: Buffer.concat([HELLO, line]), delayMs: 0 }], 'end');
      if (o.timedOut) return `mutated: never closed: ${JSON.stringify(o.text.slice(-200))}`;
      return badAnswers(o.text);
    }
    case 'overlong': {
      const o = await raw(
        t.socket,
        [
          {
            bytes: Buffer.concat([
              HELLO,
              Buffer.from('AUTH\t1\tPLAIN\tservice=smtp\tresp='),
              Buffer.alloc(rng.int(8200, 20000), 0x41),
            ]),
            delayMs: 0,
          },
        ],
        'linger',
      );
      return o.closed && !o.timedOut ? badAnswers(o.text) : 'overlong line: not closed';
    }
    case 'drip': {
      // The start of a valid exchange one byte at a time, stopping inside the
      // handshake or inside a line: cut at the read deadline.
      const bytes = Buffer.concat([HELLO, Buffer.from(unknownPlain(1))]);
      let n = rng.int(1, 40);
      if (n === HELLO.length) n++;
      const o = await raw(
        t.socket,
        Array.from(bytes.subarray(0, n), (b) => ({ bytes: Buffer.of(b), delayMs: rng.int(5, 120) })),
        'linger',
      );
      return o.timedOut ? 'drip: never cut' : badAnswers(o.text);
    }
    case 'half-open': {
      // Sends a request and closes its side at once: the answer still comes.
      const o = await raw(t.socket, [{ bytes: Buffer.concat([HELLO, Buffer.from(unknownPlain(3))]), delayMs: 0 }], 'end');
      if (o.timedOut || !o.closed) return 'half-open: not closed';
      return /(^|\n)FAIL\t3\t/.test(o.text)
        ? badAnswers(o.text)
        : `half-open: no FAIL for its request: ${JSON.stringify(o.text)}`;
    }
    case 'reset': {
      const all = Buffer.concat([HELLO, Buffer.from(unknownPlain(1))]);
      await raw(t.socket, [{ bytes: all.subarray(0, rng.int(0, all.length)), delayMs: 0 }], 'destroy');
      return undefined;
    }
    case 'idle': {
      // Connects and says nothing: cut at the read deadline unless it leaves first.
      const o = await raw(t.socket, [{ bytes: Buffer.alloc(0), delayMs: rng.int(0, 1500) }], rng() < 0.5 ? 'destroy' : 'linger');
      return o.timedOut ? 'idle: never cut' : undefined;
    }
  }
}

let users: TestUser[];
let service: string;
let dir: string;

before(() => {
  users = Array.from({ length: 4 }, (_, i) => createUser(userName(`dz${i}`), `Dfuzz-pw-${i}!`, 'sha512crypt'));
  service = installService(serviceName('dfuzz'), COMMON_STACK);
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dovecot-fuzz-'));
});

after(() => {
  removeAllUsers();
  cleanupPam();
  fs.rmSync(dir, { recursive: true, force: true });
});

/** CLIENTS clients, each running at least ACTIONS_PER_CLIENT random actions and on until `until`. */
function mix(t: Target, seed: number, until: number): Promise<MixResult> {
  return hostileMix({ clients: CLIENTS, seed, least: ACTIONS_PER_CLIENT, until, byte: fuzzByte }, (rng, kinds) =>
    action(rng, t, kinds),
  );
}

for (const { name, mechArgs, fuzzMs, checkRss } of [
  { name: '-a shadow -c', mechArgs: ['-a', 'shadow', '-c'], fuzzMs: 36_000, checkRss: true },
  { name: '-a pam', mechArgs: ['-a', 'pam'], fuzzMs: 15_000, checkRss: false },
] as const) {
  describe(`socket fuzzing of the Dovecot door, ${name}`, () => {
    let d: RunningDaemon;
    let pid: number;
    let t: Target;
    /** RSS after the first and the second third of the run. */
    const rssAt: number[] = [];
    let actions = 0;
    let kinds = new Set<string>();
    const failures: string[] = [];

    before(async () => {
      const socket = path.join(dir, `auth-${mechArgs[2] ?? mechArgs[1]}`);
      d = await startDaemon({ args: [...mechArgs, '--read-timeout', String(READ_TIMEOUT_S)], dovecotSocket: socket });
      pid = d.child.pid!;
      t = { socket, users, service };
      // The first third of the run grows the daemon to the load (its pools,
      // PAM's modules, the cache, and here a JavaScript heap that holds every
      // connection). Then two more thirds, with the RSS taken after each: a
      // leak grows both; V8 sizing its heap up in one step (16 MB and more at
      // a time) grows one.
      const first = await mix(t, SEED ^ 0x5eed, Date.now() + fuzzMs / 3);
      rssAt.push(rssBytes(pid));
      const second = await mix(t, SEED, Date.now() + fuzzMs / 3);
      rssAt.push(rssBytes(pid));
      const third = await mix(t, SEED ^ 0x7415, Date.now() + fuzzMs / 3);
      actions = first.actions + second.actions + third.actions;
      kinds = new Set([...first.kinds, ...second.kinds, ...third.kinds]);
      failures.push(...first.failures, ...second.failures, ...third.failures);
    });

    after(async () => {
      await d?.stop();
    });

    test('answers every client rightly, or closes it, and never hangs one', () => {
      // Every kind of the mix reached the daemon.
      assert.deepEqual([...kinds].sort(), [...ACTION_KINDS].sort(), `${actions} actions ran`);
      assert.deepEqual(failures.slice(0, 10), [], `${failures.length} of ${actions} actions went wrong (FUZZ_SEED=${SEED})`);
    });

    test('is still the same process, answering on both doors', async () => {
      assert.equal(d.child.exitCode, null, d.output().slice(-2000));
      assert.doesNotThrow(() => process.kill(pid, 0));
      const u = users[0]!;
      assert.equal(await sendRequest(d.socketPath, { login: u.name, password: u.password, service, realm: '' }), 'OK');
      const c = await DovecotAuthClient.connect(t.socket);
      try {
        assert.equal((await c.plain(u.name, u.password, { service })).kind, 'OK');
        assert.equal((await c.plain(u.name, 'not-it', { service })).kind, 'FAIL');
      } finally {
        c.destroy();
      }
    });

    test('holds no connection once the clients are gone and the deadlines have passed', async () => {
      const open = await waitUntil(() => openConnections(pid, t.socket) === 0, (READ_TIMEOUT_S + 20) * 1000);
      assert.equal(open, true, `${openConnections(pid, t.socket)} connections still open`);
    });

    // The memory bound is measured on the longer -a shadow -c run only: the
    // 15 s PAM run is too short for its first third to reach the working size.
    if (checkRss) {
      test('has not kept growing: one of the last two thirds of the run grew RSS by 10 MB at most', async () => {
        const [afterFirst, afterSecond] = rssAt as [number, number];
        let rss = rssBytes(pid);
        const grown = (): number => Math.min(afterSecond - afterFirst, rss - afterSecond);
        await waitUntil(() => {
          rss = rssBytes(pid);
          return grown() <= RSS_SLACK;
        }, 10_000);
        const mb = (n: number): string => (n / 2 ** 20).toFixed(1);
        assert.ok(
          grown() <= RSS_SLACK,
          `RSS ${mb(afterFirst)} MB after the first third, ${mb(afterSecond)} MB after the second, ${mb(rss)} MB at the end`,
        );
      });
    }

    test('logs every violation, summarised under the flood, and no password', () => {
      const out = d.output();
      assert.match(out, /dovecot socket: /);
      for (const u of users) assert.ok(!out.includes(u.password), `the log holds ${u.name}'s password`);
    });
  });
}
