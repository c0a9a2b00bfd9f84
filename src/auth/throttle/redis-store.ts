// The throttle's state shared by a fleet of mail hosts through Redis
// (--state): failure counts, penalties and cool-offs per login, address and
// pair, and known-good marks. An attacker who spreads guesses over the hosts
// is counted once, and a user known-good through one host goes first on all.
//
// Every decision is still made from this process's MemoryStore, kept as a
// mirror: an admission of credentials not known-good here reads the shared
// state (one script, one round trip, under the deadline of state/redis.ts)
// and adopts it into the mirror before deciding; every change is applied to the mirror at once and sent to Redis
// without waiting, and Redis's answer (the shared count after it) is adopted
// when it comes. When Redis is late or away the mirror decides alone, and
// keeps counting, so the fallback is the single host's throttle of before.
//
// In Redis, per key, with a TTL on every key that ends it exactly when the
// local rule would (the later of last attempt + window and the cool-off's
// end; PEXPIREAT, so clocks must agree, as NTP makes them):
//   <prefix>t:<name>  hash f (distinct wrong passwords), s (last attempt, ms),
//                     c (cool-off end, ms, 0 none), m (recent wrong-password marks)
//   <prefix>g:<fp>    known-good mark, for --known-good-ttl after the last success
// <name> is 128 bits of HMAC-SHA256 of the key ("u:login\0realm", ...) under a
// key derived from --state-key: Redis never holds a login or an address in
// clear, and without the key file its names cannot be tested against a list
// of logins. The wrong-password marks are 16 bits of the fingerprint, not the
// 32 kept in memory: enough to tell a repeat from a new guess among 8, too few
// for someone with Redis and the key file to single out a mistyped password.
import crypto from 'node:crypto';
import type { SharedState, SharedStateStats, Script } from '../../state/redis';
import type { AdmissionState, MemoryStore, ThrottleStore, Tracked } from './store';
import { WRONG_MARKS } from './store';

/** Redis-side operations, each atomic. Times are the caller's milliseconds. */
export const THROTTLE_SCRIPTS: Record<string, Script> = {
  // KEYS: good mark, tracked keys...; ARGV: check the mark ('1'/'0').
  // Returns {1} when known-good, else {0, f, s, c, f, s, c, ...}.
  saslauthdRead: {
    lua: `
if ARGV[1] == '1' and redis.call('EXISTS', KEYS[1]) == 1 then return {1} end
local out = {0}
for i = 2, #KEYS do
  local v = redis.call('HMGET', KEYS[i], 'f', 's', 'c')
  out[#out + 1] = v[1]
  out[#out + 1] = v[2]
  out[#out + 1] = v[3]
end
return out`,
  },
  // KEYS: tracked key; ARGV: mark (4 hex digits), now, window, marks kept.
  // A repeat of a remembered mark is not counted. Returns {before, f, s, c}.
  saslauthdFail: {
    lua: `
local k = KEYS[1]
local mark, now, win, keep = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local v = redis.call('HMGET', k, 'f', 's', 'c', 'm')
local f, s, c, m = tonumber(v[1]) or 0, tonumber(v[2]) or 0, tonumber(v[3]) or 0, v[4] or ''
if c <= now and now - s > win then f, c, m = 0, 0, '' end
local before = f
local seen = false
for i = 1, #m, 4 do
  if string.sub(m, i, i + 3) == mark then seen = true break end
end
if not seen then
  f = f + 1
  m = m .. mark
  if #m > keep * 4 then m = string.sub(m, #m - keep * 4 + 1) end
end
if now > s then s = now end
redis.call('HSET', k, 'f', f, 's', s, 'c', c, 'm', m)
redis.call('PEXPIREAT', k, math.max(s + win, c))
return {before, f, s, c}`,
  },
  // KEYS: tracked key; ARGV: now, window. Keeps an existing key's window open.
  saslauthdTouch: {
    lua: `
local k = KEYS[1]
local now, win = tonumber(ARGV[1]), tonumber(ARGV[2])
local v = redis.call('HMGET', k, 's', 'c')
if not v[1] then return 0 end
local s, c = math.max(tonumber(v[1]) or 0, now), tonumber(v[2]) or 0
redis.call('HSET', k, 's', s)
redis.call('PEXPIREAT', k, math.max(s + win, c))
return 1`,
  },
  // KEYS: tracked key; ARGV: cool-off end (0 ends it), failures ('' unchanged), window.
  saslauthdCooloff: {
    lua: `
local k = KEYS[1]
local c, win = tonumber(ARGV[1]), tonumber(ARGV[3])
local s = tonumber(redis.call('HGET', k, 's'))
if not s then return 0 end
redis.call('HSET', k, 'c', c)
if ARGV[2] ~= '' then redis.call('HSET', k, 'f', ARGV[2]) end
redis.call('PEXPIREAT', k, math.max(s + win, c))
return 1`,
  },
  // KEYS: good mark; ARGV: until (ms).
  saslauthdGood: {
    lua: `
redis.call('SET', KEYS[1], '1')
redis.call('PEXPIREAT', KEYS[1], ARGV[1])
return 1`,
  },
};

