// Run as a process of its own (node --expose-gc) by the throttle's unit test:
// a million distinct logins, each a wrong password, through the throttle with
// the daemon's default bounds. Prints {"grownMb": ..., "tracked": ...}. A
// fresh process, so that what earlier tests left on the heap is not counted.
import pino from 'pino';
import { MemoryStore } from '../../src/auth/throttle/store';
import { DEFAULT_THROTTLE, Throttle } from '../../src/auth/throttle/throttle';

const gc = (globalThis as { gc?: () => void }).gc;
if (gc === undefined) throw new Error('run with --expose-gc');

async function main(): Promise<void> {
  const rss = (): number => {
    gc!();
    return process.memoryUsage().rss;
  };
  // V8 grows its young generation to full size (tens of MB) under any steady
  // allocation, once: the daemon at work is past that. Grow it here first, so
  // that what is measured is the throttle: its tables (allocated when it is
  // made, so counted) and what the flood leaves in them.
  let sink = 0;
  for (let i = 0; i < 3_000_000; i++) sink += { s: `warm-${i}-user@example.org` }.s.length;
  const before = rss();
  const now = 1_000_000;
  const cfg = { ...DEFAULT_THROTTLE };
  const store = new MemoryStore({
    windowMs: cfg.windowMs,
    knownGoodTtlMs: 86_400_000,
    knownGoodMax: 100_000,
    trackedMax: 100_000,
    penaltyAfter: cfg.freeFailures,
  });
  const throttle = new Throttle(
    cfg,
    store,
    pino({ level: 'silent' }),
    () => undefined,
    () => now,
  );
  for (let i = 0; i < 1_000_000; i++) {
    const a = { login: `spray-${i}-user@example.org`, realm: 'example.org', fp: i };
    const adm = await throttle.admit(a);
    if (adm.kind === 'run') await throttle.settle(a, adm, 'denied', now);
  }
  const grownMb = (rss() - before) / 2 ** 20;
  process.stdout.write(JSON.stringify({ grownMb, tracked: store.size.tracked, warmed: sink > 0 }));
}

void main();
