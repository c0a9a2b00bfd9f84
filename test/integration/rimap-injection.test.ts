// No IMAP command injection through rimap. Cyrus quotes only `"` and `\`, so
// a password holding CR LF ends its LOGIN line and the rest runs as a command
// of the attacker's choice. Here such values travel as literals. Proof, for
// each payload: the bytes on the wire (a recording proxy between the daemon
// and a real Dovecot) hold exactly one LOGIN and our LOGOUT; Dovecot answers
// no other tag; and Dovecot's own log shows one auth attempt that received
// the CR LF inside the password, and no login for the injected command.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { startDaemon, type RunningDaemon } from '../helpers/daemon';
import { startDovecot, type Dovecot, type DovecotUser } from '../helpers/dovecot';
import { type CaptureProxy, type CapturedConnection, startCaptureProxy } from '../helpers/tcp';
import { sendRequest } from '../../src/client/request';
import { ResponseDecoder } from '../../src/backends/rimap/response-decoder';

const REJECTED = 'NO remote server rejected your credentials';
const OK = 'OK remote authentication successful';
const VICTIM: DovecotUser = { name: 'victim', password: 'victim-Pw-i01' };
const UTF8: DovecotUser = { name: 'jörg', password: 'pässwörd-i02' };

/** Each would log the victim in, or run another command, if its CR LF reached the wire raw. */
const PAYLOADS = [
  `nope\r\nA1 LOGIN victim ${VICTIM.password}`,
  `x"\r\nA2 LOGIN "victim" "${VICTIM.password}"\r\nA3 DELETE INBOX\r\n`,
  'pw\r\nsaslauthd2 LOGOUT',
  'x\r\nA4 DELETE INBOX',
  '{5}\r\nA5 NOOP\\"\r\n',
];

/**
 * Splits client bytes into IMAP commands: a line ending in {n} or {n+}
 * continues after n literal bytes. Literal contents are replaced by <n bytes>.
 */
function commands(up: Buffer): string[] {
  const out: string[] = [];
  let cur = '';
  let i = 0;
  while (i < up.length) {
    const lf = up.indexOf(0x0a, i);
    if (lf === -1) {
      cur += up.subarray(i).toString('utf8');
      break;
    }
    const line = up.subarray(i, lf + 1).toString('utf8');
    i = lf + 1;
    const m = /\{(\d+)\+?\}\r\n$/.exec(line);
    if (m) {
      const n = Number(m[1]);
      cur += `${line.slice(0, -2)}<${n} bytes>`;
      i += n;
      continue;
    }
    out.push(cur + line.replace(/\r\n$/, ''));
    cur = '';
  }
  if (cur !== '') out.push(cur);
  return out;
}

function taggedResponses(down: Buffer): string[] {
  return new ResponseDecoder()
    .push(down)
    .filter((r) => r.kind === 'tagged')
    .map((r) => `${r.tag} ${r.status}`);
}

async function waitFor(cond: () => boolean, what: string, timeoutMs = 5000): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

