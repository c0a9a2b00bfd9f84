// Server order and back-off of the ldap_servers failover list. The clock is
// frozen (mocked Date) in every test: back-off ends are compared to the
// millisecond, which real time passing between two calls would blur.
import { afterEach, beforeEach, describe, mock, test } from 'node:test';
import assert from 'node:assert/strict';
import { parseServerUri, type LdapServer } from '../../../../src/backends/ldap/config';
import { ServerPool } from '../../../../src/backends/ldap/pool';

const server = (uri: string): LdapServer => {
  const s = parseServerUri(uri);
  if (typeof s === 'string') throw new Error(s);
  return s;
};

describe('server pool', () => {
  const a = server('ldap://a/');
  const b = server('ldap://b/');
  const c = server('ldap://c/');
  const T0 = 1_700_000_000_000;

  beforeEach(() => mock.timers.enable({ apis: ['Date'], now: T0 }));
  afterEach(() => mock.timers.reset());

  test('tries servers in the configured order while all are healthy', () => {
    assert.deepEqual(new ServerPool([a, b, c]).order(), [a, b, c]);
  });

  test('moves a failed server to the end until its back-off ends', () => {
    const pool = new ServerPool([a, b, c], { backoffBaseMs: 1000 });
    pool.markDown(a, 'test');
    assert.deepEqual(pool.order(T0), [b, c, a]);
    assert.equal(pool.isDown(a, T0 + 999), true);
    assert.deepEqual(pool.order(T0 + 1000), [a, b, c]);
  });

  test('doubles the back-off on each failure, up to the cap', () => {
    const pool = new ServerPool([a, b], { backoffBaseMs: 100, backoffMaxMs: 350 });
    pool.markDown(a, 'x');
    assert.equal(pool.isDown(a, T0 + 99), true);
    assert.equal(pool.isDown(a, T0 + 100), false);
    pool.markDown(a, 'x');
    assert.equal(pool.isDown(a, T0 + 199), true);
    assert.equal(pool.isDown(a, T0 + 200), false);
    pool.markDown(a, 'x'); // 400, capped at 350
    pool.markDown(a, 'x');
    assert.equal(pool.isDown(a, T0 + 349), true);
    assert.equal(pool.isDown(a, T0 + 350), false);
  });

  test('when every server is in back-off, all are still offered, soonest first', () => {
    const pool = new ServerPool([a, b], { backoffBaseMs: 1000 });
    pool.markDown(a, 'x');
    pool.markDown(a, 'x');
    pool.markDown(b, 'x');
    assert.deepEqual(pool.order(), [b, a]);
  });

  test('a server that answers again is healthy at once', () => {
    const pool = new ServerPool([a, b], { backoffBaseMs: 1000 });
    pool.markDown(a, 'x');
    pool.markUp(a);
    assert.deepEqual(pool.order(), [a, b]);
  });
});
