// The throttle's policy on its own, with a clock of its own: thresholds,
// delays, cool-offs, windows, addresses, and the memory a flood may cost.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import pino from 'pino';
import { execFile } from 'node:child_process';
import path from 'node:path';
import { MemoryStore } from '../../../src/auth/throttle/store';
import {
  DEFAULT_THROTTLE,
  Throttle,
  type Admission,
  type Attempt,
  type ThrottleConfig,
} from '../../../src/auth/throttle/throttle';

const silent = pino({ level: 'silent' });

function setup(cfg: Partial<ThrottleConfig> = {}, store: Partial<ConstructorParameters<typeof MemoryStore>[0]> = {}) {
  let now = 1_000_000;
  const full = { ...DEFAULT_THROTTLE, ...cfg };
  // The daemon's default bounds (--known-good-max, --throttle-tracked).
  const s = new MemoryStore({
    windowMs: full.windowMs,
    knownGoodTtlMs: 86_400_000,
    knownGoodMax: 100_000,
    trackedMax: 100_000,
    penaltyAfter: full.freeFailures,
    ...store,
  });
  const promoted: number[] = [];
  const t = new Throttle(
    full,
    s,
    silent,
    (fp) => promoted.push(fp),
    () => now,
  );
  clocks.set(t, () => now);
  return { t, s, promoted, advance: (ms: number) => (now += ms), now: () => now };
}

const clocks = new WeakMap<Throttle, () => number>();

/** One attempt through admit and, if run, settle with the given result (the mechanism answering at once). */
async function attempt(t: Throttle, a: Attempt, result: 'ok' | 'denied' | 'other'): Promise<{ adm: Admission; holdMs: number }> {
  const adm = await t.admit(a);
  if (adm.kind === 'refuse') return { adm, holdMs: adm.delayMs };
  return { adm, holdMs: await t.settle(a, adm, result, clocks.get(t)?.() ?? Date.now()) };
}

const bob = (fp: number, addr?: string): Attempt => ({ login: 'bob', realm: '', fp, ...(addr ? { addr } : {}) });

test('the defaults leave a mistyping human alone: 5 free failures in 10 minutes, refusals only past 20', () => {
  assert.equal(DEFAULT_THROTTLE.freeFailures, 5);
  assert.equal(DEFAULT_THROTTLE.windowMs, 600_000);
  assert.equal(DEFAULT_THROTTLE.refuseAfter, 20);
});

test('delays double from the first failure past the free ones, up to the cap', () => {
  const { t } = setup({ delayMs: 2000, maxDelayMs: 15_000, freeFailures: 5 });
  assert.deepEqual(
    [5, 6, 7, 8, 9, 10, 50].map((n) => t.delayFor(n)),
    [0, 2000, 4000, 8000, 15_000, 15_000, 15_000],
  );
});

test('distinct wrong passwords: free, then held back, then refused without the mechanism', async () => {
  const { t } = setup();
  const kinds: string[] = [];
  for (let i = 0; i < 25; i++) {
    const r = await attempt(t, bob(i), 'denied');
    kinds.push(r.adm.kind === 'refuse' ? 'refuse' : r.holdMs > 0 ? 'held' : 'free');
  }
  assert.deepEqual(kinds, [
    ...Array<string>(5).fill('free'),
    ...Array<string>(15).fill('held'),
    ...Array<string>(5).fill('refuse'),
  ]);
});

test('a held attempt tells the mechanism not to answer a refusal itself', async () => {
  const { t } = setup();
  for (let i = 0; i < 5; i++) await attempt(t, bob(i), 'denied');
  const adm = await t.admit(bob(99));
  assert.equal(adm.kind === 'run' && adm.holdFailure, true);
});

test('a repeated wrong password never escalates', async () => {
  const { t } = setup();
  for (let i = 0; i < 100; i++) {
    const r = await attempt(t, bob(42), 'denied');
    assert.equal(r.adm.kind, 'run');
    assert.equal(r.holdMs, 0);
  }
});

