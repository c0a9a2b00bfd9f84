import { test } from 'node:test';
import assert from 'node:assert/strict';
import { CredentialCache, DEFAULT_ENTRIES } from '../../../src/auth/cache';

const pw = (s: string): Buffer => Buffer.from(s);

function clock(start = 1_000_000): { now: () => number; advance: (ms: number) => void } {
  let t = start;
  return { now: () => t, advance: (ms) => (t += ms) };
}

test('hits only for the same login, realm, service and password', () => {
  const c = new CredentialCache({ ttlMs: 60_000, mode: 'normal' });
  c.commit('bob', 'ex.org', 'smtp', pw('right'));
  assert.equal(c.lookup('bob', 'ex.org', 'smtp', pw('right')), true);
  assert.equal(c.lookup('bob', 'ex.org', 'smtp', pw('wrong')), false);
  assert.equal(c.lookup('bob', 'ex.org', 'imap', pw('right')), false);
  assert.equal(c.lookup('bob', '', 'smtp', pw('right')), false);
  assert.equal(c.lookup('alice', 'ex.org', 'smtp', pw('right')), false);
});

test('field boundaries are part of the key ("ab"+"c" differs from "a"+"bc")', () => {
  const c = new CredentialCache({ ttlMs: 60_000, mode: 'normal' });
  c.commit('ab', 'c', 's', pw('p'));
  assert.equal(c.lookup('a', 'bc', 's', pw('p')), false);
});

test('entries expire after the TTL, counted from the commit (a hit does not refresh)', () => {
  const t = clock();
  const c = new CredentialCache({ ttlMs: 5000, mode: 'normal', now: t.now });
  c.commit('bob', '', 'smtp', pw('pw'));
  t.advance(4000);
  assert.equal(c.lookup('bob', '', 'smtp', pw('pw')), true);
  t.advance(1000);
  assert.equal(c.lookup('bob', '', 'smtp', pw('pw')), false);
  assert.equal(c.size, 0, 'an expired entry is dropped when seen');
});

test('a new password replaces the entry; the old one no longer hits', () => {
  const c = new CredentialCache({ ttlMs: 60_000, mode: 'normal' });
  c.commit('bob', '', 'smtp', pw('old'));
  c.commit('bob', '', 'smtp', pw('new'));
  assert.equal(c.lookup('bob', '', 'smtp', pw('old')), false);
  assert.equal(c.lookup('bob', '', 'smtp', pw('new')), true);
  assert.equal(c.size, 1);
});

test('-s bounds the number of entries, evicting the oldest commit first', () => {
  const c = new CredentialCache({ ttlMs: 60_000, sizeKb: 1, mode: 'normal' });
  assert.equal(c.maxEntries, 10); // 1024 / 96
  for (let i = 0; i < 25; i++) c.commit(`u${i}`, '', 's', pw('p'));
  assert.equal(c.size, 10);
  assert.equal(c.lookup('u14', '', 's', pw('p')), false);
  assert.equal(c.lookup('u15', '', 's', pw('p')), true);
  assert.equal(c.lookup('u24', '', 's', pw('p')), true);
});

test('re-committing an identity makes it the youngest for eviction', () => {
  const c = new CredentialCache({ ttlMs: 60_000, sizeKb: 1, mode: 'normal' });
  for (let i = 0; i < 10; i++) c.commit(`u${i}`, '', 's', pw('p'));
  c.commit('u0', '', 's', pw('p'));
  c.commit('u10', '', 's', pw('p'));
  assert.equal(c.lookup('u0', '', 's', pw('p')), true);
  assert.equal(c.lookup('u1', '', 's', pw('p')), false);
});

test('without -s it holds as many entries as Cyrus’s default table', () => {
  assert.equal(new CredentialCache({ ttlMs: 1, mode: 'normal' }).maxEntries, DEFAULT_ENTRIES);
  assert.equal(DEFAULT_ENTRIES, 10266);
});

test('two caches never agree on a MAC (the key is random per process)', () => {
  const a = new CredentialCache({ ttlMs: 60_000, mode: 'normal' });
  const b = new CredentialCache({ ttlMs: 60_000, mode: 'normal' });
  const mac = (c: CredentialCache): Buffer =>
    (c as unknown as { mac(id: string, p: Buffer): Buffer }).mac('bob\0\0smtp', pw('pw'));
  assert.notDeepEqual(mac(a), mac(b));
  assert.equal(mac(a).length, 32);
});

test('forget drops the identity', () => {
  const c = new CredentialCache({ ttlMs: 60_000, mode: 'outage' });
  c.commit('bob', '', 'smtp', pw('pw'));
  c.forget('bob', '', 'smtp');
  assert.equal(c.lookup('bob', '', 'smtp', pw('pw')), false);
});

test('changes replicate between caches that share a key (worker processes)', () => {
  const key = Buffer.alloc(32, 7);
  const a = new CredentialCache({ ttlMs: 60_000, mode: 'normal', key, onChange: (op) => b.apply(op) });
  const b = new CredentialCache({ ttlMs: 60_000, mode: 'normal', key });
  a.commit('bob', '', 'smtp', pw('pw'));
  assert.equal(b.lookup('bob', '', 'smtp', pw('pw')), true);
  assert.equal(b.lookup('bob', '', 'smtp', pw('other')), false);
  a.forget('bob', '', 'smtp');
  assert.equal(b.lookup('bob', '', 'smtp', pw('pw')), false);
});
