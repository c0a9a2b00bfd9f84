// What the daemon logs, in what shape and where: passwords never, at any
// level, whatever the outcome (not when a hostile IMAP server echoes them
// back in another form, and not when an admin writes one into a URI);
// Cyrus's text lines by default; each line's priority on the journal's stream.
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { DAEMON_BIN, startDaemon, waitForSocket } from '../helpers/daemon';
import { startFakeImapServer } from '../helpers/tcp';
import { createUser, removeAllUsers, userName } from '../helpers/users';
import { rawExchange, request, field, lengthOnly } from '../helpers/frames';
import { sendRequest } from '../../src/client/request';
import { testsaslauthd } from '../helpers/testsaslauthd';

after(() => removeAllUsers());

test('a -d (debug) run logs every attempt but never a password', async () => {
  const secret = 'Zq7-leak-canary-1';
  const wrong = 'Zq7-leak-canary-2';
  const u = createUser(userName('log'), secret);
  const d = await startDaemon({ args: ['-a', 'shadow', '-r'], mode: '-d' });
  try {
    assert.equal(await sendRequest(d.socketPath, { login: u.name, password: secret, service: 'smtp', realm: '' }), 'OK');
    await sendRequest(d.socketPath, { login: u.name, password: wrong, service: 'smtp', realm: '' });
    await sendRequest(d.socketPath, { login: 'no-such-user', password: secret, service: 'smtp', realm: 'x.org' });
    await testsaslauthd({ socket: d.socketPath, user: u.name, password: wrong });
    await rawExchange(d.socketPath, [Buffer.concat([field(u.name), field(secret), lengthOnly(300)])], {
      closeAfterSend: true,
    });
    await rawExchange(d.socketPath, [request({ login: u.name, password: secret, service: '', realm: '' }).subarray(0, 12)], {
      closeAfterSend: true,
    });
    await d.waitForLog(/client closed before the request was complete/);
  } finally {
    await d.stop();
  }
  const out = d.output();
  assert.match(out, /"level":20/, 'debug lines were written');
  assert.match(out, /auth success: \[user=/);
  assert.match(out, /auth failure: .*\[reason=Incorrect password\]/);
  for (const s of [secret, wrong, 'leak-canary']) assert.equal(out.includes(s), false, `log contains ${s}`);
});

// Cyrus logs successes only with -V (facts file, section 5); failures always.
for (const [label, extra] of [
  ['answered by the hashing thread', []],
  ['answered from JavaScript (-c)', ['-c']],
] as const) {
  test(`without -V successes are not logged, failures are (${label})`, async () => {
    const u = createUser(userName('quiet'), 'Quiet-pw1', 'sha512crypt');
    const d = await startDaemon({ args: ['-a', 'shadow', ...extra] });
    try {
      const ask = (password: string): Promise<string> =>
        sendRequest(d.socketPath, { login: u.name, password, service: 'smtp', realm: '' });
      assert.equal(await ask('Quiet-pw1'), 'OK');
      assert.equal(await ask('Quiet-pw1'), 'OK');
      assert.equal(await ask('Quiet-pw2'), 'NO Incorrect password');
      await d.waitForLog(new RegExp(`auth failure: \\[user=${u.name}\\]`));
    } finally {
      await d.stop();
    }
    assert.doesNotMatch(d.output(), /auth success/);
  });
}

test('text is the default format: Cyrus’s line shapes, warnings marked as such', async () => {
  const u = createUser(userName('txt'), 'Text-pw1', 'sha512crypt');
  const d = await startDaemon({ args: ['-a', 'shadow'], logFormat: 'text' });
  try {
    assert.equal(
      await sendRequest(d.socketPath, { login: u.name, password: 'nope', service: 'smtp', realm: '' }),
      'NO Incorrect password',
    );
    const line = await d.waitForLog(/auth failure:/);
    assert.match(
      line,
      new RegExp(
        `^[A-Z][a-z]{2} [ \\d]\\d \\d\\d:\\d\\d:\\d\\d saslauthd-ts\\[\\d+\\]: auth failure: \\[user=${u.name}\\] \\[service=smtp\\] \\[realm=\\] \\[mech=shadow\\] \\[reason=Incorrect password\\]$`,
      ),
    );
    assert.doesNotMatch(d.output(), /^\{/m, 'no JSON');
  } finally {
    await d.stop();
  }
});

test('on the journal’s stream each line starts with its priority, in either format', async () => {
  for (const format of ['text', 'json']) {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'journal-'));
    const out = path.join(dir, 'stderr');
    const fd = fs.openSync(out, 'w');
    const st = fs.fstatSync(fd);
    const child = spawn(
      process.execPath,
      [DAEMON_BIN, '-f', '-m', dir, '-a', 'ldap', '-O', path.join(dir, 'ldap.conf'), '--log-format', format],
      {
        stdio: ['ignore', fd, fd],
        // What systemd sets for a service whose stderr is the journal.
        env: { ...process.env, JOURNAL_STREAM: `${st.dev}:${st.ino}` },
      },
    );
    // A directory nobody answers on: every login is an outage, logged as a warning.
    fs.writeFileSync(path.join(dir, 'ldap.conf'), 'ldap_servers: ldap://127.0.0.1:1/\nldap_timeout: 1\n');
    try {
      await waitForSocket(path.join(dir, 'mux'), 10_000, child);
      assert.equal(await sendRequest(path.join(dir, 'mux'), { login: 'bob', password: 'pw', service: 'smtp', realm: '' }), 'NO');
      let text = '';
      for (let i = 0; i < 100 && !/auth failure/.test(text); i++) {
        await new Promise((r) => setTimeout(r, 50));
        text = fs.readFileSync(out, 'utf8');
      }
      const lines = text.split('\n').filter((l) => l !== '');
      assert.ok(lines.length > 0 && lines.every((l) => /^<[0-7]>/.test(l)), `${format}: ${lines.join(' | ')}`);
      assert.ok(
        lines.some((l) => /^<6>.*listening on socket/.test(l)),
        `${format}: startup at info`,
      );
      assert.ok(
        lines.some((l) => /^<4>.*auth failure: \[user=bob\].*Cannot connect to ldap server/.test(l)),
        `${format}: outage at warning`,
      );
    } finally {
      child.kill('SIGTERM');
      await new Promise((r) => child.once('exit', r));
      fs.closeSync(fd);
      fs.rmSync(dir, { recursive: true, force: true });
    }
  }
});

