// The --routes file: its syntax, the errors (with line and column) and the
// matcher's order (exact, longest suffix, "*"; "-" for no realm).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { formatRouteIssue, parseRoutes, RouteTable } from '../../../src/config/routes';

const KNOWN = ['shadow', 'ldap', 'pam', 'rimap'];

test('a routes file parses into realms, chains, options and realm joins', () => {
  const r = parseRoutes(
    [
      '# system accounts',
      '-            shadow',
      'ldap.test    ldap:/etc/ldap.conf +r   # virtual',
      '*.corp.test  ldap:/etc/corp.conf',
      'imap.test    rimap:imaps://127.0.0.1:993',
      '*            shadow ldap:/etc/ldap.conf -r',
      '',
    ].join('\n'),
    KNOWN,
  );
  assert.deepEqual(r.issues, []);
  assert.deepEqual(
    r.routes.map((x) => [x.name, x.chain.map((m) => [m.mech, m.option]), x.join, x.line]),
    [
      ['-', [['shadow', undefined]], undefined, 2],
      ['ldap.test', [['ldap', '/etc/ldap.conf']], true, 3],
      ['*.corp.test', [['ldap', '/etc/corp.conf']], undefined, 4],
      ['imap.test', [['rimap', 'imaps://127.0.0.1:993']], undefined, 5],
      [
        '*',
        [
          ['shadow', undefined],
          ['ldap', '/etc/ldap.conf'],
        ],
        false,
        6,
      ],
    ],
  );
});

test('an unknown mechanism is reported at its line and column', () => {
  const r = parseRoutes('-  shadow\nexample.org  shadow  kerberos5\n', KNOWN);
  assert.equal(r.issues.length, 1);
  assert.equal(
    formatRouteIssue('/etc/routes', r.issues[0]!),
    "/etc/routes:2:22: unknown mechanism 'kerberos5' (available: shadow, ldap, pam, rimap)",
  );
});

test('a realm routed twice is an error at the second line, naming the first', () => {
  const r = parseRoutes('example.org shadow\nEXAMPLE.org pam\n', KNOWN);
  assert.equal(r.issues.length, 1);
  assert.deepEqual([r.issues[0]!.line, r.issues[0]!.column], [2, 1]);
  assert.match(r.issues[0]!.message, /routed twice \(first on line 1\)/);
});

test('a mechanism after rimap can never be asked and is an error', () => {
  const r = parseRoutes('* rimap:127.0.0.1 shadow\n', KNOWN);
  assert.equal(r.issues.length, 1);
  assert.deepEqual([r.issues[0]!.line, r.issues[0]!.column], [1, 19]);
  assert.match(r.issues[0]!.message, /can never be asked: rimap cannot tell an unknown login/);
});

test('a realm with no mechanism, a misplaced wildcard and an option on shadow are syntax errors', () => {
  const r = parseRoutes('lonely.test\nfoo.*.test shadow\nx.test shadow:/etc/x\n', KNOWN);
  assert.deepEqual(
    r.issues.map((i) => [i.line, i.column]),
    [
      [1, 12],
      [2, 1],
      [3, 14],
    ],
  );
  assert.match(r.issues[0]!.message, /has no mechanism/);
  assert.match(r.issues[1]!.message, /'\*' is allowed only/);
  assert.match(r.issues[2]!.message, /shadow takes no option/);
});

test('rimap without a server is an error naming the fix', () => {
  const r = parseRoutes('imap.test rimap\n', KNOWN);
  assert.equal(r.issues.length, 1);
  assert.match(r.issues[0]!.message, /rimap: no hostname specified/);
});

test('an empty routes file is an error: every request would be refused', () => {
  const r = parseRoutes('# nothing\n\n', KNOWN);
  assert.equal(r.issues.length, 1);
  assert.match(r.issues[0]!.message, /no routes/);
});

test('matching is exact first, then the longest suffix, then *, and - for no realm', () => {
  const r = parseRoutes(
    ['-  shadow', 'a.corp.test pam', '*.corp.test ldap:/a', '*.b.corp.test ldap:/b', '* ldap:/c'].join('\n'),
    KNOWN,
  );
  assert.deepEqual(r.issues, []);
  const t = new RouteTable(r.routes);
  const name = (realm: string): string | undefined => t.match(realm)?.name;
  assert.equal(name(''), '-');
  assert.equal(name('a.corp.test'), 'a.corp.test');
  assert.equal(name('A.Corp.Test'), 'a.corp.test');
  assert.equal(name('x.corp.test'), '*.corp.test');
  assert.equal(name('x.b.corp.test'), '*.b.corp.test');
  assert.equal(name('corp.test'), '*');
  assert.equal(name('elsewhere.org'), '*');
});

test('without * an unknown realm has no route, and without - an empty realm goes to *', () => {
  const onlyExact = new RouteTable(parseRoutes('ldap.test ldap\n', KNOWN).routes);
  assert.equal(onlyExact.match('other.test'), undefined);
  assert.equal(onlyExact.match(''), undefined);
  const star = new RouteTable(parseRoutes('* shadow\n', KNOWN).routes);
  assert.equal(star.match('')?.name, '*');
});
