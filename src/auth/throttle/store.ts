// The throttle's state, behind one interface: which credentials are known to
// be good, and per login, address or (login, address) pair, how many distinct
// wrong passwords it has seen lately and whether it is cooling off.
//
// MemoryStore keeps it in this process, bounded in entries and in time. A
// store shared by several mail hosts implements the same interface, which is
// why every method returns a promise.

/**
 * What the throttle tracks for one key. (The store also keeps 32-bit marks of
 * the most recent wrong passwords, to count a repeat once.)
 */
export interface Tracked {
  /** Distinct wrong passwords within the window (a repeat counts once). */
  failures: number;
  /** When an attempt was last seen (checked or refused); the window runs from it. */
  lastSeen: number;
  /** Until when attempts are refused without asking the mechanism; 0 when not cooling off. */
  cooloffUntil: number;
}

/** What admitting an attempt needs to know. */
export interface AdmissionState {
  knownGood: boolean;
  /** The keys' states (empty when knownGood: they are not needed then). */
  states: Array<Tracked | undefined>;
}

export interface ThrottleStore {
  /**
   * isKnownGood, then load when it is not: one call, so that a store shared
   * over the network answers both in one round trip.
   */
  admission(fp: number, keys: readonly string[], now: number): Promise<AdmissionState>;
  isKnownGood(fp: number, now: number): Promise<boolean>;
  /** Marks fp known-good (again); true when it was not. */
  addKnownGood(fp: number, now: number): Promise<boolean>;
  removeKnownGood(fp: number): Promise<void>;
  /** The state of each key; undefined for a key with none, or whose window has passed. */
  load(keys: readonly string[], now: number): Promise<Array<Tracked | undefined>>;
  /**
   * A wrong password (marked fp) for key: counts it unless it repeats a
   * recent one. Returns the failures counted before and the state after.
   */
  fail(key: string, fp: number, now: number): Promise<{ before: number; after: Tracked }>;
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
  /** Known-good marks held at most (rounded up to a power of two). */
  knownGoodMax: number;
  /** Keys tracked at most (rounded up to a power of two). */
  trackedMax: number;
  /** Failures past which a key is worth a "leaves" line when it expires. */
  penaltyAfter: number;
}

/** 32-bit FNV-1a of a string's UTF-16 units, seeded: two seeds give a 64-bit identity. */
function fnv(s: string, seed: number): number {
  let h = seed >>> 0;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h;
}

const PROBES = 8;

/** A typed array's bytes, base64 (for the IPC message that carries a store's state). */
function base64Of(a: Uint8Array | Uint32Array): string {
  return Buffer.from(a.buffer, a.byteOffset, a.byteLength).toString('base64');
}

export interface KeyTableState {
  capacity: number;
  used: number;
  /** h1, h2, failures, seen, cooloff, marks, nmarks: each array's bytes. */
  arrays: string[];
  names: Array<[number, string]>;
}

export interface GoodTableState {
  capacity: number;
  size: number;
  fps: string;
  until: string;
}

/**
 * A MemoryStore's whole state, as JSON: what a worker the primary restarts
 * after a crash takes over from a live one (--workers). Times are seconds
 * since the epoch, which comes along.
 */
export interface MemoryState {
  epoch: number | undefined;
  keys: KeyTableState;
  good: GoodTableState;
}

/** The first power of two at or above n (at least 2 * PROBES). */
function tableSize(n: number): number {
  let c = PROBES * 2;
  while (c < n) c *= 2;
  return c;
}

/**
 * The per-key state in typed arrays of a fixed size, allocated once: no
 * garbage per attempt and no growth, so a flood of a million distinct logins
 * or passwords costs what the table costs (about 60 bytes a slot) and not a
 * byte more. A key is identified by a 64-bit hash of its text; it lives in
 * one of PROBES slots after its hash, and a new key takes the least recently
 * seen of them, so state that keeps being touched (a login under attack)
 * survives a spray of new keys. Key texts are kept only for keys in a
 * penalty, which the log must name when they leave it.
 */
class KeyTable {
  readonly capacity: number;
  private readonly mask: number;
  private readonly h1: Uint32Array;
  private readonly h2: Uint32Array;
  readonly failures: Uint32Array;
  readonly seen: Uint32Array;
  readonly cooloff: Uint32Array;
  private readonly marks: Uint32Array;
  private readonly nmarks: Uint8Array;
  /** Slot -> key text, for slots whose key is in a penalty. */
  readonly names = new Map<number, string>();
  used = 0;