test('a -d rimap run never logs a password a server echoes back quoted, escaped or cut at its line breaks', async () => {
  // Every password holds the canary; its forms on the wire differ.
  const passwords = ['Zq8"leak-canary\\quoted', 'Zq8-leak-canary-top\r\nZq8-leak-canary-bottom'];
  const imap = await startFakeImapServer(async (sock, readLine, readBytes) => {
    sock.write('* OK [CAPABILITY IMAP4rev1] echo server ready\r\n');
    const line = await readLine();
    const literal = /\{(\d+)\}\r\n$/.exec(line);
    if (literal === null) {
      // A quoted password: echo the command line, escapes and all.
      sock.write(`saslauthd NO you said: ${line.trim()}\r\n`);
      return;
    }
    sock.write('+ go ahead\r\n');
    const body = (await readBytes(Number(literal[1]) + 2)).toString('latin1');
    // A password with a line break: echo what came before it.
    sock.write(`saslauthd BAD you said: ${body.split('\r\n')[0] ?? ''}\r\n`);
  });
  const d = await startDaemon({ args: ['-a', 'rimap', '-O', `127.0.0.1/${imap.port}`], mode: '-d' });
  try {
    for (const password of passwords) {
      assert.match(await sendRequest(d.socketPath, { login: 'alice', password, service: 'imap', realm: '' }), /^NO/);
    }
    await d.waitForLog(/unexpected response to LOGIN/);
  } finally {
    await d.stop();
    await imap.close();
  }
  const out = d.output();
  // JSON lines: the quotes the server echoed are escaped.
  assert.match(out, /LOGIN rejected: saslauthd NO you said: saslauthd LOGIN \\"alice\\" \\"\[redacted\]\\"/);
  assert.match(out, /unexpected response to LOGIN: saslauthd BAD you said: \[redacted\]/);
  assert.equal(out.includes('leak-canary'), false, out);
});

test('a password written into a URI is masked wherever the URI is printed: --check, startup errors and logs', () => {
  const run = (args: string[]): string => {
    const r = spawnSync(process.execPath, [DAEMON_BIN, ...args], { encoding: 'utf8', timeout: 10_000 });
    return `${r.stdout}${r.stderr}`;
  };
  for (const option of ['imaps://user:Zq9-leak-canary@mail.example.org', 'user:Zq9-leak-canary@mail.example.org/143']) {
    const check = run(['--check', '-f', '-a', 'rimap', '-O', option]);
    assert.match(check, /user:\*\*\*@mail\.example\.org/, check);
    const start = run(['-d', '-m', '/nonexistent-saslauthd-ts-test', '-a', 'rimap', '-O', option]);
    assert.match(
      start,
      /failed to initialize mechanism rimap: .*user:\*\*\*@mail\.example\.org.*user names or passwords do not belong in -O/,
      start,
    );
    for (const out of [check, start]) assert.equal(out.includes('leak-canary'), false, out);
  }
});