test('known-good credentials run first and are never held or refused', async () => {
  const { t, promoted } = setup();
  await attempt(t, bob(7), 'ok');
  assert.deepEqual(promoted, [7], 'newly known-good: queued work is promoted');
  for (let i = 0; i < 30; i++) await attempt(t, bob(100 + i), 'denied');
  const adm = await t.admit(bob(7));
  assert.equal(adm.kind, 'run');
  assert.equal(adm.kind === 'run' && adm.knownGood, true);
  assert.equal(adm.kind === 'run' && adm.holdFailure, false);
  assert.equal(adm.kind === 'run' && adm.shedAfterMs, 0, 'never shed');
});

test('a known-good success does not reset the count others built up; a new success does', async () => {
  const { t } = setup();
  await attempt(t, bob(7), 'ok');
  for (let i = 0; i < 22; i++) await attempt(t, bob(100 + i), 'denied');
  await attempt(t, bob(7), 'ok');
  assert.equal((await t.admit(bob(999))).kind, 'refuse', 'still cooling off after the owner’s routine login');
});

test('a success of credentials not yet known-good resets the login', async () => {
  const { t } = setup();
  for (let i = 0; i < 4; i++) await attempt(t, bob(100 + i), 'denied');
  await attempt(t, bob(8), 'ok');
  for (let i = 0; i < 5; i++) assert.equal((await attempt(t, bob(200 + i), 'denied')).holdMs, 0);
});

test('a known-good password that now fails stops being known-good', async () => {
  const { t } = setup();
  await attempt(t, bob(7), 'ok');
  await attempt(t, bob(7), 'denied');
  const adm = await t.admit(bob(7));
  assert.equal(adm.kind === 'run' && adm.knownGood, false);
});

test('outcomes that say nothing about the password (outage, timeout, shed) never count', async () => {
  const { t } = setup();
  for (let i = 0; i < 50; i++) assert.equal((await attempt(t, bob(i), 'other')).holdMs, 0);
  assert.equal((await t.admit(bob(1000))).kind, 'run');
});

test('the cool-off ends after its time, then one more wrong password starts the next', async () => {
  const { t, advance } = setup({ cooloffMs: 60_000 });
  for (let i = 0; i < 20; i++) await attempt(t, bob(i), 'denied');
  assert.equal((await t.admit(bob(500))).kind, 'refuse');
  advance(60_001);
  assert.equal((await attempt(t, bob(501), 'denied')).adm.kind, 'run');
  assert.equal((await t.admit(bob(502))).kind, 'refuse');
});

test('failures counted elsewhere start the cool-off at the first refusal they cause', async () => {
  // --workers: each worker's store also takes the failures the others
  // counted, without this throttle seeing them fail. Two workers can each
  // count 3 of 4 before hearing of the other's; then no failure crossed the
  // line here, and the refusal must start the cool-off instead.
  const { t, s, advance, now } = setup({ refuseAfter: 4, cooloffMs: 60_000 });
  for (let i = 0; i < 4; i++) await s.fail('u:bob\0', 100 + i, now());
  assert.equal(t.entered.cooloffs, 0);
  const first = await t.admit(bob(1));
  assert.equal(first.kind === 'refuse' && first.reason, 'login [user=bob] [realm=] has 4 wrong passwords');
  assert.equal(t.entered.cooloffs, 1, 'the refusal started the cool-off');
  const second = await t.admit(bob(2));
  assert.equal(second.kind === 'refuse' && second.reason, 'login [user=bob] [realm=] is cooling off');
  assert.equal(t.entered.cooloffs, 1, 'once');
  // It ends as any cool-off does: one more wrong password starts the next.
  advance(60_001);
  assert.equal((await attempt(t, bob(3), 'denied')).adm.kind, 'run');
  assert.equal((await t.admit(bob(4))).kind, 'refuse');
  assert.equal(t.entered.cooloffs, 2);
});

test('the window: with no attempt for that long, a login starts afresh', async () => {
  const { t, advance } = setup({ windowMs: 600_000, cooloffMs: 60_000 });
  for (let i = 0; i < 20; i++) await attempt(t, bob(i), 'denied');
  advance(59_000);
  assert.equal((await t.admit(bob(600))).kind, 'refuse');
  advance(600_001);
  for (let i = 0; i < 5; i++) assert.equal((await attempt(t, bob(700 + i), 'denied')).holdMs, 0, 'free again');
});

