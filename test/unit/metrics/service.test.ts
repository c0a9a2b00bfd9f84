// How ServiceMetrics labels requests: by the one mechanism (-a NAME), or,
// with chains and routes, by the mechanism that answered and the route.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Registry } from '../../../src/metrics/registry';
import { ServiceMetrics } from '../../../src/metrics/service';
import { statusLine } from '../../../src/metrics/status';

async function counts(m: ServiceMetrics): Promise<Map<string, number>> {
  const fam = (await m.registry.snapshot(false)).find((f) => f.name === 'saslauthd_requests_total');
  return new Map((fam?.series ?? []).flatMap((s) => ('value' in s && s.value > 0 ? [[s.labels, s.value]] : [])));
}

test('one mechanism: every request under its name, whatever answered it', async () => {
  const m = new ServiceMetrics('shadow', true, new Registry());
  m.request('ok', 1, 'ignored', 'ignored');
  m.request('ok', 0);
  m.request('refused', 1);
  m.protocolError('oversize');
  assert.deepEqual(
    await counts(m),
    new Map([
      ['mech="shadow",result="ok"', 2],
      ['mech="shadow",result="refused"', 1],
      ['mech="shadow",result="protocol_error"', 1],
    ]),
  );
});

test('routes: by the mechanism that answered and the route; none when no mechanism was asked', async () => {
  const m = new ServiceMetrics('routes', true, new Registry(), 'routes');
  m.request('ok', 1, 'ldap', 'ldap.test');
  m.request('ok', 1, 'ldap', 'ldap.test');
  m.request('ok', 1, 'ldap', '*.corp.test');
  m.request('denied', 1, 'shadow', '-');
  m.request('ok', 0, undefined, 'ldap.test'); // a cache hit
  m.request('refused', 1, undefined, '-'); // the throttle
  m.request('denied', 1, undefined, '(none)'); // no route
  m.request('unavailable', 0, undefined, undefined); // an internal error before any route
  m.protocolError('null_login');
  m.protocolError('incomplete');
  assert.deepEqual(
    await counts(m),
    new Map([
      ['mech="none",result="protocol_error"', 2],
      ['mech="ldap",route="ldap.test",result="ok"', 2],
      ['mech="ldap",route="*.corp.test",result="ok"', 1],
      ['mech="shadow",route="-",result="denied"', 1],
      ['mech="none",route="ldap.test",result="ok"', 1],
      ['mech="none",route="-",result="refused"', 1],
      ['mech="none",route="(none)",result="denied"', 1],
      ['mech="none",route="(none)",result="unavailable"', 1],
    ]),
  );
  assert.deepEqual(m.totals(), { ok: 4, denied: 2, unavailable: 1, timeout: 0, shed: 0, refused: 1, protocol_error: 2 });
  // A protocol error is counted once, not once per answerer.
  const fam = (await m.registry.snapshot(false)).find((f) => f.name === 'saslauthd_requests_total');
  assert.equal(fam?.series.filter((s) => s.labels.includes('protocol_error')).length, 1);
  assert.equal(
    statusLine('routes', await m.registry.snapshot(false)),
    'serving: 8 requests, 4 failed, 1 unavailable; mechanism routes',
  );
});

test('a chain: by the mechanism that answered, without a route label', async () => {
  const m = new ServiceMetrics('shadow,ldap', false, new Registry(), 'chain');
  m.request('ok', 1, 'ldap', undefined);
  m.request('denied', 1, 'shadow', undefined);
  m.request('refused', 1, undefined, undefined);
  assert.deepEqual(
    await counts(m),
    new Map([
      ['mech="ldap",result="ok"', 1],
      ['mech="shadow",result="denied"', 1],
      ['mech="none",result="refused"', 1],
    ]),
  );
  const durations = (await m.registry.snapshot(false)).find((f) => f.name === 'saslauthd_request_duration_seconds');
  assert.ok(durations?.series.some((s) => s.labels === 'mech="ldap",result="ok"' && 'count' in s && s.count === 1));
});