describe('rimap: no IMAP command injection (real Dovecot)', () => {
  let dovecot: Dovecot;
  let plusProxy: CaptureProxy;
  let syncProxy: CaptureProxy;
  const daemons: RunningDaemon[] = [];
  let viaPlus: RunningDaemon;
  let viaSync: RunningDaemon;
  let viaStarttls: RunningDaemon;

  before(async () => {
    dovecot = await startDovecot([VICTIM, UTF8]);
    plusProxy = await startCaptureProxy(dovecot.imapPort);
    // Hides LITERAL+ from the greeting, so the client must use {n} and wait for "+".
    syncProxy = await startCaptureProxy(dovecot.imapPort, {
      rewriteDown: (chunk) => Buffer.from(chunk.toString('latin1').replace(/ LITERAL\+/g, ''), 'latin1'),
    });
    const start = async (option: string): Promise<RunningDaemon> => {
      const d = await startDaemon({ args: ['-a', 'rimap', '-O', option], mode: '-d' });
      daemons.push(d);
      return d;
    };
    [viaPlus, viaSync, viaStarttls] = await Promise.all([
      start(`127.0.0.1/${plusProxy.port}`),
      start(`127.0.0.1/${syncProxy.port}`),
      start(`imap://127.0.0.1:${dovecot.imapPort}?cafile=${dovecot.caFile}`),
    ]);
  });

  after(async () => {
    const logs = daemons.map((d) => d.output()).join('\n');
    await Promise.all(daemons.map((d) => d.stop()));
    await plusProxy?.close();
    await syncProxy?.close();
    await dovecot?.stop();
    for (const pw of [...PAYLOADS, VICTIM.password, UTF8.password]) {
      // The distinctive tail of each payload must not be in any log line.
      const probe = pw.split('\r\n')[0]!;
      if (probe.length >= 4) assert.ok(!logs.includes(probe), `${JSON.stringify(probe)} found in the daemon log`);
      assert.ok(!logs.includes(pw), 'a password was logged');
    }
  });

  /** Sends one request and returns what Dovecot logged meanwhile and the proxy's record of it. */
  async function attempt(d: RunningDaemon, proxy: CaptureProxy | undefined, login: string, password: string) {
    const logBefore = dovecot.log().length;
    const connsBefore = proxy?.connections().length ?? 0;
    const reply = await sendRequest(d.socketPath, { login, password, service: 'imap', realm: '' }, 20_000);
    let conn: CapturedConnection | undefined;
    if (proxy) {
      await waitFor(() => proxy.connections().length === connsBefore + 1, 'the proxied connection');
      await waitFor(() => proxy.connections()[connsBefore]!.up.includes('LOGOUT'), 'our LOGOUT');
      conn = proxy.connections()[connsBefore]!;
    }
    // Dovecot logs the end of each login session; wait for it so the segment is complete.
    await waitFor(() => /Disconnected|Aborted login|Logged out/.test(dovecot.log().slice(logBefore)), "Dovecot's session log");
    await new Promise((r) => setTimeout(r, 100));
    return { reply, conn, log: dovecot.log().slice(logBefore) };
  }

  /** login: plain ASCII, so it goes quoted. */
  function assertOneLoginOnly(conn: CapturedConnection, literal: '+' | '', login: string, password: string): void {
    const n = Buffer.byteLength(password);
    assert.deepEqual(commands(conn.up), [`saslauthd LOGIN "${login}" {${n}${literal}}<${n} bytes>`, 'saslauthd LOGOUT']);
    // The literal holds the password byte for byte.
    assert.ok(conn.up.includes(Buffer.from(`{${n}${literal}}\r\n${password}\r\nsaslauthd LOGOUT\r\n`)));
    const tags = taggedResponses(conn.down);
    assert.equal(tags[0], 'saslauthd NO', `Dovecot's answers: ${tags.join(', ')}`);
    assert.ok(
      tags.every((t) => t.startsWith('saslauthd ')),
      `no other tag answered: ${tags.join(', ')}`,
    );
    assert.ok(!tags.some((t) => t.endsWith(' OK') && t !== 'saslauthd OK'), 'nothing injected succeeded');
  }

  function assertDovecotSawOneAttempt(log: string): void {
    assert.match(log, /password having illegal chars/, 'Dovecot got the CR LF inside the password');
    assert.doesNotMatch(log, /Login: user=<victim>/, 'the injected LOGIN never ran');
    assert.doesNotMatch(log, /DELETE|NOOP|Mailbox/i);
    assert.match(log, /\(auth failed, 1 attempts in \d+ secs\): user=<victim>/);
  }

  test('CR LF payloads go out as {n+} literals (LITERAL+) and inject nothing', async () => {
    for (const pw of PAYLOADS) {
      const r = await attempt(viaPlus, plusProxy, VICTIM.name, pw);
      assert.equal(r.reply, REJECTED, JSON.stringify(pw));
      assertOneLoginOnly(r.conn!, '+', VICTIM.name, pw);
      assertDovecotSawOneAttempt(r.log);
    }
  });

  test('without LITERAL+ they go out as {n} literals after the "+" continuation and inject nothing', async () => {
    for (const pw of PAYLOADS) {
      const r = await attempt(viaSync, syncProxy, VICTIM.name, pw);
      assert.equal(r.reply, REJECTED, JSON.stringify(pw));
      assertOneLoginOnly(r.conn!, '', VICTIM.name, pw);
      const down = r.conn!.down.toString('latin1');
      assert.doesNotMatch(down, /LITERAL\+/, 'the proxy hid LITERAL+');
      assert.match(down, /\r\n\+ [^\r\n]*\r\nsaslauthd NO/, 'the server asked for the literal with "+"');
      assertDovecotSawOneAttempt(r.log);
    }
  });

  test('a synchronizing literal carries a right UTF-8 password and login byte for byte', async () => {
    const r = await attempt(viaSync, syncProxy, UTF8.name, UTF8.password);
    assert.equal(r.reply, OK);
    const [l, p] = [Buffer.byteLength(UTF8.name), Buffer.byteLength(UTF8.password)];
    assert.deepEqual(commands(r.conn!.up), [`saslauthd LOGIN {${l}}<${l} bytes> {${p}}<${p} bytes>`, 'saslauthd LOGOUT']);
    assert.ok(r.conn!.up.includes(Buffer.from(`{${p}}\r\n${UTF8.password}\r\n`)), 'the UTF-8 bytes as they are');
    assert.match(r.log, /Login: user=<jörg>/);
  });

  test('a CR LF in the login goes in a literal too', async () => {
    // (User names are logged, as Cyrus does, so this payload carries no password.)
    const login = 'victim\r\nA6 DELETE INBOX';
    const r = await attempt(viaPlus, plusProxy, login, 'whatever');
    assert.equal(r.reply, REJECTED);
    assert.deepEqual(commands(r.conn!.up), [
      `saslauthd LOGIN {${Buffer.byteLength(login)}+}<${Buffer.byteLength(login)} bytes> "whatever"`,
      'saslauthd LOGOUT',
    ]);
    assert.deepEqual(
      taggedResponses(r.conn!.down).filter((t) => !t.startsWith('saslauthd ')),
      [],
    );
    assert.doesNotMatch(r.log, /Login: user=<victim>|DELETE|Mailbox/);
  });

  test('over STARTTLS (synchronizing literals after TLS) the payloads inject nothing either', async () => {
    for (const pw of PAYLOADS) {
      const r = await attempt(viaStarttls, undefined, VICTIM.name, pw);
      assert.equal(r.reply, REJECTED, JSON.stringify(pw));
      assertDovecotSawOneAttempt(r.log);
      assert.match(r.log, /TLS/);
    }
  });
});
