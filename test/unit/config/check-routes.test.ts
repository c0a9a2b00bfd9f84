// saslauthd-ts --check --routes FILE: errors with line and column, the
// option files each route names, and the effective table.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { type CheckRun, checkRun } from '../../helpers/check-run';

describe('--check --routes', () => {
  let dir: string;
  const file = (name: string, text: string): string => {
    const p = path.join(dir, name);
    fs.writeFileSync(p, text);
    return p;
  };
  const check = (argv: string[]): CheckRun => checkRun(['-m', dir, ...argv], { shadowFile: '/etc/shadow' });

  before(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'check-routes-'));
  });
  after(() => fs.rmSync(dir, { recursive: true, force: true }));

  test('a valid file prints the effective table, most specific first, with what each route joins', () => {
    const conf = file('ldap.conf', 'ldap_servers: ldap://127.0.0.1:1389/\nldap_search_base: dc=example,dc=org\n');
    const routes = file('ok.routes', `* shadow\n- shadow\nldap.test ldap:${conf} +r\n*.corp.test ldap:${conf}\n`);
    const r = check(['--routes', routes]);
    assert.equal(r.err.includes('error:'), false, r.err);
    assert.equal(r.code, 0, r.err);
    const rows = r.out.split('\n').filter((l) => l.startsWith('route '));
    assert.deepEqual(
      rows.map((l) => l.replace(/\s+/g, ' ')),
      [
        'route - shadow (mechanisms see login)',
        `route ldap.test ldap:${conf} +r (mechanisms see login@realm)`,
        `route *.corp.test ldap:${conf} (mechanisms see login)`,
        'route * shadow (mechanisms see login)',
      ],
    );
  });

  test('syntax errors, unknown mechanisms, duplicate realms and unreadable option files are reported with line and column', () => {
    const routes = file(
      'bad.routes',
      ['a.test shadow', 'a.test pam', 'b.test sasldb', 'c.test ldap:/nonexistent/ldap.conf', 'x*.test shadow'].join('\n'),
    );
    const r = check(['--routes', routes]);
    assert.equal(r.code, 1);
    assert.match(r.err, new RegExp(`${routes}:2:1: realm 'a.test' is routed twice \\(first on line 1\\)`));
    assert.match(r.err, new RegExp(`${routes}:3:8: unknown mechanism 'sasldb'`));
    assert.match(r.err, new RegExp(`${routes}:4:8: ldap:/nonexistent/ldap.conf: cannot read /nonexistent/ldap.conf: ENOENT`));
    assert.match(r.err, new RegExp(`${routes}:5:1: 'x\\*.test': '\\*' is allowed only`));
  });

  test('a route that can never be asked is an error', () => {
    const routes = file('never.routes', '* rimap:127.0.0.1 shadow\n');
    const r = check(['--routes', routes]);
    assert.equal(r.code, 1);
    assert.match(r.err, /never.routes:1:19: 'shadow' can never be asked/);
  });

  test('an unreadable routes file is an error naming it', () => {
    const r = check(['--routes', path.join(dir, 'missing')]);
    assert.equal(r.code, 1);
    assert.match(r.err, /missing: cannot read: ENOENT/);
  });
});

describe('--check -a with a chain', () => {
  test('prints the chain and checks each mechanism, the option going to the one that takes it', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'check-chain-'));
    try {
      const conf = path.join(dir, 'ldap.conf');
      fs.writeFileSync(conf, 'ldap_servers: ldap://127.0.0.1:1389/\nldap_search_base: dc=example,dc=org\n');
      const r = checkRun(['-m', dir, '-a', 'shadow,ldap', '-O', conf], { shadowFile: '/etc/shadow' });
      assert.equal(r.code, 0, r.err);
      assert.match(r.out, /mechanism chain \(-a\) +shadow,ldap/);
      assert.match(r.out, new RegExp(`ldap config file +${conf}`));
      assert.doesNotMatch(r.err, /shadow ignores the mechanism option/);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
