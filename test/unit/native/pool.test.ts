// The addon's hashing pool (src/native/pool.cc): one thread per usable CPU,
// a queue in front, and a deadline after which a queued job never runs.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import os from 'node:os';
import { native } from '../../../src/native/binding';

// Test vectors made with `mkpasswd -m yescrypt|sha512crypt pool-pw`.
const YESCRYPT = '$y$j9T$T9mVsPFATXuOORImKzL3v0$wFhUrti1bBtGhZMU6KCVzgcGJ71pVJoYtRB0ac8aK24';
const SHA512 =
  '$6$wUgg7p4Os2l7sEwI$G.aCD7uBvFujqZPI0370vrRSalT6GdB3WbJg2Y9vUxWMuzhbG9Ah8QDqqxOkizRVHJxN/DdE9Gkum9hfdMO7k/';
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

test('shadowCheck takes the same deadline', async () => {
  const busy = Array.from({ length: native.hashThreads }, () => native.cryptVerify(pw('pool-pw'), YESCRYPT));
  await assert.rejects(native.shadowCheck('root', pw('x'), 0), (err: NodeJS.ErrnoException) => err.code === 'ETIMEDOUT');
  await Promise.all(busy);
});

test('bad arguments throw at once instead of queueing', () => {
  assert.throws(() => native.cryptVerify(pw('x'), SHA512, 'soon' as unknown as number), TypeError);
  assert.throws(() => native.shadowCheck(1 as unknown as string, pw('x')), TypeError);
});
