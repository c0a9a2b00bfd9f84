// --state-cache: the credential cache's entries shared by the fleet through
// Redis, so that a user cached by one host is a cache hit on the others.
// Each entry is the credentials' full fingerprint, HMAC-SHA256 under the
// fleet key: with the key file, whoever reads Redis can test password
// guesses against it as fast as HMAC runs (docs/fleet.md), which is why this
// is a flag of its own and off by default.
//   <prefix>c:<name>  "<created ms>:<fingerprint, base64>", expiring at created + -t
// <name> is an HMAC of (login, realm, service) under the names key, as for
// the throttle's keys: no login in clear.
import crypto from 'node:crypto';
import type { Script, SharedState } from '../state/redis';
import type { CacheShare } from './cache';

export const CACHE_SCRIPTS: Record<string, Script> = {
  // KEYS: entry; ARGV: value, expiry (ms).
  saslauthdCachePut: {
    lua: `
redis.call('SET', KEYS[1], ARGV[1])
redis.call('PEXPIREAT', KEYS[1], ARGV[2])
return 1`,
  },
};

export class RedisCacheShare implements CacheShare {
  constructor(
    private readonly shared: SharedState,
    private readonly opts: { prefix: string; namesKey: Buffer; ttlMs: number },
  ) {}

  private name(id: string): string {
    const h = crypto.createHmac('sha256', this.opts.namesKey).update('c:').update(id, 'latin1').digest('base64url').slice(0, 22);
    return `${this.opts.prefix}c:${h}`;
  }

  put(id: string, mac: Buffer, created: number): void {
    const value = `${created}:${mac.toString('base64')}`;
    const at = created + this.opts.ttlMs;
    this.shared.write({ send: (c) => c.script('saslauthdCachePut', [this.name(id)], [value, at]) });
  }

  drop(id: string): void {
    this.shared.write({ send: (c) => c.redis.del(this.name(id)) });
  }

  async get(id: string): Promise<{ mac: Buffer; created: number } | undefined> {
    const reply = await this.shared.read((c) => c.redis.get(this.name(id)));
    if (typeof reply !== 'string') return undefined;
    const colon = reply.indexOf(':');
    const created = Number(reply.slice(0, colon));
    if (colon < 0 || !Number.isFinite(created)) return undefined;
    return { created, mac: Buffer.from(reply.slice(colon + 1), 'base64') };
  }
}