test('with an address: the address and the pair refuse, the login alone only delays', async () => {
  const { t } = setup();
  for (let i = 0; i < 25; i++) await attempt(t, bob(i, '198.51.100.7'), 'denied');
  assert.equal((await t.admit(bob(900, '198.51.100.7'))).kind, 'refuse', 'the attacking address');
  assert.equal((await t.admit({ login: 'carol', realm: '', fp: 901, addr: '198.51.100.7' })).kind, 'refuse', 'any login from it');
  const clean = await t.admit(bob(902, '203.0.113.9'));
  assert.equal(clean.kind, 'run', 'the login from a clean address is still checked');
  assert.equal(clean.kind === 'run' && clean.holdFailure, true, 'but a refusal there is held back');
  const noAddr = await t.admit(bob(903));
  assert.equal(noAddr.kind, 'refuse', 'without an address the login itself refuses');
});

test('a flood of a million distinct logins grows memory by less than 64 MB', async () => {
  // In a process of its own: in this one, what the other tests left on the
  // heap and in malloc's arenas would be counted too. The throttle's tables
  // are counted (the helper measures from before it makes the throttle).
  const out = await new Promise<string>((resolve, reject) =>
    execFile(
      process.execPath,
      ['--expose-gc', path.join(__dirname, '../../helpers/throttle-flood.js')],
      { timeout: 300_000 },
      (err, stdout) => (err ? reject(new Error(`the flood failed: ${err.message}`)) : resolve(stdout)),
    ),
  );
  const { grownMb, tracked } = JSON.parse(out) as { grownMb: number; tracked: number };
  assert.ok(tracked <= 131_072, `${tracked} tracked`);
  assert.ok(grownMb < 64, `RSS grew by ${grownMb.toFixed(1)} MB`);
});

test('a flood of a million distinct wrong passwords for one login keeps a handful of marks', async () => {
  const { t, s, now } = setup({ refuseAfter: 2_000_000, freeFailures: 1_000_000 });
  for (let i = 0; i < 1_000_000; i++) await attempt(t, bob(i), 'denied');
  const [st] = await s.load(['u:bob\0'], now());
  assert.equal(st?.failures, 1_000_000);
  assert.equal(s.size.tracked, 1);
});

test('known-good entries are bounded, and the newest survive', async () => {
  const { t, s, now } = setup({}, { knownGoodMax: 100 });
  for (let i = 0; i < 1000; i++) await attempt(t, { login: `u${i}`, realm: '', fp: i }, 'ok');
  assert.ok(s.size.knownGood <= 128, `${s.size.knownGood} held`);
  assert.equal(await s.isKnownGood(999, now()), true);
  assert.equal(await s.isKnownGood(0, now()), false);
});

test('a store taken over whole (a worker restarted after a crash) decides as the one it came from', async () => {
  const a = setup({ freeFailures: 1, refuseAfter: 3 });
  await attempt(a.t, bob(7), 'ok'); // fp 7 known-good
  for (let i = 0; i < 3; i++) await attempt(a.t, bob(100 + i), 'denied'); // bob cooling off
  // An export goes through JSON, as the IPC message carries it.
  const state = JSON.parse(JSON.stringify(a.s.exportState())) as ReturnType<MemoryStore['exportState']>;

  const b = setup({ freeFailures: 1, refuseAfter: 3 });
  b.advance(a.now() - b.now());
  assert.equal((await b.t.admit(bob(200))).kind, 'run', 'empty: a new guess would be checked');
  assert.equal(b.s.importState(state), true);
  assert.equal((await b.t.admit(bob(201))).kind, 'refuse', 'taken over: the login is cooling off');
  const good = await b.t.admit(bob(7));
  assert.deepEqual([good.kind, good.kind === 'run' && good.knownGood], ['run', true], 'taken over: fp 7 is known-good');
  assert.deepEqual(b.s.size, a.s.size);

  // Tables of another size are refused whole, and the store is left as it was.
  const c = setup({ freeFailures: 1, refuseAfter: 3 }, { trackedMax: 1000 });
  assert.equal(c.s.importState(state), false);
  assert.deepEqual(c.s.size, { knownGood: 0, tracked: 0 });
  assert.equal((await c.t.admit(bob(202))).kind, 'run');
});
