// --metrics ADDR: a bare port is loopback, hosts are IP addresses, paths are absolute.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { describeAddress, parseMetricsAddress } from '../../../src/metrics/address';

describe('--metrics address', () => {
  test('a port alone listens on 127.0.0.1, never on every interface', () => {
    assert.deepEqual(parseMetricsAddress('9464'), { kind: 'tcp', host: '127.0.0.1', port: 9464, loopback: true });
  });

  test('host:port, [v6]:port and localhost', () => {
    assert.deepEqual(parseMetricsAddress('127.0.0.2:9464'), { kind: 'tcp', host: '127.0.0.2', port: 9464, loopback: true });
    assert.deepEqual(parseMetricsAddress('[::1]:9464'), { kind: 'tcp', host: '::1', port: 9464, loopback: true });
    assert.deepEqual(parseMetricsAddress('localhost:9464'), { kind: 'tcp', host: '127.0.0.1', port: 9464, loopback: true });
    const any = parseMetricsAddress('0.0.0.0:9464');
    assert.deepEqual(any, { kind: 'tcp', host: '0.0.0.0', port: 9464, loopback: false });
    assert.equal(
      describeAddress(parseMetricsAddress('[::1]:1') as Exclude<ReturnType<typeof parseMetricsAddress>, string>),
      '[::1]:1',
    );
  });

  test('an absolute path is a UNIX socket', () => {
    assert.deepEqual(parseMetricsAddress('/run/saslauthd-ts/metrics.sock'), {
      kind: 'unix',
      path: '/run/saslauthd-ts/metrics.sock',
    });
  });

  test('says what is wrong with a bad address', () => {
    assert.match(parseMetricsAddress('myhost:9464') as string, /host 'myhost', which is not an IP address/);
    assert.match(parseMetricsAddress('127.0.0.1:70000') as string, /port 70000, outside 1-65535/);
    assert.match(parseMetricsAddress('0') as string, /port 0/);
    assert.match(parseMetricsAddress('run/m.sock') as string, /relative path/);
    assert.match(parseMetricsAddress('[1.2.3.4]:80') as string, /not an IPv6 address/);
    assert.match(parseMetricsAddress('') as string, /is empty/);
    assert.match(parseMetricsAddress(`/${'x'.repeat(120)}`) as string, /longer than a UNIX socket path/);
  });
});
