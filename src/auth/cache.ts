// Credential cache (-c, -s KB, -t seconds) with Cyrus's semantics and without
// its flaws. Positive-only, keyed by (login after -r, realm, service), an
// absolute TTL from the last backend-verified success. Unlike Cyrus (an
// unsalted MD5 in a file), an entry is the credentials' fingerprint, an
// HMAC-SHA256 under a random key that exists only in this process's memory
// (computed by the listener, so the password never reaches JavaScript for
// it), and the number of entries is bounded by -s as Cyrus's table is.
import crypto from 'node:crypto';

/** Cyrus's table: slots of 6 buckets of 96 bytes; -s KB gives the next prime number of slots holding KB KiB. */
export const CYRUS_BUCKET_BYTES = 96;
export const CYRUS_BUCKETS_PER_SLOT = 6;
/** Cyrus's default table: 1711 slots x 6 buckets. */
export const DEFAULT_SLOTS = 1711;

export type CacheMode = 'normal' | 'outage';

/** A change to replicate to the other worker processes (see server/cluster.ts). */
export type CacheOp = { kind: 'commit'; id: string; mac: string; created: number } | { kind: 'forget'; id: string };

/**
 * The fleet's copy of the cache (--state-cache, see redis-cache.ts): what
 * this host commits or forgets goes there too, and a local miss may be
 * another host's hit.
 */
export interface CacheShare {
  put(id: string, mac: Buffer, created: number): void;
  drop(id: string): void;
  /** The entry, or undefined (none, or the store did not answer within its deadline). */
  get(id: string): Promise<{ mac: Buffer; created: number } | undefined>;
}

export interface CacheOptions {
  ttlMs: number;
  /** -s KB; undefined = Cyrus's default table size. */
  sizeKb?: number | undefined;
  mode: CacheMode;
  now?: () => number;
  /** Called for each local commit/forget, to replicate it. */
  onChange?: ((op: CacheOp) => void) | undefined;
  share?: CacheShare | undefined;
}

interface Entry {
  mac: Buffer;
  created: number;
}

function isPrime(n: number): boolean {
  if (n < 2) return false;
  for (let d = 2; d * d <= n; d++) if (n % d === 0) return false;
  return true;
}

/**
 * How many entries Cyrus's table holds for -s KB (cache.c
 * cache_set_table_size): slots = the first prime at or above
 * KB*1024 / (96*6), grown until slots*6*96 >= KB*1024; 6 entries a slot.
 */
export function cyrusEntries(sizeKb: number | undefined): number {
  if (sizeKb === undefined) return DEFAULT_SLOTS * CYRUS_BUCKETS_PER_SLOT;
  const bytes = sizeKb * 1024;
  let slots = Math.max(1, Math.floor(bytes / (CYRUS_BUCKET_BYTES * CYRUS_BUCKETS_PER_SLOT)));
  while (!isPrime(slots) || slots * CYRUS_BUCKETS_PER_SLOT * CYRUS_BUCKET_BYTES < bytes) slots++;
  return slots * CYRUS_BUCKETS_PER_SLOT;
}

export class CredentialCache {
  readonly maxEntries: number;
  readonly ttlMs: number;
  readonly mode: CacheMode;
  private readonly entries = new Map<string, Entry>();
  private readonly now: () => number;
  private readonly onChange: ((op: CacheOp) => void) | undefined;
  readonly share: CacheShare | undefined;
  /** When clear() last ran (SIGHUP): the fleet's older entries are not taken either. */
  private clearedAt = 0;

  constructor(opts: CacheOptions) {
    this.share = opts.share;
    this.ttlMs = opts.ttlMs;
    this.mode = opts.mode;
    this.maxEntries = cyrusEntries(opts.sizeKb);
    this.now = opts.now ?? Date.now;
    this.onChange = opts.onChange;
  }

  get size(): number {
    return this.entries.size;
  }

  /** The identity an entry is kept under (Latin-1 fields: distinct bytes stay distinct). */
  static id(login: string, realm: string, service: string): string {
    return `${login}\0${realm}\0${service}`;
  }

  /** True if these exact credentials (their fingerprint) succeeded within the TTL. */
  lookup(id: string, mac: Buffer): boolean {
    const e = this.entries.get(id);
    if (e === undefined) return false;
    if (e.created <= this.now() - this.ttlMs) {
      this.entries.delete(id);
      return false;
    }
    return e.mac.length === mac.length && crypto.timingSafeEqual(e.mac, mac);
  }

  /** Record a backend-verified success; replaces any entry for the identity. */
  commit(id: string, mac: Buffer): void {
    const entry = { mac: Buffer.from(mac), created: this.now() };
    this.store(id, entry);
    this.onChange?.({ kind: 'commit', id, mac: entry.mac.toString('base64'), created: entry.created });
    this.share?.put(id, entry.mac, entry.created);
  }

  /**
   * A local miss asked of the fleet: true if another host committed these
   * exact credentials within the TTL (the entry is then kept here too).
   */
  async lookupShared(id: string, mac: Buffer): Promise<boolean> {
    if (this.share === undefined) return false;
    const e = await this.share.get(id);
    // Entries older than this host's last SIGHUP stay forgotten here, as its own do.
    if (e === undefined || e.created <= this.now() - this.ttlMs || e.created <= this.clearedAt || e.created > this.now() + 60_000)
      return false;
    if (e.mac.length !== mac.length || !crypto.timingSafeEqual(e.mac, mac)) return false;
    this.store(id, { mac: Buffer.from(mac), created: e.created });
    return true;
  }

  /** Every entry as a commit, oldest first: what a worker restarted after a crash takes over (--workers). */
  exportEntries(): CacheOp[] {
    return [...this.entries].map(([id, e]) => ({ kind: 'commit', id, mac: e.mac.toString('base64'), created: e.created }));
  }

  /** Apply a change made by another worker process. */
  apply(op: CacheOp): void {
    if (op.kind === 'commit') this.store(op.id, { mac: Buffer.from(op.mac, 'base64'), created: op.created });
    else this.entries.delete(op.id);
  }

  private store(id: string, entry: Entry): void {
    this.entries.delete(id); // re-insert at the young end of the Map's order
    this.entries.set(id, entry);
    // Map iterates in insertion order, so the first key is the oldest commit.
    while (this.entries.size > this.maxEntries) {
      const oldest = this.entries.keys().next().value as string;
      this.entries.delete(oldest);
    }
  }

  /** The backend refused these credentials: forget the identity. */
  forget(id: string): void {
    this.entries.delete(id);
    this.onChange?.({ kind: 'forget', id });
    this.share?.drop(id);
  }

  clear(): void {
    this.entries.clear();
    this.clearedAt = this.now();
  }
}
