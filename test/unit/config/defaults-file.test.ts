// The /etc/default/saslauthd-ts reader: Cyrus's variables, shell quoting,
// the init script's flag order, and errors that name file, line and key.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import {
  defaultsToArgs,
  findDefaultsFileArg,
  parseArgsWithDefaults,
  parseDefaultsText,
  readDefaultsFile,
} from '../../../src/config/defaults-file';
import { formatIssue } from '../../../src/config/saslauthd-conf';

const F = '/etc/default/saslauthd-ts';
const errors = (text: string): string[] => {
  const df = parseDefaultsText(text, F);
  return [...df.issues, ...defaultsToArgs(df).issues].filter((i) => i.severity === 'error').map(formatIssue);
};

describe('defaults file', () => {
  test('reads Debian Cyrus file values verbatim, comments and quotes included', () => {
    const df = parseDefaultsText(
      [
        '# comment',
        'DESC="SASL Authentication Daemon"',
        'NAME="saslauthd"',
        '',
        'MECHANISMS="pam"   # trailing comment',
        "MECH_OPTIONS=''",
        'THREADS=5',
        'export OPTIONS="-c -m /var/spool/postfix/var/run/saslauthd"',
      ].join('\n'),
      F,
    );
    assert.deepEqual(df.issues, []);
    assert.equal(df.vars.get('MECHANISMS')?.value, 'pam');
    assert.equal(df.vars.get('MECHANISMS')?.line, 5);
    assert.equal(df.vars.get('OPTIONS')?.value, '-c -m /var/spool/postfix/var/run/saslauthd');
    assert.equal(df.vars.get('DESC')?.value, 'SASL Authentication Daemon');
  });

  test('builds the flags in the Cyrus init script order: -a, -O, OPTIONS, -n', () => {
    const df = parseDefaultsText('MECHANISMS=ldap\nMECH_OPTIONS=/etc/x.conf\nTHREADS=3\nOPTIONS="-c -r"\n', F);
    assert.deepEqual(defaultsToArgs(df).args, ['-a', 'ldap', '-O', '/etc/x.conf', '-c', '-r', '-n', '3']);
  });

  test('leaves out -O and -n when MECH_OPTIONS and THREADS are empty', () => {
    const df = parseDefaultsText('MECHANISMS="shadow"\nMECH_OPTIONS=""\nTHREADS=\nOPTIONS=""\n', F);
    assert.deepEqual(defaultsToArgs(df).args, ['-a', 'shadow']);
  });

  test('the last assignment of a variable wins, as in the shell', () => {
    const df = parseDefaultsText('MECHANISMS=pam\nMECHANISMS=shadow\n', F);
    assert.equal(df.vars.get('MECHANISMS')?.value, 'shadow');
    assert.equal(df.vars.get('MECHANISMS')?.line, 2);
  });

  test('handles backslash escapes in double quotes and literal single quotes', () => {
    const df = parseDefaultsText('MECH_OPTIONS="a\\"b\\\\c"\nOPTIONS=\'-m /x\'\n', F);
    assert.equal(df.vars.get('MECH_OPTIONS')?.value, 'a"b\\c');
    assert.equal(df.vars.get('OPTIONS')?.value, '-m /x');
  });

  test('an unknown variable is an error naming file, line and key', () => {
    assert.deepEqual(errors('MECHANISMS=pam\nPARAMS="-m /x"\n'), [
      `${F}:2: PARAMS: unknown variable; known are MECHANISMS, MECH_OPTIONS, THREADS, OPTIONS, DESC, NAME, START`,
    ]);
  });

  test('a THREADS that is not a number is an error naming file, line and key', () => {
    assert.deepEqual(errors('MECHANISMS=pam\nTHREADS=five\n'), [
      `${F}:2: THREADS: 'five' is not a whole number (e.g. THREADS=5)`,
    ]);
  });

  test('an unknown flag in OPTIONS is an error on the OPTIONS line', () => {
    const e = errors('MECHANISMS=pam\n\nOPTIONS="-c -Q"\n');
    assert.equal(e.length, 1);
    assert.match(e[0] ?? '', /^\/etc\/default\/saslauthd-ts:3: OPTIONS: '-c -Q': unknown option '-Q'/);
  });

  test('a relative -m in OPTIONS is an error on the OPTIONS line', () => {
    assert.match(errors('MECHANISMS=pam\nOPTIONS="-m run"\n')[0] ?? '', /:2: OPTIONS: .*absolute/);
  });

  test('-a in OPTIONS is refused: MECHANISMS says which mechanism', () => {
    assert.match(errors('MECHANISMS=pam\nOPTIONS="-a shadow"\n')[0] ?? '', /:2: OPTIONS: -a: set the mechanism with MECHANISMS/);
  });

  test('more than one mechanism is an error', () => {
    assert.match(errors('MECHANISMS="pam shadow"\n')[0] ?? '', /:1: MECHANISMS: .*only one mechanism/);
  });

  test('a missing MECHANISMS is an error', () => {
    assert.match(errors('THREADS=5\n')[0] ?? '', /^\/etc\/default\/saslauthd-ts: MECHANISMS: no mechanism set/);
  });

  test('shell expansions and commands are refused, not run', () => {
    assert.match(errors('MECHANISMS=$MECH\n')[0] ?? '', /:1: MECHANISMS: shell expansion/);
    assert.match(errors('OPTIONS="`id`"\n')[0] ?? '', /:1: OPTIONS: shell expansion/);
    assert.match(errors('. /etc/default/other\nMECHANISMS=pam\n')[0] ?? '', /:1: \.: not a VAR=value assignment/);
    assert.match(errors('MECHANISMS=pam; rm -rf /\n')[0] ?? '', /:1: MECHANISMS: ';' is shell syntax/);
  });

  test('an unterminated quote is an error', () => {
    assert.match(errors('OPTIONS="-c\n')[0] ?? '', /:1: OPTIONS: unterminated double quote/);
  });

  test('a missing file is an error naming the file', () => {
    const df = readDefaultsFile('/nonexistent/saslauthd-ts');
    assert.deepEqual(df.issues.map(formatIssue), [
      '/nonexistent/saslauthd-ts: cannot read the defaults file: no such file (ENOENT)',
    ]);
  });

  test('finds --defaults-file in both spellings', () => {
    assert.equal(findDefaultsFileArg(['-f', '--defaults-file', '/a']), '/a');
    assert.equal(findDefaultsFileArg(['--defaults-file=/b', '-f']), '/b');
    assert.equal(findDefaultsFileArg(['-f']), undefined);
  });

  test('the daemon takes the file flags first and lets the command line override them', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'defaults-'));
    try {
      const file = path.join(dir, 'd');
      fs.writeFileSync(file, 'MECHANISMS=pam\nOPTIONS="-m /run/a -r"\nTHREADS=2\n');
      const r = parseArgsWithDefaults(['-f', '--defaults-file', file, '-m', '/run/b']);
      assert.equal(r.kind, 'run');
      if (r.kind !== 'run') return;
      assert.equal(r.options.mech, 'pam');
      assert.equal(r.options.runDir, '/run/b');
      assert.equal(r.options.concatRealm, true);
      assert.equal(r.options.threads, 2);
      assert.equal(r.options.defaultsFile, file);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  test('the daemon refuses to start on a bad defaults file, naming the place', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'defaults-'));
    try {
      const file = path.join(dir, 'd');
      fs.writeFileSync(file, 'MECHANISMS=pam\nTHREADS=x\n');
      const r = parseArgsWithDefaults(['-f', '--defaults-file', file]);
      assert.equal(r.kind, 'exit');
      if (r.kind !== 'exit') return;
      assert.equal(r.code, 1);
      assert.equal(r.stderr, `saslauthd-ts: ${file}:2: THREADS: 'x' is not a whole number (e.g. THREADS=5)\n`);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('defaults file with chains and routes', () => {
  test('MECHANISMS="shadow,ldap" is a chain passed as -a', () => {
    const df = parseDefaultsText('MECHANISMS="shadow,ldap"\nMECH_OPTIONS="/etc/saslauthd.conf"\n', F);
    const r = defaultsToArgs(df);
    assert.deepEqual(r.issues, []);
    assert.deepEqual(r.args.slice(0, 4), ['-a', 'shadow,ldap', '-O', '/etc/saslauthd.conf']);
  });

  test('an empty MECHANISMS is fine when OPTIONS gives --routes', () => {
    assert.deepEqual(errors('MECHANISMS=""\nOPTIONS="-c --routes /etc/saslauthd-ts/routes"\n'), []);
    const r = defaultsToArgs(parseDefaultsText('MECHANISMS=""\nOPTIONS="--routes /etc/saslauthd-ts/routes"\n', F));
    assert.equal(r.args.includes('-a'), false);
    assert.deepEqual(r.args.slice(-2), ['--routes', '/etc/saslauthd-ts/routes']);
  });

  test('mechanisms separated by blanks point to the comma chain and to --routes', () => {
    assert.match(errors('MECHANISMS="shadow ldap"\n').join('\n'), /MECHANISMS="shadow,ldap".*--routes FILE/);
  });
});
