// The addon's hashing pool (src/native/pool.cc): one thread per usable CPU,
// two queues in front (known-good work first), a deadline after which a
// queued job never runs, and a shedding bound for ordinary work.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import os from 'node:os';
import { native } from '../../../src/native/binding';

// Test vectors made with `mkpasswd -m yescrypt|sha512crypt pool-pw`.
const YESCRYPT = '$y$j9T$T9mVsPFATXuOORImKzL3v0$wFhUrti1bBtGhZMU6KCVzgcGJ71pVJoYtRB0ac8aK24';
const SHA512 = '$6$wUgg7p4Os2l7sEwI$G.aCD7uBvFujqZPI0370vrRSalT6GdB3WbJg2Y9vUxWMuzhbG9Ah8QDqqxOkizRVHJxN/DdE9Gkum9hfdMO7k/';
const pw = (s: string): Buffer => Buffer.from(s);

test('one hashing thread per usable CPU', () => {
  assert.equal(native.hashThreads, os.availableParallelism());
});

test('a queue several times deeper than the pool answers every job, right or wrong', async () => {
  const jobs = Array.from({ length: native.hashThreads * 8 }, (_, i) =>
    native.cryptVerify(pw(i % 2 === 0 ? 'pool-pw' : 'pool-pX'), SHA512),
  );
  const results = await Promise.all(jobs);
  assert.deepEqual(
    results,
    results.map((_, i) => i % 2 === 0),
  );
});

test('a job still queued at its deadline is never run, and says so', async () => {
  // Every thread busy with a yescrypt hash (tens of ms): the job behind them
  // is past its 0 ms deadline by the time a thread is free.
  const busy = Array.from({ length: native.hashThreads }, () => native.cryptVerify(pw('pool-pw'), YESCRYPT));
  const late = native.cryptVerify(pw('pool-pw'), SHA512, 0);
  await assert.rejects(late, (err: NodeJS.ErrnoException) => err.code === 'ETIMEDOUT');
  // A generous deadline still runs; the busy ones were unaffected.
  assert.equal(await native.cryptVerify(pw('pool-pw'), SHA512, 60_000), true);
  assert.deepEqual(await Promise.all(busy), Array(native.hashThreads).fill(true));
});

test('known-good work overtakes ordinary work already queued', async () => {
  // Keep every thread busy, queue ordinary work behind, then one known-good job.
  const order: string[] = [];
  const busy = Array.from({ length: native.hashThreads }, () => native.cryptVerify(pw('pool-pw'), YESCRYPT));
  const ordinary = Array.from({ length: native.hashThreads * 4 }, (_, i) =>
    native.cryptVerify(pw('pool-pw'), YESCRYPT, 60_000, false, 1, 0).then(() => order.push(`n${i}`)),
  );
  const good = native.cryptVerify(pw('pool-pw'), YESCRYPT, 60_000, true, 2, 0).then(() => order.push('good'));
  await Promise.all([...busy, ...ordinary, good]);
  assert.ok(order.indexOf('good') < native.hashThreads, `known-good ran among the first: ${order.join(' ')}`);
});

test('queued ordinary work for credentials that turn known-good is promoted', async () => {
  const order: string[] = [];
  const busy = Array.from({ length: native.hashThreads }, () => native.cryptVerify(pw('pool-pw'), YESCRYPT));
  const others = Array.from({ length: native.hashThreads * 4 }, (_, i) =>
    native.cryptVerify(pw('pool-pw'), YESCRYPT, 60_000, false, 100 + i, 0).then(() => order.push(`other${i}`)),
  );
  const mine = native.cryptVerify(pw('pool-pw'), YESCRYPT, 60_000, false, 7, 0).then(() => order.push('mine'));
  assert.equal(native.poolPromote('hash', 7), 1);
  await Promise.all([...busy, ...others, mine]);
  assert.ok(order.indexOf('mine') < native.hashThreads, `the promoted job ran among the first: ${order.join(' ')}`);
});

test('ordinary work queued past its shedding bound is never run, and says so; known-good work is never shed', async () => {
  const busy = Array.from({ length: native.hashThreads * 3 }, () =>
    native.cryptVerify(pw('pool-pw'), YESCRYPT, 60_000, true, 3, 0),
  );
  const shed = native.cryptVerify(pw('pool-pw'), SHA512, 60_000, false, 4, 1);
  const kept = native.cryptVerify(pw('pool-pw'), SHA512, 60_000, true, 5, 1);
  await assert.rejects(shed, (err: NodeJS.ErrnoException) => err.code === 'ESHED');
  assert.equal(await kept, true);
  await Promise.all(busy);
});

test('pool statistics count queued and running work', async () => {
  const s = native.poolStats('hash');
  assert.equal(s.threads, native.hashThreads);
  const busy = Array.from({ length: native.hashThreads * 3 }, () => native.cryptVerify(pw('pool-pw'), YESCRYPT));
  const during = native.poolStats('hash');
  assert.ok(during.queuedNormal + during.running >= native.hashThreads * 2, JSON.stringify(during));
  await Promise.all(busy);
  assert.equal(native.poolStats('hash').queuedNormal, 0);
});

test('bad arguments throw at once instead of queueing', () => {
  assert.throws(() => native.cryptVerify(pw('x'), SHA512, 'soon' as unknown as number), TypeError);
  assert.throws(() => native.cryptVerify(pw('x'), SHA512, 1, 'yes' as unknown as boolean), TypeError);
  assert.throws(() => native.poolStats('other' as 'hash'), TypeError);
});
