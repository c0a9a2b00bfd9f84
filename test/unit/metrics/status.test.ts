// The status line systemctl shows, from the service's counters.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Registry } from '../../../src/metrics/registry';
import { ServiceMetrics } from '../../../src/metrics/service';
import { statusLine } from '../../../src/metrics/status';

test('counts requests, failures and outages, and names each server up or down', async () => {
  const m = new ServiceMetrics('ldap', false);
  for (let i = 0; i < 5; i++) m.request('ok', 1);
  m.request('denied', 1);
  m.request('refused', 1);
  m.request('unavailable', 1);
  m.request('timeout', 1);
  m.protocolError('null_login'); // a health probe: not a request here
  m.attach({
    listener: () => ({ connections: 0, inFlight: 0 }),
    pool: () => ({ threads: 1, running: 0, queuedHigh: 0, queuedNormal: 0, oldestNormalWaitMs: 0, pending: 0 }),
    backend: {
      name: 'ldap',
      refusalText: 'NO',
      authenticate: () => Promise.reject(new Error('not called')),
      servers: () => [
        { name: 'ldap://a/', up: true },
        { name: 'ldap://b/', up: false },
      ],
    },
  });
  assert.equal(
    statusLine('ldap', await m.registry.snapshot(false)),
    'serving: 9 requests, 4 failed, 2 unavailable; ldap ldap://a/ up, ldap://b/ down',
  );
});

test('a mechanism without servers is named; one request is singular', async () => {
  const m = new ServiceMetrics('shadow', true, new Registry());
  m.request('ok', 1);
  assert.equal(
    statusLine('shadow', await m.registry.snapshot(false)),
    'serving: 1 request, 0 failed, 0 unavailable; mechanism shadow',
  );
});