  constructor(max: number) {
    this.capacity = tableSize(max);
    this.mask = this.capacity - 1;
    this.h1 = new Uint32Array(this.capacity);
    this.h2 = new Uint32Array(this.capacity);
    this.failures = new Uint32Array(this.capacity);
    this.seen = new Uint32Array(this.capacity);
    this.cooloff = new Uint32Array(this.capacity);
    this.marks = new Uint32Array(this.capacity * WRONG_MARKS);
    this.nmarks = new Uint8Array(this.capacity);
  }

  private ids(key: string): [number, number] {
    // 0 marks an empty slot.
    return [fnv(key, 0x811c9dc5) || 1, fnv(key, 0x6b43a9b5) || 1];
  }

  /** The key's slot, or -1. */
  find(key: string): number {
    const [a, b] = this.ids(key);
    for (let i = 0; i < PROBES; i++) {
      const slot = (a + i) & this.mask;
      if (this.h1[slot] === a && this.h2[slot] === b) return slot;
    }
    return -1;
  }

  /** The key's slot, made if needed (evicting the least recently seen of its candidates). */
  make(key: string, now: number): number {
    const [a, b] = this.ids(key);
    let victim = -1;
    for (let i = 0; i < PROBES; i++) {
      const slot = (a + i) & this.mask;
      if (this.h1[slot] === a && this.h2[slot] === b) return slot;
      if (this.h1[slot] === 0) {
        if (victim < 0 || this.h1[victim] !== 0) victim = slot;
      } else if (victim < 0 || (this.h1[victim] !== 0 && (this.seen[slot] ?? 0) < (this.seen[victim] ?? 0))) {
        victim = slot;
      }
    }
    this.free(victim);
    this.used++;
    this.h1[victim] = a;
    this.h2[victim] = b;
    this.seen[victim] = now;
    return victim;
  }

  free(slot: number): void {
    if (this.h1[slot] === 0) return;
    this.h1[slot] = 0;
    this.h2[slot] = 0;
    this.failures[slot] = 0;
    this.cooloff[slot] = 0;
    this.nmarks[slot] = 0;
    this.names.delete(slot);
    this.used--;
  }

  occupied(slot: number): boolean {
    return this.h1[slot] !== 0;
  }

  /** The whole table, for a worker that starts after a crash (--workers). */
  export(): KeyTableState {
    return {
      capacity: this.capacity,
      used: this.used,
      arrays: this.arrays().map(base64Of),
      names: [...this.names],
    };
  }

  private arrays(): Array<Uint8Array | Uint32Array> {
    return [this.h1, this.h2, this.failures, this.seen, this.cooloff, this.marks, this.nmarks];
  }

  /** Whether an exported table has this one's size, array by array. */
  fits(st: KeyTableState): boolean {
    const mine = this.arrays();
    return (
      st.capacity === this.capacity &&
      st.arrays.length === mine.length &&
      st.arrays.every((a, i) => Buffer.byteLength(a, 'base64') === mine[i]?.byteLength)
    );
  }

  /** Takes over an exported table that fits. */
  import(st: KeyTableState): void {
    const mine = this.arrays();
    st.arrays.forEach((a, i) => new Uint8Array((mine[i] as Uint8Array).buffer).set(Buffer.from(a, 'base64')));
    this.names.clear();
    for (const [slot, name] of st.names) this.names.set(slot, name);
    this.used = st.used;
  }

  marksHeld(slot: number): number {
    return this.nmarks[slot] ?? 0;
  }

  /** Adds a mark; false if the slot already holds it (a repeat). */
  mark(slot: number, mark: number): boolean {
    const base = slot * WRONG_MARKS;
    const n = this.nmarks[slot] ?? 0;
    for (let i = 0; i < n; i++) if (this.marks[base + i] === mark) return false;
    if (n < WRONG_MARKS) {
      this.marks[base + n] = mark;
      this.nmarks[slot] = n + 1;
    } else {
      this.marks.copyWithin(base, base + 1, base + WRONG_MARKS);
      this.marks[base + WRONG_MARKS - 1] = mark;
    }
    return true;
  }
}

/**
 * fp -> expiry in fixed tables too: 32-bit marks are their own hash. Expired
 * or empty slots are 0.
 */
class GoodTable {
  private readonly mask: number;
  private readonly fps: Uint32Array;
  private readonly until: Uint32Array;
  size = 0;