export interface RedisStoreOptions {
  /** Key prefix (--state-prefix). */
  prefix: string;
  /** Derived from --state-key: names the keys. */
  namesKey: Buffer;
  windowMs: number;
  knownGoodTtlMs: number;
  now?: () => number;
}

/**
 * A known-good mark is re-sent to Redis at most this often while it stays
 * known-good here: a busy user's every login would otherwise write it.
 */
const GOOD_REFRESH_MS = 5 * 60_000;

function num(v: unknown): number {
  const n = typeof v === 'string' ? Number(v) : typeof v === 'number' ? v : NaN;
  return Number.isFinite(n) ? n : 0;
}

export class RedisStore implements ThrottleStore {
  private readonly now: () => number;
  /** name() is an HMAC: remember the last few, as the same logins recur. */
  private readonly names = new Map<string, string>();

  constructor(
    private readonly local: MemoryStore,
    private readonly shared: SharedState,
    private readonly opts: RedisStoreOptions,
  ) {
    this.now = opts.now ?? Date.now;
  }

  get size(): { knownGood: number; tracked: number } {
    return this.local.size;
  }

  /** Redis latency, errors, timeouts and fallbacks, for the metrics endpoint. */
  stats(): SharedStateStats {
    return this.shared.stats();
  }

  /** The Redis key of a throttle key. */
  name(key: string): string {
    let n = this.names.get(key);
    if (n === undefined) {
      n = `${this.opts.prefix}t:${crypto.createHmac('sha256', this.opts.namesKey).update(key, 'latin1').digest('base64url').slice(0, 22)}`;
      if (this.names.size >= 4096) this.names.clear();
      this.names.set(key, n);
    }
    return n;
  }

  goodName(fp: number): string {
    return `${this.opts.prefix}g:${(fp >>> 0).toString(16).padStart(8, '0')}`;
  }

  /** Redis's view of a key, as the local rule reads it (undefined once its window has passed). */
  private tracked(f: unknown, s: unknown, c: unknown, now: number): Tracked | undefined {
    if (f === null || f === undefined) return undefined;
    const st: Tracked = { failures: num(f), lastSeen: num(s), cooloffUntil: num(c) };
    if (st.cooloffUntil <= now && now - st.lastSeen > this.opts.windowMs) return undefined;
    return st;
  }

