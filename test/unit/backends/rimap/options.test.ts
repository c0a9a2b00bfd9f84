// -O parsing for rimap: Cyrus's host[/port], host:port with the IPv6 rule,
// the imaps:// and imap:// forms, several servers, and clear startup errors.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import {
  describeTarget,
  lookupServicePort,
  parseRimapOption,
  RimapOptionError,
  targetWarnings,
} from '../../../../src/backends/rimap/options';

function one(option: string) {
  const list = parseRimapOption(option);
  assert.equal(list.length, 1);
  return list[0]!;
}

function rejects(option: string | undefined, re: RegExp): void {
  assert.throws(
    () => parseRimapOption(option),
    (err: unknown) => err instanceof RimapOptionError && err.code === 'RIMAP_BAD_OPTION' && re.test(err.message),
    `expected ${JSON.stringify(option)} to be refused with ${re}`,
  );
}

describe('rimap -O: Cyrus syntax', () => {
  test('a bare host means plain IMAP on port 143', () => {
    const t = one('imap.example.com');
    assert.deepEqual(
      { host: t.host, port: t.port, tls: t.tls, cyrusSyntax: t.cyrusSyntax },
      { host: 'imap.example.com', port: 143, tls: 'none', cyrusSyntax: true },
    );
  });

  test('host/port takes a number', () => {
    assert.equal(one('127.0.0.1/14143').port, 14143);
  });

  test('host/port takes a service name from /etc/services', () => {
    assert.equal(one('mail/imap').port, 143);
    assert.equal(one('mail/imaps').port, 993);
  });

  test('host:port is accepted too', () => {
    const t = one('127.0.0.1:14143');
    assert.equal(t.host, '127.0.0.1');
    assert.equal(t.port, 14143);
  });

  test('an unbracketed address with two or more colons is IPv6 on the default port', () => {
    const t = one('::1');
    assert.equal(t.host, '::1');
    assert.equal(t.port, 143);
    assert.equal(one('fe80::1:143').port, 143, 'the last group is part of the address, never a port');
  });

  test('brackets or a slash give an IPv6 address a port', () => {
    assert.deepEqual([one('[::1]:1143').host, one('[::1]:1143').port], ['::1', 1143]);
    assert.deepEqual([one('[::1]/1143').host, one('[::1]/1143').port], ['::1', 1143]);
    assert.deepEqual([one('::1/1143').host, one('::1/1143').port], ['::1', 1143]);
    assert.equal(one('[2001:db8::5]').port, 143);
  });

  test('refuses a missing or empty option as Cyrus does', () => {
    rejects(undefined, /no hostname specified/);
    rejects('', /no hostname specified/);
    rejects('  ', /no hostname specified/);
  });

  test('refuses bad ports, unknown services and bad host names with the culprit named', () => {
    rejects('mail/0', /port 0 is out of range/);
    rejects('mail:70000', /port 70000 is out of range/);
    rejects('mail/nosuchservice', /unknown service name 'nosuchservice'/);
    rejects('mail/', /empty port/);
    rejects('mail:', /empty port/);
    rejects('ma il', /'ma il' is not a valid host name/);
    rejects('[::1', /IPv6 address in brackets/);
    rejects('[mail]:143', /'\[mail\]' is not an IPv6 address/);
    rejects('-bad-.example', /not a valid host name/);
  });
});