  constructor(max: number) {
    const capacity = tableSize(max);
    this.mask = capacity - 1;
    this.fps = new Uint32Array(capacity);
    this.until = new Uint32Array(capacity);
  }

  private slot(fp: number): number {
    for (let i = 0; i < PROBES; i++) {
      const s = (fp + i) & this.mask;
      if (this.until[s] !== 0 && this.fps[s] === fp) return s;
    }
    return -1;
  }

  get(fp: number): number | undefined {
    const s = this.slot(fp);
    return s < 0 ? undefined : this.until[s];
  }

  export(): GoodTableState {
    return { capacity: this.fps.length, size: this.size, fps: base64Of(this.fps), until: base64Of(this.until) };
  }

  fits(st: GoodTableState): boolean {
    return (
      st.capacity === this.fps.length &&
      Buffer.byteLength(st.fps, 'base64') === this.fps.byteLength &&
      Buffer.byteLength(st.until, 'base64') === this.until.byteLength
    );
  }

  import(st: GoodTableState): void {
    new Uint8Array(this.fps.buffer).set(Buffer.from(st.fps, 'base64'));
    new Uint8Array(this.until.buffer).set(Buffer.from(st.until, 'base64'));
    this.size = st.size;
  }

  set(fp: number, until: number): void {
    let s = this.slot(fp);
    if (s < 0) {
      // An empty slot, else the one expiring first (the least recently good).
      for (let i = 0; i < PROBES; i++) {
        const c = (fp + i) & this.mask;
        if (s < 0 || (this.until[s] !== 0 && (this.until[c] === 0 || (this.until[c] ?? 0) < (this.until[s] ?? 0)))) s = c;
      }
      if (this.until[s] === 0) this.size++;
    }
    this.fps[s] = fp;
    this.until[s] = until;
  }

  delete(fp: number): void {
    const s = this.slot(fp);
    if (s < 0) return;
    this.until[s] = 0;
    this.size--;
  }

  /** Drops what expired by t. */
  expire(t: number): void {
    for (let s = 0; s < this.until.length; s++) {
      const u = this.until[s] ?? 0;
      if (u !== 0 && u <= t) {
        this.until[s] = 0;
        this.size--;
      }
    }
  }
}

/**
 * In-process state in fixed tables (KeyTable, GoodTable): bounded memory
 * whatever the flood; attackers cannot grow the known-good set, which only
 * successes fill.
 */
export class MemoryStore implements ThrottleStore {
  private readonly good: GoodTable;
  private readonly keys: KeyTable;
  private epoch: number | undefined;

  constructor(private readonly opts: MemoryStoreOptions) {
    this.good = new GoodTable(opts.knownGoodMax);
    this.keys = new KeyTable(opts.trackedMax);
  }

  get size(): { knownGood: number; tracked: number } {
    return { knownGood: this.good.size, tracked: this.keys.used };
  }

  /** Everything this store holds (--workers: for a worker restarted after a crash). */
  exportState(): MemoryState {
    return { epoch: this.epoch, keys: this.keys.export(), good: this.good.export() };
  }

  /**
   * Takes over another store's state, made with the same options: all or
   * nothing (false, and this store unchanged, if the sizes differ).
   */
  importState(st: MemoryState): boolean {
    if (!this.keys.fits(st.keys) || !this.good.fits(st.good)) return false;
    this.keys.import(st.keys);
    this.good.import(st.good);
    this.epoch = st.epoch;
    return true;
  }

  /** ms -> whole seconds since the first time seen (rounded up: deadlines never come early). */
  private sec(ms: number): number {
    this.epoch ??= ms - 1000;
    return Math.max(1, Math.ceil((ms - this.epoch) / 1000));
  }

  private ms(sec: number): number {
    return sec === 0 ? 0 : (this.epoch ?? 0) + sec * 1000;
  }

  private view(slot: number): Tracked {
    const k = this.keys;
    return {
      failures: k.failures[slot] ?? 0,
      lastSeen: this.ms(k.seen[slot] ?? 0),
      cooloffUntil: this.ms(k.cooloff[slot] ?? 0),
    };
  }

  async admission(fp: number, keys: readonly string[], now: number): Promise<AdmissionState> {
    if (this.knownGood(fp, now)) return { knownGood: true, states: [] };
    return { knownGood: false, states: this.loadNow(keys, now) };
  }

  async isKnownGood(fp: number, now: number): Promise<boolean> {
    return this.knownGood(fp, now);
  }

