import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { maskStateUri, parseStateUri, StateUriError } from '../../../src/state/uri';
import { parseArgs } from '../../../src/config/options';

describe('--state URIs', () => {
  test('redis:// with a user, a password, a port and a database', () => {
    const t = parseStateUri('redis://mail:s3cr%40t@redis.example.org:6380/2');
    assert.deepEqual(
      { kind: t.kind, host: t.host, port: t.port, db: t.db, username: t.username, password: t.password },
      { kind: 'tcp', host: 'redis.example.org', port: 6380, db: 2, username: 'mail', password: 's3cr@t' },
    );
    assert.equal(t.display, 'redis://mail:***@redis.example.org:6380/2');
  });

  test('defaults: port 6379, database 0, no credentials', () => {
    const t = parseStateUri('redis://10.0.0.5');
    assert.equal(t.port, 6379);
    assert.equal(t.db, 0);
    assert.equal(t.password, undefined);
  });

  test('a bare password, as redis-cli reads redis://secret@host', () => {
    const t = parseStateUri('redis://secret@h:1/0');
    assert.equal(t.password, 'secret');
    assert.equal(t.username, undefined);
    assert.equal(t.display, 'redis://***@h:1/0');
  });

  test('rediss:// is TLS; an IPv6 address in brackets', () => {
    const t = parseStateUri('rediss://:pw@[::1]:6390/1');
    assert.equal(t.kind, 'tls');
    assert.equal(t.host, '::1');
    assert.equal(t.port, 6390);
  });

  test('UNIX sockets: unix:// with a password and a database, or a bare path', () => {
    const u = parseStateUri('unix://:pw@/run/redis/redis-server.sock?db=3');
    assert.deepEqual([u.kind, u.path, u.db, u.password], ['unix', '/run/redis/redis-server.sock', 3, 'pw']);
    assert.equal(u.display, 'unix://:***@/run/redis/redis-server.sock?db=3');
    const p = parseStateUri('/run/redis/redis-server.sock');
    assert.deepEqual([p.kind, p.path, p.db], ['unix', '/run/redis/redis-server.sock', 0]);
  });

  test('errors name the URI with its password masked, and the fix', () => {
    for (const bad of [
      'http://:pw@h/0',
      'redis://:pw@h:99999/0',
      'redis://:pw@h/x',
      'redis://:pw@h/0?tls=1',
      'unix://:pw@relative.sock',
      'h:6379',
    ]) {
      assert.throws(
        () => parseStateUri(bad),
        (err: Error) => {
          assert.ok(err instanceof StateUriError, bad);
          assert.ok(!err.message.includes(':pw@'), `${bad}: ${err.message}`);
          return true;
        },
      );
    }
  });

  test('maskStateUri hides the password of anything URI-shaped', () => {
    assert.equal(maskStateUri('redis://u:p@h:1/0'), 'redis://u:***@h:1/0');
    assert.equal(maskStateUri('rediss://:p@h'), 'rediss://:***@h');
    assert.equal(maskStateUri('redis://h:1/0'), 'redis://h:1/0');
  });
});

describe('--state flags', () => {
  const base = ['-a', 'shadow'];
  const err = (argv: string[]): string => {
    const r = parseArgs([...base, ...argv]);
    assert.equal(r.kind, 'exit', argv.join(' '));
    return r.kind === 'exit' ? (r.stderr ?? '') : '';
  };

  test('--state needs --state-key, and says how to make one', () => {
    assert.match(err(['--state', 'redis://h/0']), /--state needs --state-key FILE.*head -c 32 \/dev\/urandom/);
  });

  test('TLS files only with rediss://, a client certificate only with its key', () => {
    assert.match(
      err(['--state', 'redis://:pw@h/0', '--state-key', '/k', '--state-tls-ca', '/ca']),
      /--state-tls-ca: only for a rediss:\/\/ .*redis:\/\/:\*\*\*@h\/0/,
    );
    assert.match(err(['--state', 'rediss://h/0', '--state-key', '/k', '--state-tls-cert', '/c']), /go together/);
    assert.match(err(['--state-tls-ca', '/ca']), /only with --state/);
    // A key without a store: most likely --state was forgotten.
    assert.match(err(['--state-key', '/k']), /^saslauthd-ts: --state-key: only with --state/);
    assert.match(err(['--state-key', '/k', '--state-cache']), /^saslauthd-ts: --state-key, --state-cache: only with --state/);
  });

  test('--state-cache needs -c; --state needs the throttle or the cache', () => {
    assert.match(err(['--state', 'redis://h/0', '--state-key', '/k', '--state-cache']), /needs -c/);
    assert.match(err(['--state', 'redis://h/0', '--state-key', '/k', '--throttle', 'off']), /--throttle off leaves none/);
  });

  test('defaults: prefix saslauthd-ts:, a 50 ms deadline, the cache not shared', () => {
    const r = parseArgs([...base, '--state', 'redis://h/0', '--state-key', '/k']);
    assert.equal(r.kind, 'run');
    if (r.kind !== 'run') return;
    assert.equal(r.options.state?.prefix, 'saslauthd-ts:');
    assert.equal(r.options.state?.timeoutMs, 50);
    assert.equal(r.options.state?.shareCache, false);
    assert.equal(r.options.stateKeyFile, '/k');
  });
});
