// RedisStore against a real redis-server: two stores stand for two hosts of
// a fleet. What one writes, the other reads; a repeat is counted once across
// them; Redis going away is a fallback to the mirror, with writes held in a
// bounded backlog and replayed when it returns; every key has a TTL.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import pino from 'pino';
import { MemoryStore } from '../../../src/auth/throttle/store';
import { RedisStore, THROTTLE_SCRIPTS } from '../../../src/auth/throttle/redis-store';
import { SharedState } from '../../../src/state/redis';
import { parseStateUri } from '../../../src/state/uri';
import { startRedis, type RedisServer } from '../../helpers/redis';

const WINDOW = 60_000;
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

interface Host {
  store: RedisStore;
  shared: SharedState;
  memory: MemoryStore;
  log: string[];
}

function host(redis: RedisServer, prefix: string, backlogMax = 100): Host {
  const log: string[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, cb) {
      log.push(chunk.toString());
      cb();
    },
  });
  const memory = new MemoryStore({
    windowMs: WINDOW,
    knownGoodTtlMs: 3_600_000,
    knownGoodMax: 1000,
    trackedMax: 1000,
    penaltyAfter: 5,
  });
  const shared = new SharedState({
    target: parseStateUri(redis.url()),
    timeoutMs: 50,
    backlogMax,
    log: pino({ level: 'info' }, sink),
    scripts: THROTTLE_SCRIPTS,
    retryMinMs: 20,
    retryMaxMs: 200,
  });
  const store = new RedisStore(memory, shared, {
    prefix,
    namesKey: Buffer.alloc(32, 9),
    windowMs: WINDOW,
    knownGoodTtlMs: 3_600_000,
  });
  shared.start();
  return { store, shared, memory, log };
}

async function untilUp(h: Host): Promise<void> {
  for (let i = 0; i < 200 && !h.shared.up; i++) await sleep(25);
  assert.ok(h.shared.up, `connected:\n${h.log.join('')}`);
}

/** Lets writes sent without waiting reach Redis. */
async function flush(h: Host): Promise<void> {
  await h.shared.read((c) => c.redis.ping());
}