  async admission(fp: number, keys: readonly string[], now: number): Promise<AdmissionState> {
    // Known-good is the union of both: it only orders work, and a mark this
    // host holds (Redis lost it, or another host removed it) costs nothing.
    // So a returning user known here needs no round trip at all: the hot
    // path of real traffic does not touch Redis.
    if (this.local.goodUntil(fp, now) !== undefined) return { knownGood: true, states: [] };
    const reply = await this.shared.read((c) =>
      c.script('saslauthdRead', [this.goodName(fp), ...keys.map((k) => this.name(k))], ['1']),
    );
    if (!Array.isArray(reply)) return this.local.admission(fp, keys, now);
    if (num(reply[0]) === 1) {
      await this.local.addKnownGood(fp, now);
      return { knownGood: true, states: [] };
    }
    return { knownGood: false, states: this.adoptAll(keys, reply, 1, now) };
  }

  /** Takes Redis's counts into the mirror: they are the fleet's, which the mirror's were only a part of. */
  private adoptAll(keys: readonly string[], reply: unknown[], offset: number, now: number): Array<Tracked | undefined> {
    return keys.map((key, i) => {
      const st = this.tracked(reply[offset + i * 3], reply[offset + i * 3 + 1], reply[offset + i * 3 + 2], now);
      this.local.adopt(key, st, now);
      return st;
    });
  }

  async isKnownGood(fp: number, now: number): Promise<boolean> {
    return (await this.admission(fp, [], now)).knownGood;
  }

  async load(keys: readonly string[], now: number): Promise<Array<Tracked | undefined>> {
    const reply = await this.shared.read((c) =>
      c.script('saslauthdRead', [this.goodName(0), ...keys.map((k) => this.name(k))], ['0']),
    );
    if (!Array.isArray(reply)) return this.local.load(keys, now);
    return this.adoptAll(keys, reply, 1, now);
  }

  async addKnownGood(fp: number, now: number): Promise<boolean> {
    const until = this.local.goodUntil(fp, now);
    const fresh = await this.local.addKnownGood(fp, now);
    if (until === undefined || until - now < this.opts.knownGoodTtlMs - GOOD_REFRESH_MS) {
      const at = now + this.opts.knownGoodTtlMs;
      this.shared.write({ send: (c) => c.script('saslauthdGood', [this.goodName(fp)], [at]) });
    }
    return fresh;
  }

  async removeKnownGood(fp: number): Promise<void> {
    await this.local.removeKnownGood(fp);
    this.shared.write({ send: (c) => c.redis.del(this.goodName(fp)) });
  }

  async fail(key: string, fp: number, now: number): Promise<{ before: number; after: Tracked }> {
    const r = await this.local.fail(key, fp, now);
    const mark = ((fp >>> 0) & 0xffff).toString(16).padStart(4, '0');
    this.shared.write({
      send: (c) => c.script('saslauthdFail', [this.name(key)], [mark, now, this.opts.windowMs, WRONG_MARKS]),
      onReply: (reply) => {
        if (!Array.isArray(reply)) return;
        // The fleet's count after this failure: the mirror follows it.
        this.local.adopt(key, this.tracked(reply[1], reply[2], reply[3], this.now()), this.now());
      },
    });
    return r;
  }

  async touch(key: string, now: number): Promise<void> {
    await this.local.touch(key, now);
    this.shared.write({ send: (c) => c.script('saslauthdTouch', [this.name(key)], [now, this.opts.windowMs]) });
  }

  async setCooloff(key: string, until: number, failures?: number): Promise<void> {
    await this.local.setCooloff(key, until, failures);
    this.shared.write({
      send: (c) =>
        c.script('saslauthdCooloff', [this.name(key)], [until, failures === undefined ? '' : failures, this.opts.windowMs]),
    });
  }

  async clear(keys: readonly string[]): Promise<Array<Tracked | undefined>> {
    const was = await this.local.clear(keys);
    if (keys.length > 0) this.shared.write({ send: (c) => c.redis.del(...keys.map((k) => this.name(k))) });
    return was;
  }

  /** Redis expires its keys itself (TTLs); the mirror is swept as before. */
  sweep(now: number): Promise<Array<{ key: string; state: Tracked }>> {
    return this.local.sweep(now);
  }
}
