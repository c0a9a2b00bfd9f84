// Server order and back-off of the ldap_servers failover list.
import { describe, test } from 'node:test';
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

  test('tries servers in the configured order while all are healthy', () => {
    assert.deepEqual(new ServerPool([a, b, c]).order(), [a, b, c]);
  });

  test('moves a failed server to the end until its back-off ends', () => {
    const pool = new ServerPool([a, b, c], { backoffBaseMs: 1000 });
    pool.markDown(a, 'test');
    const now = Date.now();
    assert.deepEqual(pool.order(now), [b, c, a]);
    assert.equal(pool.isDown(a, now), true);
    assert.deepEqual(pool.order(now + 1001), [a, b, c]);
  });

  test('doubles the back-off on each failure, up to the cap', () => {
    const pool = new ServerPool([a, b], { backoffBaseMs: 100, backoffMaxMs: 350 });
    const now = Date.now();
    pool.markDown(a, 'x');
    assert.equal(pool.isDown(a, now + 150), false);
    pool.markDown(a, 'x');
    assert.equal(pool.isDown(a, now + 150), true);
    pool.markDown(a, 'x');
    pool.markDown(a, 'x');
    assert.equal(pool.isDown(a, Date.now() + 340), true);
    assert.equal(pool.isDown(a, Date.now() + 360), false);
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