describe('RedisStore with a real Redis', () => {
  let redis: RedisServer;
  let a: Host;
  let b: Host;
  before(async () => {
    redis = await startRedis();
    a = host(redis, 'unit:');
    b = host(redis, 'unit:');
    await untilUp(a);
    await untilUp(b);
  });
  after(async () => {
    a?.shared.close();
    b?.shared.close();
    await redis?.stop();
  });

  test('failures through one host are the other’s; a repeated wrong password counts once across both', async () => {
    const now = Date.now();
    for (const fp of [1, 2, 3]) await a.store.fail('u:alice\0', fp, now);
    await flush(a);
    const seen = await b.store.admission(0xdead, ['u:alice\0'], now);
    assert.equal(seen.knownGood, false);
    assert.equal(seen.states[0]?.failures, 3);
    // fp 2 again, through B: the fleet has seen it.
    await b.store.fail('u:alice\0', 2, now);
    await flush(b);
    assert.equal((await a.store.admission(0xdead, ['u:alice\0'], now)).states[0]?.failures, 3);
    assert.equal((await a.memory.load(['u:alice\0'], now))[0]?.failures, 3, 'the mirror follows');
  });

  test('a cool-off set by one host refuses on the other; a success on one clears the other’s mirror', async () => {
    const now = Date.now();
    for (let fp = 10; fp < 31; fp++) await a.store.fail('u:bob\0', fp, now);
    await a.store.setCooloff('u:bob\0', now + 30_000);
    await flush(a);
    const st = (await b.store.admission(0xbeef, ['u:bob\0'], now)).states[0];
    assert.equal(st?.failures, 21);
    assert.ok((st?.cooloffUntil ?? 0) >= now + 29_000);
    await a.store.clear(['u:bob\0']);
    await flush(a);
    assert.equal((await b.store.admission(0xbeef, ['u:bob\0'], now)).states[0], undefined);
    assert.equal((await b.memory.load(['u:bob\0'], now))[0], undefined);
  });

  test('known-good through one host is known-good on the other, and a mark the host holds outlives Redis losing it', async () => {
    const now = Date.now();
    await a.store.addKnownGood(0x1234abcd, now);
    await flush(a);
    assert.equal((await b.store.admission(0x1234abcd, ['u:carol\0'], now)).knownGood, true);
    await redis.client().flushdb();
    assert.equal((await b.store.admission(0x1234abcd, ['u:carol\0'], now)).knownGood, true, 'B adopted it');
    await a.store.removeKnownGood(0x1234abcd);
    await flush(a);
    assert.equal(await redis.client().exists('unit:g:1234abcd'), 0);
  });

  test('every key the store writes has a TTL, and no name holds the login', async () => {
    const now = Date.now();
    await a.store.fail('u:dave\0', 5, now);
    await a.store.fail('a:192.0.2.7', 5, now);
    await a.store.fail('p:192.0.2.7\0dave\0', 5, now);
    await a.store.touch('u:dave\0', now);
    await a.store.setCooloff('a:192.0.2.7', now + 5_000);
    await a.store.addKnownGood(77, now);
    await flush(a);
    const keys = await redis.keys('unit:');
    assert.ok(keys.length >= 4);
    const c = redis.client();
    for (const k of keys) {
      const ttl = await c.pttl(k);
      assert.ok(ttl > 0, `${k} has a TTL (${ttl})`);
      assert.ok(!/dave|192\.0\.2\.7/.test(k), k);
    }
  });

  test('Redis refusing operations (OOM at maxmemory) is counted and logged once, not an outage', async () => {
    const h = host(redis, 'unit:');
    const admin = redis.client();
    try {
      await untilUp(h);
      await admin.config('SET', 'maxmemory-policy', 'noeviction');
      await admin.config('SET', 'maxmemory', '1');
      const now = Date.now();
      for (let fp = 1; fp <= 5; fp++) await h.store.fail('u:frank\0', fp, now);
      await flush(h);
      const st = h.shared.stats();
      assert.ok(st.errors >= 5, `errors counted: ${st.errors}`);
      assert.equal(h.shared.up, true, 'Redis answers: still in use');
      assert.equal((await h.memory.load(['u:frank\0'], now))[0]?.failures, 5, 'the mirror counted them');
      const lines = h.log.filter((l) => /refused an operation/.test(l));
      assert.equal(lines.length, 1, h.log.join(''));
      assert.match(lines[0] ?? '', /OOM.*maxmemory/);
    } finally {
      await admin.config('SET', 'maxmemory', '0');
      h.shared.close();
    }
  });

  test('Redis away: reads fall back to the mirror at once, writes wait (bounded) and are replayed when it returns', async () => {
    const small = host(redis, 'unit:', 3);
    try {
      await untilUp(small);
      const now = Date.now();
      await redis.kill();
      for (let i = 0; i < 50 && small.shared.up; i++) await sleep(20);
      assert.equal(small.shared.up, false);
      const before = small.shared.stats();
      const st = await small.store.admission(0x42, ['u:erin\0'], now);
      assert.equal(st.states[0], undefined);
      for (let fp = 1; fp <= 5; fp++) await small.store.fail('u:erin\0', fp, now);
      assert.equal((await small.store.admission(0x42, ['u:erin\0'], now)).states[0]?.failures, 5, 'the mirror counts on');
      const during = small.shared.stats();
      assert.equal(during.fallbacks - before.fallbacks, 2);
      assert.equal(during.timeouts, before.timeouts, 'no read waited for its deadline: the store was known to be away');
      assert.equal(during.backlog, 3);
      assert.equal(during.dropped, 2, 'past the bound, dropped and counted');
      assert.equal(small.log.filter((l) => /unavailable|cannot connect/.test(l)).length, 1, small.log.join(''));

      await redis.restart();
      for (let i = 0; i < 200 && !small.shared.up; i++) await sleep(25);
      assert.ok(small.shared.up, 'back without a restart');
      await flush(small);
      const after = small.shared.stats();
      assert.equal(after.replayed, 3);
      assert.equal(after.backlog, 0);
      assert.equal((await b.store.load(['u:erin\0'], now))[0]?.failures, 3, 'the replayed failures reached the fleet');
      assert.ok(
        small.log.some((l) => /available again after .* 3 writes replayed, 2 dropped/.test(l)),
        small.log.join(''),
      );
    } finally {
      small.shared.close();
      if (!redis.running()) await redis.restart();
    }
  });
});
