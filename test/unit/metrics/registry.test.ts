// The metric primitives: the text format Prometheus reads, and the merge of
// several processes' snapshots (--workers).
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { countersOf, labelValue, merge, Registry, render } from '../../../src/metrics/registry';

describe('metrics registry', () => {
  test('renders counters, gauges and cumulative histogram buckets in the text format', async () => {
    const r = new Registry();
    const c = r.counter('x_requests_total', 'Requests.').child({ mech: 'ldap', result: 'ok' });
    c.inc();
    c.inc(2);
    r.gauge('x_open', 'Open.').child().set(4);
    const h = r.histogram('x_seconds', 'Time.', [0.1, 1]).child({ mech: 'ldap' });
    h.observe(0.05);
    h.observe(0.1); // on a bound: that bucket (le is "less or equal")
    h.observe(5);
    assert.equal(
      render(await r.snapshot()),
      [
        '# HELP x_requests_total Requests.',
        '# TYPE x_requests_total counter',
        'x_requests_total{mech="ldap",result="ok"} 3',
        '# HELP x_open Open.',
        '# TYPE x_open gauge',
        'x_open 4',
        '# HELP x_seconds Time.',
        '# TYPE x_seconds histogram',
        'x_seconds_bucket{mech="ldap",le="0.1"} 2',
        'x_seconds_bucket{mech="ldap",le="1"} 2',
        'x_seconds_bucket{mech="ldap",le="+Inf"} 3',
        'x_seconds_sum{mech="ldap"} 5.15',
        'x_seconds_count{mech="ldap"} 3',
        '',
      ].join('\n'),
    );
  });

  test('escapes label values and reads them back', async () => {
    const r = new Registry();
    r.gauge('x_up', 'Up.').child({ server: 'ldap://a"b\\c/\n' }).set(1);
    const [fam] = await r.snapshot();
    const labels = fam?.series[0]?.labels ?? '';
    assert.equal(labels, 'server="ldap://a\\"b\\\\c/\\n"');
    assert.equal(labelValue(labels, 'server'), 'ldap://a"b\\c/\n');
    assert.equal(labelValue(labels, 'mech'), undefined);
  });

  test('the same labels give the same child, so the hot path resolves it once', () => {
    const r = new Registry();
    const f = r.counter('x_total', 'X.');
    assert.equal(f.child({ a: '1' }), f.child({ a: '1' }));
    assert.throws(() => r.counter('x_total', 'again'), /registered twice/);
  });

  test('merges processes: sums counters and histograms, takes max or min where the family says', async () => {
    const snap = async (n: number, up: number): Promise<Awaited<ReturnType<Registry['snapshot']>>> => {
      const r = new Registry();
      r.counter('x_total', 'X.').child({ result: 'ok' }).inc(n);
      r.gauge('x_size', 'Size.', 'max')
        .child()
        .set(n * 10);
      r.gauge('x_up', 'Up.', 'min').child({ server: 's' }).set(up);
      r.histogram('x_seconds', 'T.', [1]).child().observe(n);
      return r.snapshot();
    };
    const text = render(merge([await snap(1, 1), await snap(2, 0)]));
    assert.match(text, /^x_total\{result="ok"\} 3$/m);
    assert.match(text, /^x_size 20$/m);
    assert.match(text, /^x_up\{server="s"\} 0$/m);
    assert.match(text, /^x_seconds_bucket\{le="1"\} 1$/m);
    assert.match(text, /^x_seconds_bucket\{le="\+Inf"\} 2$/m);
    assert.match(text, /^x_seconds_count 2$/m);
    // What an exited process counted is kept (counters, histograms), its gauges are not.
    assert.deepEqual(
      countersOf(await snap(1, 1)).map((f) => f.name),
      ['x_total', 'x_seconds'],
    );
  });

  test('process collectors run only for a scrape, not for the status line', async () => {
    const r = new Registry();
    let service = 0;
    let proc = 0;
    r.onCollect(() => void service++);
    r.onCollect(() => void proc++, 'process');
    await r.snapshot(false);
    await r.snapshot(true);
    assert.deepEqual([service, proc], [2, 1]);
  });
});
