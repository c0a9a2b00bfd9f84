// The command line's rules for chains (-a a,b with -O) and --routes.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseArgs } from '../../../src/config/options';

const run = (argv: string[]) => {
  const r = parseArgs(argv);
  if (r.kind !== 'run') throw new Error(`expected options, got exit ${r.code}: ${r.stderr ?? ''}`);
  return r.options;
};
const failure = (argv: string[]): string => {
  const r = parseArgs(argv);
  assert.equal(r.kind, 'exit');
  return r.kind === 'exit' ? (r.stderr ?? '') : '';
};

test('-a shadow,ldap -O FILE is a chain whose option is the one for ldap', () => {
  const o = run(['-a', 'shadow,ldap', '-O', '/etc/saslauthd.conf']);
  assert.equal(o.mech, 'shadow,ldap');
  assert.equal(o.mechOption, '/etc/saslauthd.conf');
  assert.equal(o.routesFile, undefined);
});

test('a chain of two mechanisms that take an option needs --routes', () => {
  assert.match(failure(['-a', 'ldap,rimap', '-O', 'x']), /ldap and rimap both take an option.*use --routes/);
});

test('a mechanism after rimap in a chain can never be asked', () => {
  assert.match(failure(['-a', 'rimap,shadow', '-O', 'imap.example.org']), /after rimap can never be asked/);
});

test('a mechanism twice in a chain is refused', () => {
  assert.match(failure(['-a', 'shadow,shadow']), /shadow is twice in the chain/);
});

test('--routes together with -a is a startup error', () => {
  assert.match(failure(['--routes', '/etc/saslauthd-ts/routes', '-a', 'shadow']), /--routes and -a cannot be used together/);
});

test('--routes alone needs no -a', () => {
  const o = run(['--routes', '/etc/saslauthd-ts/routes']);
  assert.equal(o.routesFile, '/etc/saslauthd-ts/routes');
  assert.equal(o.mech, 'routes');
});

test('-a alone is unchanged', () => {
  const o = run(['-a', 'pam']);
  assert.equal(o.mech, 'pam');
  assert.equal(o.routesFile, undefined);
});
