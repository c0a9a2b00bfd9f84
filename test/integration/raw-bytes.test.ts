// Login, service and realm reach every mechanism as the bytes the client
// sent, as Cyrus passes them: a login that is not UTF-8 is looked up as those
// bytes (not as their U+FFFD replacement), and an embedded NUL ends a field as
// it ends Cyrus's C string. Real users made with useradd --badname, real PAM,
// slapd, and an IMAP server that records what it receives.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { sendRequest } from '../../src/client/request';
import { startDaemon, type RunningDaemon } from '../helpers/daemon';
import { removeUser } from '../helpers/users';
import { cleanupPam, installService, serviceName } from '../helpers/pam';
import { startSlapd, USERS, type Slapd } from '../helpers/slapd';
import { serviceConf, startLdapDaemon } from '../helpers/ldap';
import { startFakeImapServer, type FakeImapServer } from '../helpers/tcp';

const PASSWORD = 'Raw-bytes-pw1';
/** "café" in Latin-1: the byte 0xe9 alone is not UTF-8. */
const LATIN1_LOGIN = Buffer.concat([Buffer.from(`rb${process.pid % 10000}caf`), Buffer.from([0xe9])]);
/** The same word in UTF-8 (0xc3 0xa9): another login altogether. */
const UTF8_LOGIN = Buffer.concat([Buffer.from(`rb${process.pid % 10000}caf`), Buffer.from([0xc3, 0xa9])]);

/** useradd and chpasswd through a shell, so the name's bytes reach them unchanged (argv strings would be UTF-8). */
function createRawUser(name: Buffer, password: string): void {
  const hex = [...name].map((b) => `\\${b.toString(8).padStart(3, '0')}`).join('');
  execFileSync('sh', [
    '-c',
    `n="$(printf '${hex}')"; useradd -M -N -s /usr/sbin/nologin --badname "$n" && printf '%s:%s\\n' "$n" "$1" | chpasswd`,
    'sh',
    password,
  ]);
}

function removeRawUser(name: Buffer): void {
  const hex = [...name].map((b) => `\\${b.toString(8).padStart(3, '0')}`).join('');
  try {
    execFileSync('sh', ['-c', `userdel -f "$(printf '${hex}')"`], { stdio: 'ignore' });
  } catch {
    // not there
  }
}

const ask = (socket: string, login: Buffer | string, password: string | Buffer, service = 'smtp'): Promise<string> =>
  sendRequest(socket, { login, password, service, realm: '' });

describe('raw bytes through the system mechanisms', () => {
  let shadow: RunningDaemon;
  let pam: RunningDaemon;
  let service: string;
  before(async () => {
    createRawUser(LATIN1_LOGIN, PASSWORD);
    service = installService(serviceName('raw'), ['auth required pam_unix.so nodelay', 'account required pam_unix.so']);
    shadow = await startDaemon({ args: ['-a', 'shadow'], logFormat: 'text' });
    pam = await startDaemon({ args: ['-a', 'pam'] });
  });
  after(async () => {
    await shadow?.stop();
    await pam?.stop();
    removeRawUser(LATIN1_LOGIN);
    removeUser('unused');
    cleanupPam();
  });

  test('shadow finds a login that is not UTF-8 by its bytes', async () => {
    assert.equal(await ask(shadow.socketPath, LATIN1_LOGIN, PASSWORD), 'OK');
    assert.equal(await ask(shadow.socketPath, UTF8_LOGIN, PASSWORD), 'NO Invalid username');
  });

  test('shadow: a NUL ends the login, as in Cyrus', async () => {
    assert.equal(await ask(shadow.socketPath, Buffer.concat([LATIN1_LOGIN, Buffer.from('\0junk')]), PASSWORD), 'OK');
  });

  test('PAM gets the login’s bytes as PAM_USER, and the service’s as its service name', async () => {
    assert.equal(await ask(pam.socketPath, LATIN1_LOGIN, PASSWORD, service), 'OK');
    assert.equal(await ask(pam.socketPath, UTF8_LOGIN, PASSWORD, service), 'NO PAM auth error');
    assert.equal(
      await ask(pam.socketPath, Buffer.concat([LATIN1_LOGIN, Buffer.from('\0x')]), PASSWORD, `${service}\0junk`),
      'OK',
    );
  });

  test('the result line shows a login that is not UTF-8 escaped, not as mojibake', async () => {
    await ask(shadow.socketPath, LATIN1_LOGIN, 'wrong-password');
    const line = await shadow.waitForLog(/auth failure: \[user=rb\d+caf\\xe9\]/);
    assert.match(line, /\[reason=Incorrect password\]/);
  });
});

