// How long the listener lets a request go unanswered before its backstop
// closes it (test/integration/decide-backstop.test.ts has the listener's
// side): never before every deadline a request can legitimately wait out.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseArgs, type DaemonOptions } from '../../../src/config/options';
import { decideBackstopMs } from '../../../src/cli/saslauthd';

function options(argv: string[]): DaemonOptions {
  const r = parseArgs(argv);
  assert.equal(r.kind, 'run', argv.join(' '));
  return r.kind === 'run' ? r.options : (undefined as never);
}

test('with the defaults: past --auth-timeout and every hold of the throttle, by 30 s', () => {
  const o = options(['-a', 'shadow']);
  const t = o.throttle!;
  assert.equal(decideBackstopMs(o), o.authTimeoutMs + t.maxDelayMs + t.shedAfterMs + t.shedDelayMs + 30_000);
});

test('--throttle off: --auth-timeout and 30 s; --state adds its deadline four times', () => {
  assert.equal(decideBackstopMs(options(['-a', 'shadow', '--throttle', 'off', '--auth-timeout', '7'])), 37_000);
  const o = options(['-a', 'shadow', '--state', 'redis://h/0', '--state-key', '/k', '--state-timeout', '200']);
  assert.equal(decideBackstopMs(o) - decideBackstopMs(options(['-a', 'shadow'])), 800);
});
