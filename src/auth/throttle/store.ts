// The throttle's state, behind one interface: which credentials are known to
// be good, and per login, address or (login, address) pair, how many distinct
// wrong passwords it has seen lately and whether it is cooling off.
//
// MemoryStore keeps it in this process, bounded in entries and in time. A
// store shared by several mail hosts implements the same interface, which is
// why every method returns a promise.

/** What the throttle tracks for one key. */
export interface Tracked {
  /** Distinct wrong passwords within the window (a repeat counts once). */
  failures: number;
  /** 32-bit marks of the most recent wrong passwords, newest last. */
  wrong: number[];
  /** When an attempt was last seen (checked or refused); the window runs from it. */
  lastSeen: number;
  /** Until when attempts are refused without asking the mechanism; 0 when not cooling off. */
  cooloffUntil: number;
}

export interface ThrottleStore {
  isKnownGood(fp: number, now: number): Promise<boolean>;
  /** Marks fp known-good (again); true when it was not. */
  addKnownGood(fp: number, now: number): Promise<boolean>;
  removeKnownGood(fp: number): Promise<void>;
  /** The state of each key; undefined for a key with none, or whose window has passed. */
  load(keys: readonly string[], now: number): Promise<Array<Tracked | undefined>>;
  /** A wrong password (marked fp) for key: counts it unless it repeats a recent one. Returns the state after. */
  fail(key: string, fp: number, now: number): Promise<Tracked>;
  /** An attempt refused without the mechanism: keeps the window open. */
  touch(key: string, now: number): Promise<void>;
  /** Start or end a cool-off; ending it leaves failures at the given count. */
  setCooloff(key: string, until: number, failures?: number): Promise<void>;
  /** Forget keys (a success); returns what they held. */
  clear(keys: readonly string[]): Promise<Array<Tracked | undefined>>;
  /** Drop state whose window has passed; returns the keys that were in a penalty or cool-off as they go. */
  sweep(now: number): Promise<Array<{ key: string; state: Tracked }>>;
  /** Entries held, for metrics and tests. */
  readonly size: { knownGood: number; tracked: number };
}

/** How many recent wrong passwords a key remembers, to tell a repeat (a phone with an old password) from a guess. */
export const WRONG_MARKS = 8;

export interface MemoryStoreOptions {
  windowMs: number;
  knownGoodTtlMs: number;
  knownGoodMax: number;
  trackedMax: number;
  /** Failures past which a key is worth a "leaves" line when it expires. */
  penaltyAfter: number;
}

/**
 * In-process state. Both maps evict their least recently touched entry past
 * their bound (a Map iterates in insertion order, and a touch re-inserts), so
 * a flood of a million distinct logins or passwords costs a bounded amount of
 * memory; attackers cannot grow the known-good set, which only successes fill.
 */
export class MemoryStore implements ThrottleStore {
  /** fp -> when it stops being known-good. */
  private readonly good = new Map<number, number>();
  private readonly tracked = new Map<string, Tracked>();

  constructor(private readonly opts: MemoryStoreOptions) {}

  get size(): { knownGood: number; tracked: number } {
    return { knownGood: this.good.size, tracked: this.tracked.size };
  }

  async isKnownGood(fp: number, now: number): Promise<boolean> {
    const until = this.good.get(fp);
    if (until === undefined) return false;
    if (until <= now) {
      this.good.delete(fp);
      return false;
    }
    return true;
  }

  async addKnownGood(fp: number, now: number): Promise<boolean> {
    const until = this.good.get(fp);
    const fresh = until === undefined || until <= now;
    this.good.delete(fp);
    this.good.set(fp, now + this.opts.knownGoodTtlMs);
    while (this.good.size > this.opts.knownGoodMax) this.good.delete(this.good.keys().next().value as number);
    return fresh;
  }

  async removeKnownGood(fp: number): Promise<void> {
    this.good.delete(fp);
  }

  private live(key: string, now: number): Tracked | undefined {
    const t = this.tracked.get(key);
    if (t === undefined) return undefined;
    if (this.expired(t, now)) {
      this.tracked.delete(key);
      return undefined;
    }
    return t;
  }

  private expired(t: Tracked, now: number): boolean {
    return t.cooloffUntil <= now && now - t.lastSeen > this.opts.windowMs;
  }

  private put(key: string, t: Tracked): void {
    this.tracked.delete(key);
    this.tracked.set(key, t);
    while (this.tracked.size > this.opts.trackedMax) this.tracked.delete(this.tracked.keys().next().value as string);
  }

  async load(keys: readonly string[], now: number): Promise<Array<Tracked | undefined>> {
    return keys.map((k) => {
      const t = this.live(k, now);
      return t === undefined ? undefined : { ...t, wrong: [...t.wrong] };
    });
  }

  async fail(key: string, fp: number, now: number): Promise<Tracked> {
    const t = this.live(key, now) ?? { failures: 0, wrong: [], lastSeen: now, cooloffUntil: 0 };
    if (!t.wrong.includes(fp)) {
      t.failures++;
      t.wrong.push(fp);
      if (t.wrong.length > WRONG_MARKS) t.wrong.shift();
    }
    t.lastSeen = now;
    this.put(key, t);
    return { ...t, wrong: [...t.wrong] };
  }

  async touch(key: string, now: number): Promise<void> {
    const t = this.live(key, now);
    if (t === undefined) return;
    t.lastSeen = now;
    this.put(key, t);
  }

  async setCooloff(key: string, until: number, failures?: number): Promise<void> {
    const t = this.tracked.get(key);
    if (t === undefined) return;
    t.cooloffUntil = until;
    if (failures !== undefined) t.failures = failures;
  }

  async clear(keys: readonly string[]): Promise<Array<Tracked | undefined>> {
    return keys.map((k) => {
      const t = this.tracked.get(k);
      this.tracked.delete(k);
      return t;
    });
  }

  async sweep(now: number): Promise<Array<{ key: string; state: Tracked }>> {
    const gone: Array<{ key: string; state: Tracked }> = [];
    for (const [key, t] of this.tracked) {
      if (!this.expired(t, now)) continue;
      this.tracked.delete(key);
      if (t.failures > this.opts.penaltyAfter) gone.push({ key, state: t });
    }
    for (const [fp, until] of this.good) if (until <= now) this.good.delete(fp);
    return gone;
  }
}