describe('raw bytes through LDAP', () => {
  let slapd: Slapd;
  before(async () => {
    slapd = await startSlapd({ logStats: true });
  });
  after(async () => {
    await slapd?.cleanup();
  });

  test('a login that is not UTF-8 cannot name an LDAP entry: refused as not found, never sent', async () => {
    const d = await startLdapDaemon(serviceConf(slapd.ldapUrl));
    const searches = (): number =>
      slapd
        .output()
        .split('\n')
        .filter((l) => / SRCH base=/.test(l)).length;
    const before = searches();
    try {
      const login = Buffer.from([0x61, 0x6c, 0x69, 0x63, 0x65, 0xe9]); // "alice" and a lone 0xe9
      assert.equal(
        await sendRequest(d.d.socketPath, { login, password: USERS.alice.password, service: 'imap', realm: '' }),
        'NO',
      );
      const line = await d.d.waitForLog(/auth failure: \[user=alice\\\\xe9\]/);
      assert.match(line, /"result":"denied"/);
      assert.match(line, /User not found \(the login, service or realm is not valid UTF-8\)/);
      assert.equal(searches(), before, 'slapd saw no search');
    } finally {
      await d.stop();
    }
  });

  test('a NUL ends the LDAP login too', async () => {
    const d = await startLdapDaemon(serviceConf(slapd.ldapUrl));
    try {
      assert.equal(
        await sendRequest(d.d.socketPath, {
          login: Buffer.from('alice\0junk'),
          password: USERS.alice.password,
          service: 'imap',
          realm: '',
        }),
        'OK',
      );
    } finally {
      await d.stop();
    }
  });
});

describe('raw bytes through rimap', () => {
  let imap: FakeImapServer;
  let d: RunningDaemon;
  before(async () => {
    // Greets, answers "+" to each literal, accepts LOGIN, ignores LOGOUT.
    imap = await startFakeImapServer(async (sock, readLine, readBytes) => {
      sock.write('* OK fake ready\r\n');
      let line = await readLine();
      for (;;) {
        const m = /\{(\d+)\}\r\n$/.exec(line);
        if (m === null) break;
        sock.write('+ go on\r\n');
        await readBytes(Number(m[1]));
        line = await readLine();
      }
      sock.write('saslauthd OK logged in\r\n');
    });
    d = await startDaemon({ args: ['-a', 'rimap', '-O', `127.0.0.1/${imap.port}`] });
  });
  after(async () => {
    await d?.stop();
    await imap?.close();
  });

  test('the IMAP server receives the login’s exact bytes', async () => {
    assert.equal(await ask(d.socketPath, LATIN1_LOGIN, PASSWORD), 'OK remote authentication successful');
    const sent = imap.received().at(-1) ?? Buffer.alloc(0);
    assert.ok(sent.includes(LATIN1_LOGIN), `the login's bytes are on the wire: ${JSON.stringify(sent.toString('latin1'))}`);
    assert.equal(sent.includes(Buffer.from([0xef, 0xbf, 0xbd])), false, 'no U+FFFD replacement');
  });

  test('a NUL ends the login before it reaches the IMAP server', async () => {
    assert.equal(await ask(d.socketPath, Buffer.from('alice\0LOGOUT'), PASSWORD), 'OK remote authentication successful');
    const sent = (imap.received().at(-1) ?? Buffer.alloc(0)).toString('latin1');
    assert.match(sent, /alice/);
    assert.doesNotMatch(sent, /alice.LOGOUT/);
  });
});
