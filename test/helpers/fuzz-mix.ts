// What the two socket fuzzers (the mux door's and the Dovecot door's) share:
// a seeded generator, so a failing run can be replayed with FUZZ_SEED, and
// the loop that runs many clients at once, each drawing random actions.

export interface Rng {
  (): number;
  int(lo: number, hi: number): number;
  pick<T>(xs: readonly T[]): T;
  bytes(n: number): Buffer;
}

/**
 * mulberry32, with helpers. `byte` draws one byte of `bytes(n)`: each fuzzer
 * leans towards the bytes its own framing gives meaning to.
 */
export function makeRng(seed: number, byte: (r: Rng) => number): Rng {
  let a = seed >>> 0;
  const next = (): number => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const r = (() => next()) as Rng;
  r.int = (lo, hi) => lo + Math.floor(next() * (hi - lo + 1));
  r.pick = (xs) => xs[Math.floor(next() * xs.length)]!;
  r.bytes = (n) => {
    const b = Buffer.alloc(n);
    for (let i = 0; i < n; i++) b[i] = byte(r);
    return b;
  };
  return r;
}

export interface MixResult {
  actions: number;
  /** The kinds of action that ran, as each action reported its own. */
  kinds: Set<string>;
  failures: string[];
}

export interface MixOptions {
  clients: number;
  /** Client i is seeded with seed + i. */
  seed: number;
  /** Each client runs at least this many actions... */
  least: number;
  /** ...and goes on until this time (ms since the epoch). */
  until: number;
  /** How the clients' generators draw a byte. */
  byte: (r: Rng) => number;
}

/**
 * Many clients at once, each running random actions; an action returns what
 * went wrong, if anything, and adds its kind to `kinds`. How many run is set
 * by the clients, never by the time alone: how many actions fit in a span
 * depends on the machine (and, with --max-connections, on how long each
 * client waits its turn), so a minimum within a span would be a speed bound.
 */
export async function hostileMix(
  o: MixOptions,
  action: (rng: Rng, kinds: Set<string>) => Promise<string | undefined>,
): Promise<MixResult> {
  let actions = 0;
  const kinds = new Set<string>();
  const failures: string[] = [];
  await Promise.all(
    Array.from({ length: o.clients }, async (_, i) => {
      const rng = makeRng(o.seed + i, o.byte);
      for (let n = 0; n < o.least || Date.now() < o.until; n++) {
        actions++;
        const f = await action(rng, kinds);
        if (f !== undefined) failures.push(f);
      }
    }),
  );
  return { actions, kinds, failures };
}

/** Polls cond every 100 ms; true once it holds, false after timeoutMs. */
export async function waitUntil(cond: () => boolean, timeoutMs: number): Promise<boolean> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    if (cond()) return true;
    if (Date.now() > until) return false;
    await new Promise((r) => setTimeout(r, 100));
  }
}
