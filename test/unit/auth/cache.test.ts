// The credential cache: Cyrus's semantics (positive only, absolute TTL, keyed
// by login, realm and service) over the listener's fingerprints.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { CredentialCache, cyrusEntries } from '../../../src/auth/cache';
import { fingerprint } from '../../helpers/exchange';

const id = (login: string, realm: string, service: string): string => CredentialCache.id(login, realm, service);
const mac = (login: string, realm: string, password: string): Buffer =>
  fingerprint(Buffer.from(login, 'latin1'), Buffer.from(realm, 'latin1'), Buffer.from(password));

function clock(start = 1_000_000): { now: () => number; advance: (ms: number) => void } {
  let t = start;
  return { now: () => t, advance: (ms) => (t += ms) };
}

test('hits only for the same login, realm, service and password', () => {
  const c = new CredentialCache({ ttlMs: 60_000, mode: 'normal' });
  c.commit(id('bob', 'ex.org', 'smtp'), mac('bob', 'ex.org', 'right'));
  assert.equal(c.lookup(id('bob', 'ex.org', 'smtp'), mac('bob', 'ex.org', 'right')), true);
  assert.equal(c.lookup(id('bob', 'ex.org', 'smtp'), mac('bob', 'ex.org', 'wrong')), false);
  assert.equal(c.lookup(id('bob', 'ex.org', 'imap'), mac('bob', 'ex.org', 'right')), false);
  assert.equal(c.lookup(id('bob', '', 'smtp'), mac('bob', '', 'right')), false);
  assert.equal(c.lookup(id('alice', 'ex.org', 'smtp'), mac('alice', 'ex.org', 'right')), false);
});

test('field boundaries are part of the key ("ab"+"c" differs from "a"+"bc")', () => {
  const c = new CredentialCache({ ttlMs: 60_000, mode: 'normal' });
  c.commit(id('ab', 'c', 's'), mac('ab', 'c', 'p'));
  assert.equal(c.lookup(id('a', 'bc', 's'), mac('a', 'bc', 'p')), false);
  assert.notDeepEqual(mac('ab', 'c', 'p'), mac('a', 'bc', 'p'));
});

test('entries expire after the TTL, counted from the commit (a hit does not refresh)', () => {
  const t = clock();
  const c = new CredentialCache({ ttlMs: 5000, mode: 'normal', now: t.now });
  c.commit(id('bob', '', 'smtp'), mac('bob', '', 'pw'));
  t.advance(4000);
  assert.equal(c.lookup(id('bob', '', 'smtp'), mac('bob', '', 'pw')), true);
  t.advance(1000);
  assert.equal(c.lookup(id('bob', '', 'smtp'), mac('bob', '', 'pw')), false);
  assert.equal(c.size, 0, 'an expired entry is dropped when seen');
});

test('a new password replaces the entry; the old one no longer hits', () => {
  const c = new CredentialCache({ ttlMs: 60_000, mode: 'normal' });
  c.commit(id('bob', '', 'smtp'), mac('bob', '', 'old'));
  c.commit(id('bob', '', 'smtp'), mac('bob', '', 'new'));
  assert.equal(c.lookup(id('bob', '', 'smtp'), mac('bob', '', 'old')), false);
  assert.equal(c.lookup(id('bob', '', 'smtp'), mac('bob', '', 'new')), true);
  assert.equal(c.size, 1);
});

test('-s 96 holds what Cyrus’s table holds: 173 slots of 6 buckets', () => {
  // Cyrus cache.c: the first prime number of slots at or above
  // 96*1024 / (96*6) = 170.7 whose buckets hold at least 96 KiB: 173.
  assert.equal(cyrusEntries(96), 173 * 6);
  assert.equal(new CredentialCache({ ttlMs: 1, sizeKb: 96, mode: 'normal' }).maxEntries, 1038);
});