describe('rimap -O: URL forms', () => {
  test('imaps:// is implicit TLS on port 993 by default', () => {
    const t = one('imaps://mail.example.com');
    assert.deepEqual([t.tls, t.port, t.cyrusSyntax], ['implicit', 993, false]);
    assert.equal(one('imaps://mail.example.com:10993').port, 10993);
  });

  test('imap:// means STARTTLS, required, on port 143', () => {
    const t = one('imap://mail.example.com');
    assert.deepEqual([t.tls, t.port], ['starttls', 143]);
    assert.equal(one('imap://mail.example.com:1143?starttls').tls, 'starttls');
  });

  test('plain IMAP in URL form needs an explicit ?plain', () => {
    assert.equal(one('imap://mail.example.com?plain').tls, 'none');
  });

  test('cafile, servername and timeouts are read from the query', () => {
    const t = one('imaps://[::1]:993/?cafile=/etc/ssl/my%2Cca.pem&servername=mail.example.com&timeout=2.5&connect_timeout=1');
    assert.equal(t.host, '::1');
    assert.equal(t.caFile, '/etc/ssl/my,ca.pem');
    assert.equal(t.servername, 'mail.example.com');
    assert.equal(t.timeoutMs, 2500);
    assert.equal(t.connectTimeoutMs, 1000);
  });

  test('refuses contradictions and unknown keys', () => {
    rejects('imaps://h?starttls', /starttls does not apply to imaps/);
    rejects('imaps://h?plain', /plain contradicts imaps/);
    rejects('imap://h?starttls&plain', /choose one of starttls and plain/);
    rejects('imap://h?plain&cafile=/x', /cafile needs TLS/);
    rejects('imaps://h?cafile=relative.pem', /absolute path/);
    rejects('imaps://h?verify=no', /unknown parameter 'verify'/);
    rejects('imaps://h?timeout=soon', /give seconds/);
    rejects('imaps://h?starttls=1', /takes no value/);
    rejects('imaps://user:pw@h', /do not belong in -O/);
    rejects('imaps://::1:993', /IPv6 address must be written in brackets/);
    rejects('imaps://h/INBOX', /no path/);
    rejects('pop3://h', /unknown scheme/);
    rejects('imaps://h?cafile=/a&cafile=/b', /given twice/);
  });
});

describe('rimap -O: credentials', () => {
  test('a user and password in -O are refused, and the message masks the password, in any form', () => {
    for (const option of [
      'imaps://user:Zq-secret@h',
      'imap://user:Zq-secret@h:143?starttls',
      'user:Zq-secret@h/143',
      'user:Zq-secret@h',
    ]) {
      assert.throws(
        () => parseRimapOption(option),
        (err: unknown) =>
          err instanceof RimapOptionError &&
          /user:\*\*\*@h.*: user names or passwords do not belong in -O$/.test(err.message) &&
          !err.message.includes('Zq-secret'),
        option,
      );
    }
  });

  test('a second server with a password is masked in the message too', () => {
    assert.throws(
      () => parseRimapOption('imaps://a,imaps://u:Zq-secret@b'),
      (err: unknown) =>
        err instanceof RimapOptionError && err.message.startsWith("-O 'imaps://u:***@b'") && !err.message.includes('Zq-secret'),
    );
  });

  test('an @ after the ? (a CA file name) is not taken for credentials', () => {
    assert.equal(one('imaps://h?cafile=/etc/ssl/ca@example.pem').caFile, '/etc/ssl/ca@example.pem');
  });
});

describe('rimap -O: several servers', () => {
  test('a comma-separated list keeps its order and mixes forms', () => {
    const list = parseRimapOption('imaps://a.example, b.example/1143 ,[::1]:143');
    assert.deepEqual(list.map(describeTarget), [
      'imaps://a.example:993',
      'imap://b.example:1143?plain',
      'imap://[::1]:143?plain',
    ]);
  });

  test('refuses an empty element', () => {
    rejects('a.example,,b.example', /empty server/);
    rejects('a.example,', /empty server/);
  });
});

describe('rimap -O: warnings', () => {
  test('warns about clear-text passwords to a non-loopback host, not to loopback', () => {
    assert.match(targetWarnings(one('mail.example.com'))[0] ?? '', /clear text/);
    assert.deepEqual(targetWarnings(one('127.0.0.1')), []);
    assert.deepEqual(targetWarnings(one('localhost/1143')), []);
    assert.deepEqual(targetWarnings(one('imaps://mail.example.com')), []);
  });

  test('warns when plain IMAP is aimed at port 993', () => {
    assert.ok(targetWarnings(one('127.0.0.1/993')).some((w) => /normally IMAPS/.test(w)));
  });
});

describe('rimap -O: service names', () => {
  test('reads a services(5) file and its aliases', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'rimap-services-'));
    try {
      const f = path.join(dir, 'services');
      fs.writeFileSync(f, '# comment\nimap\t\t143/tcp\t\timap2\nmyimap 10143/tcp alt-imap # mine\nudponly 9/udp\n');
      assert.equal(lookupServicePort('imap2', f), 143);
      assert.equal(lookupServicePort('alt-imap', f), 10143);
      assert.equal(lookupServicePort('udponly', f), undefined);
      assert.equal(parseRimapOption('mail/myimap', { servicesFile: f })[0]!.port, 10143);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  test('falls back to imap/imaps when there is no services file', () => {
    assert.equal(lookupServicePort('imaps', '/nonexistent/services'), 993);
  });
});
