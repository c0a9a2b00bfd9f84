import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Limiter } from '../../../src/native/limit';

function deferred(): { promise: Promise<void>; resolve: () => void } {
  let resolve!: () => void;
  const promise = new Promise<void>((r) => (resolve = r));
  return { promise, resolve };
}

test('never runs more than max at once, and serves waiters in order', async () => {
  const l = new Limiter(2);
  let running = 0;
  let peak = 0;
  const order: number[] = [];
  const gates = Array.from({ length: 6 }, deferred);
  const jobs = gates.map((g, i) =>
    l.run(async () => {
      running++;
      peak = Math.max(peak, running);
      order.push(i);
      await g.promise;
      running--;
    }),
  );
  for (const g of gates) {
    await new Promise((r) => setImmediate(r));
    g.resolve();
  }
  await Promise.all(jobs);
  assert.equal(peak, 2);
  assert.deepEqual(order, [0, 1, 2, 3, 4, 5]);
});

test('a waiter whose request was abandoned is skipped, and its slot passes on', async () => {
  const l = new Limiter(1);
  const gate = deferred();
  const first = l.run(() => gate.promise);
  const ac = new AbortController();
  let ran = false;
  const abandoned = l.run(async () => {
    ran = true;
  }, ac.signal);
  const third = l.run(async () => 'third');
  ac.abort();
  gate.resolve();
  await first;
  await assert.rejects(abandoned, /aborted/);
  assert.equal(await third, 'third');
  assert.equal(ran, false);
});

test('a job that throws releases its slot', async () => {
  const l = new Limiter(1);
  await assert.rejects(l.run(async () => Promise.reject(new Error('boom'))), /boom/);
  assert.equal(await l.run(async () => 42), 42);
});
