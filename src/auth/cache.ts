// Credential cache (-c, -s KB, -t seconds) with Cyrus's semantics and without
// its flaws. Positive-only, keyed by (login after -r, realm, service), an
// absolute TTL from the last backend-verified success. Unlike Cyrus (an
// unsalted MD5 in a file), an entry is an HMAC-SHA256 of the credentials
// under a random key that exists only in this process's memory, and the
// number of entries is bounded by -s.
import crypto from 'node:crypto';

/** Cyrus's bucket size; -s KB holds as many entries as Cyrus would in KB KiB. */
export const CYRUS_BUCKET_BYTES = 96;
/** Cyrus's default table: 1711 slots x 6 buckets. */
export const DEFAULT_ENTRIES = 1711 * 6;

export type CacheMode = 'normal' | 'outage';

/** A change to replicate to the other worker processes (see server/cluster.ts). */
export type CacheOp =
  | { kind: 'commit'; id: string; mac: string; created: number }
  | { kind: 'forget'; id: string };

export interface CacheOptions {
  ttlMs: number;
  /** -s KB; undefined = Cyrus's default table size. */
  sizeKb?: number | undefined;
  mode: CacheMode;
  now?: () => number;
  /** HMAC key shared by the worker processes; random when omitted. */
  key?: Buffer | undefined;
  /** Called for each local commit/forget, to replicate it. */
  onChange?: ((op: CacheOp) => void) | undefined;
}

interface Entry {
  mac: Buffer;
  created: number;
}

export class CredentialCache {
  readonly maxEntries: number;
  readonly ttlMs: number;
  readonly mode: CacheMode;
  private readonly key: Buffer;
  private readonly entries = new Map<string, Entry>();
  private readonly now: () => number;
  private readonly onChange: ((op: CacheOp) => void) | undefined;

  constructor(opts: CacheOptions) {
    this.ttlMs = opts.ttlMs;
    this.mode = opts.mode;
    this.maxEntries =
      opts.sizeKb === undefined ? DEFAULT_ENTRIES : Math.max(1, Math.floor((opts.sizeKb * 1024) / CYRUS_BUCKET_BYTES));
    this.now = opts.now ?? Date.now;
    this.key = opts.key ?? crypto.randomBytes(32);
    this.onChange = opts.onChange;
  }

  get size(): number {
    return this.entries.size;
  }

  private static id(login: string, realm: string, service: string): string {
    return `${login}\0${realm}\0${service}`;
  }

  private mac(id: string, password: Buffer): Buffer {
    return crypto.createHmac('sha256', this.key).update(id).update('\0').update(password).digest();
  }

  /** An opaque key for these exact credentials (no password in clear). */
  fingerprint(login: string, realm: string, service: string, password: Buffer): string {
    const id = CredentialCache.id(login, realm, service);
    return `${id}\0${this.mac(id, password).toString('base64')}`;
  }

  /** True if these exact credentials succeeded within the TTL. */
  lookup(login: string, realm: string, service: string, password: Buffer): boolean {
    const id = CredentialCache.id(login, realm, service);
    const e = this.entries.get(id);
    if (e === undefined) return false;
    if (e.created <= this.now() - this.ttlMs) {
      this.entries.delete(id);
      return false;
    }
    return crypto.timingSafeEqual(e.mac, this.mac(id, password));
  }

  /** Record a backend-verified success; replaces any entry for the identity. */
  commit(login: string, realm: string, service: string, password: Buffer): void {
    const id = CredentialCache.id(login, realm, service);
    const entry = { mac: this.mac(id, password), created: this.now() };
    this.store(id, entry);
    this.onChange?.({ kind: 'commit', id, mac: entry.mac.toString('base64'), created: entry.created });
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
  forget(login: string, realm: string, service: string): void {
    const id = CredentialCache.id(login, realm, service);
    this.entries.delete(id);
    this.onChange?.({ kind: 'forget', id });
  }

  clear(): void {
    this.entries.clear();
  }
}