  private knownGood(fp: number, now: number): boolean {
    const until = this.good.get(fp);
    if (until === undefined) return false;
    if (until <= this.sec(now)) {
      this.good.delete(fp);
      return false;
    }
    return true;
  }

  async addKnownGood(fp: number, now: number): Promise<boolean> {
    const t = this.sec(now);
    const until = this.good.get(fp);
    this.good.set(fp, t + Math.ceil(this.opts.knownGoodTtlMs / 1000));
    return until === undefined || until <= t;
  }

  async removeKnownGood(fp: number): Promise<void> {
    this.good.delete(fp);
  }

  private expired(slot: number, now: number): boolean {
    const k = this.keys;
    return this.ms(k.cooloff[slot] ?? 0) <= now && now - this.ms(k.seen[slot] ?? 0) > this.opts.windowMs;
  }

  /** The key's live slot, or -1 (an expired one is freed). */
  private live(key: string, now: number): number {
    const slot = this.keys.find(key);
    if (slot < 0) return -1;
    if (this.expired(slot, now)) {
      this.keys.free(slot);
      return -1;
    }
    return slot;
  }

  async load(keys: readonly string[], now: number): Promise<Array<Tracked | undefined>> {
    return this.loadNow(keys, now);
  }

  private loadNow(keys: readonly string[], now: number): Array<Tracked | undefined> {
    return keys.map((key) => {
      const slot = this.live(key, now);
      return slot < 0 ? undefined : this.view(slot);
    });
  }

  async fail(key: string, fp: number, now: number): Promise<{ before: number; after: Tracked }> {
    let slot = this.live(key, now);
    if (slot < 0) slot = this.keys.make(key, this.sec(now));
    const k = this.keys;
    const before = k.failures[slot] ?? 0;
    if (k.mark(slot, fp >>> 0)) k.failures[slot] = before + 1;
    k.seen[slot] = this.sec(now);
    if ((k.failures[slot] ?? 0) > this.opts.penaltyAfter) k.names.set(slot, key);
    return { before, after: this.view(slot) };
  }

  async touch(key: string, now: number): Promise<void> {
    const slot = this.live(key, now);
    if (slot >= 0) this.keys.seen[slot] = this.sec(now);
  }

  async setCooloff(key: string, until: number, failures?: number): Promise<void> {
    const slot = this.keys.find(key);
    if (slot < 0) return;
    this.keys.cooloff[slot] = until === 0 ? 0 : this.sec(until);
    if (failures !== undefined) this.keys.failures[slot] = failures;
  }

  async clear(keys: readonly string[]): Promise<Array<Tracked | undefined>> {
    return keys.map((key) => {
      const slot = this.keys.find(key);
      if (slot < 0) return undefined;
      const was = this.view(slot);
      this.keys.free(slot);
      return was;
    });
  }

  /** Until when fp is known-good here (ms), or undefined. */
  goodUntil(fp: number, now: number): number | undefined {
    const until = this.good.get(fp);
    return until === undefined || until <= this.sec(now) ? undefined : this.ms(until);
  }

  /**
   * Takes a key's counts as a shared store holds them (see redis-store.ts):
   * undefined forgets the key. The wrong-password marks stay this process's.
   */
  adopt(key: string, st: Tracked | undefined, now: number): void {
    if (st === undefined) {
      const slot = this.keys.find(key);
      if (slot >= 0) this.keys.free(slot);
      return;
    }
    const k = this.keys;
    const slot = k.make(key, this.sec(st.lastSeen > 0 ? st.lastSeen : now));
    k.failures[slot] = st.failures;
    k.seen[slot] = this.sec(st.lastSeen > 0 ? st.lastSeen : now);
    k.cooloff[slot] = st.cooloffUntil === 0 ? 0 : this.sec(st.cooloffUntil);
    if (st.failures > this.opts.penaltyAfter) k.names.set(slot, key);
  }

  async sweep(now: number): Promise<Array<{ key: string; state: Tracked }>> {
    const gone: Array<{ key: string; state: Tracked }> = [];
    const k = this.keys;
    for (let slot = 0; slot < k.capacity; slot++) {
      if (!k.occupied(slot) || !this.expired(slot, now)) continue;
      const name = k.names.get(slot);
      if (name !== undefined && (k.failures[slot] ?? 0) > this.opts.penaltyAfter)
        gone.push({ key: name, state: this.view(slot) });
      k.free(slot);
    }
    this.good.expire(this.sec(now));
    return gone;
  }
}