test('without -s it holds as many entries as Cyrus’s default table (1711 slots x 6)', () => {
  assert.equal(new CredentialCache({ ttlMs: 1, mode: 'normal' }).maxEntries, 10266);
});

test('-s bounds the number of entries, evicting the oldest commit first', () => {
  const c = new CredentialCache({ ttlMs: 60_000, sizeKb: 1, mode: 'normal' });
  const n = c.maxEntries;
  for (let i = 0; i < n + 15; i++) c.commit(id(`u${i}`, '', 's'), mac(`u${i}`, '', 'p'));
  assert.equal(c.size, n);
  assert.equal(c.lookup(id('u14', '', 's'), mac('u14', '', 'p')), false);
  assert.equal(c.lookup(id(`u${n + 14}`, '', 's'), mac(`u${n + 14}`, '', 'p')), true);
});

test('re-committing an identity makes it the youngest for eviction', () => {
  const c = new CredentialCache({ ttlMs: 60_000, sizeKb: 1, mode: 'normal' });
  const n = c.maxEntries;
  for (let i = 0; i < n; i++) c.commit(id(`u${i}`, '', 's'), mac(`u${i}`, '', 'p'));
  c.commit(id('u0', '', 's'), mac('u0', '', 'p'));
  c.commit(id('extra', '', 's'), mac('extra', '', 'p'));
  assert.equal(c.lookup(id('u0', '', 's'), mac('u0', '', 'p')), true);
  assert.equal(c.lookup(id('u1', '', 's'), mac('u1', '', 'p')), false);
});

test('forget drops the identity', () => {
  const c = new CredentialCache({ ttlMs: 60_000, mode: 'outage' });
  c.commit(id('bob', '', 'smtp'), mac('bob', '', 'pw'));
  c.forget(id('bob', '', 'smtp'));
  assert.equal(c.lookup(id('bob', '', 'smtp'), mac('bob', '', 'pw')), false);
});

test('changes replicate between caches (worker processes, which share the fingerprint key)', () => {
  const b = new CredentialCache({ ttlMs: 60_000, mode: 'normal' });
  const a = new CredentialCache({ ttlMs: 60_000, mode: 'normal', onChange: (op) => b.apply(op) });
  a.commit(id('bob', '', 'smtp'), mac('bob', '', 'pw'));
  assert.equal(b.lookup(id('bob', '', 'smtp'), mac('bob', '', 'pw')), true);
  assert.equal(b.lookup(id('bob', '', 'smtp'), mac('bob', '', 'other')), false);
  a.forget(id('bob', '', 'smtp'));
  assert.equal(b.lookup(id('bob', '', 'smtp'), mac('bob', '', 'pw')), false);
});

test('a cache taken over entry by entry (a worker restarted after a crash) answers as the one it came from', () => {
  const c = clock();
  const a = new CredentialCache({ ttlMs: 60_000, mode: 'normal', now: c.now });
  a.commit(id('bob', '', 'smtp'), mac('bob', '', 'pw1'));
  c.advance(30_000);
  a.commit(id('ann', '', 'imap'), mac('ann', '', 'pw2'));
  const b = new CredentialCache({ ttlMs: 60_000, mode: 'normal', now: c.now });
  for (const op of JSON.parse(JSON.stringify(a.exportEntries())) as ReturnType<CredentialCache['exportEntries']>) b.apply(op);
  assert.equal(b.size, 2);
  assert.equal(b.lookup(id('bob', '', 'smtp'), mac('bob', '', 'pw1')), true);
  assert.equal(b.lookup(id('bob', '', 'smtp'), mac('bob', '', 'wrong')), false);
  // The entry keeps its own commit time: bob's expires first, on the taker as on the giver.
  c.advance(31_000);
  assert.equal(b.lookup(id('bob', '', 'smtp'), mac('bob', '', 'pw1')), false);
  assert.equal(b.lookup(id('ann', '', 'imap'), mac('ann', '', 'pw2')), true);
});
