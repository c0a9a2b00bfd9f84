// What counting costs on the hottest path, without sockets or noise from the
// rest of the machine: the authenticator answering cache hits from a fake
// listener, with and without metrics, median of 9 runs of a million each.
// Run: npm run build && node dist/test/bench/metrics-hot.js
import pino from 'pino';
import { Authenticator } from '../../src/auth/authenticator';
import { CredentialCache } from '../../src/auth/cache';
import type { Backend } from '../../src/backends/backend';
import { ServiceMetrics } from '../../src/metrics/service';
import type { NativeListener } from '../../src/native/binding';
import { MuxExchange } from '../../src/server/mux-exchange';

const fp = Buffer.alloc(32, 7);
const listener = { reply: () => true, password: () => undefined } as unknown as NativeListener;
const backend: Backend = { name: 'shadow', refusalText: 'NO', authenticate: () => Promise.resolve({ ok: true, text: 'OK' }) };
const log = pino({ level: 'info' }, { write: () => undefined });

function authenticator(metrics: ServiceMetrics | undefined): Authenticator {
  const cache = new CredentialCache({ ttlMs: 3_600_000, mode: 'normal' });
  cache.commit(CredentialCache.id('alice', '', 'smtp'), fp);
  return new Authenticator({ backend, concatRealm: false, timeoutMs: 1000, log, cache, metrics });
}

/** ns per cache hit. */
function run(a: Authenticator, n: number): number {
  const t = process.hrtime.bigint();
  for (let i = 0; i < n; i++) a.handle(new MuxExchange(listener, i, 'alice', 'smtp', '', undefined, fp));
  return Number(process.hrtime.bigint() - t) / n;
}

const off = authenticator(undefined);
const on = authenticator(new ServiceMetrics('shadow', true));
for (let i = 0; i < 2; i++) {
  run(off, 200_000);
  run(on, 200_000);
}
const without: number[] = [];
const withMetrics: number[] = [];
for (let i = 0; i < 9; i++) {
  without.push(run(off, 1_000_000));
  withMetrics.push(run(on, 1_000_000));
}
const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? 0;
console.log(
  `authenticator, cache hit: ${median(without).toFixed(0)} ns without metrics, ${median(withMetrics).toFixed(0)} ns with ` +
    `(+${(median(withMetrics) - median(without)).toFixed(0)} ns per request)`,
);
