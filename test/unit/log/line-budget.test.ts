// Lines a flood repeats are bounded per kind and summarised.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import pino from 'pino';
import { LineBudget } from '../../../src/log/line-budget';

function capture(): { log: pino.Logger; lines: () => Array<{ msg: string; level: number }> } {
  const out: string[] = [];
  const log = pino({ level: 'info' }, { write: (l: string) => void out.push(l) });
  return { log, lines: () => out.map((l) => JSON.parse(l) as { msg: string; level: number }) };
}

test('each kind gets its lines an interval; the rest are counted and summarised at its level', () => {
  const c = capture();
  const b = new LineBudget(c.log, 3, 60_000);
  for (let i = 0; i < 1000; i++)
    b.line(
      'warn',
      'request not received within the read timeout',
      { i },
      'request not received within the read timeout; closing connection',
    );
  for (let i = 0; i < 2; i++)
    b.line('info', 'client closed before the request was complete', {}, 'client closed before the request was complete');
  assert.equal(c.lines().length, 5);
  b.flush();
  const summary = c.lines().at(-1)!;
  assert.equal(summary.msg, '997 more "request not received within the read timeout" in the last 60 s, not logged one by one');
  assert.equal(summary.level, 40);
  assert.equal(c.lines().length, 6, 'no summary for a kind within its budget');
});

test('a new interval starts with a fresh budget', () => {
  const c = capture();
  const b = new LineBudget(c.log, 2, 60_000);
  for (let i = 0; i < 5; i++) b.line('info', 'k', {}, 'm');
  b.flush();
  for (let i = 0; i < 5; i++) b.line('info', 'k', {}, 'm');
  assert.equal(c.lines().filter((l) => l.msg === 'm').length, 4);
});
