// The rimap dialogue against scripted fake IMAP servers: Cyrus's replies for
// each server behaviour, literals and continuations, failover before the
// password is sent (never after), timeouts, aborts, and no password in logs.
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import pino from 'pino';
import { REPLY, RimapBackend, type LookupFn, sanitizeLine } from '../../../../src/backends/rimap/backend';
import { DEFAULT_CONNECT_TIMEOUT_MS, DEFAULT_TIMEOUT_MS, parseRimapOption } from '../../../../src/backends/rimap/options';
import type { Outcome } from '../../../../src/backends/backend';
import { freePort } from '../../../helpers/dovecot';
import { type FakeImapServer, startFakeImapServer, startSilentServer } from '../../../helpers/tcp';

const GREETING = '* OK [CAPABILITY IMAP4rev1] fake ready\r\n';
const PASSWORD = 'S3cret-pw';

const cleanups: Array<() => Promise<void>> = [];
after(async () => {
  for (const c of cleanups.splice(0)) await c();
});

function logger(): { log: pino.Logger; text: () => string } {
  const lines: string[] = [];
  const log = pino({ level: 'debug' }, { write: (s: string) => void lines.push(s) });
  return { log, text: () => lines.join('') };
}

async function fake(script: Parameters<typeof startFakeImapServer>[0]): Promise<FakeImapServer> {
  const s = await startFakeImapServer(script);
  cleanups.push(() => s.close());
  return s;
}

/** A server that greets, reads the LOGIN line and answers it with `answer` (tag substituted). */
function answering(answer: string, greeting = GREETING) {
  return fake(async (sock, readLine) => {
    sock.write(greeting);
    const line = await readLine();
    const tag = line.split(' ')[0]!;
    sock.write(answer.replace('TAG', tag));
  });
}

/** Never more than this from a streaming fake, whatever the client does. */
const STREAM_CAP = 64 * 1024 * 1024;

/**
 * A server that greets, then, once the LOGIN line has arrived, sends first and
 * then chunk after chunk for as long as the client reads (up to STREAM_CAP).
 */
async function streaming(first: string, chunk: Buffer) {
  let written = 0;
  let closedByClient = false;
  const srv = await fake(async (sock, readLine) => {
    sock.on('close', () => (closedByClient = written < STREAM_CAP));
    sock.write(GREETING);
    await readLine();
    sock.write(first);
    const pump = (): void => {
      while (!sock.destroyed && written < STREAM_CAP) {
        written += chunk.length;
        if (!sock.write(chunk)) {
          sock.once('drain', pump);
          return;
        }
      }
    };
    pump();
  });
  return { srv, written: () => written, closedByClient: () => closedByClient };
}

function backend(option: string, lookup?: LookupFn) {
  const l = logger();
  const b = new RimapBackend(parseRimapOption(option), l.log, lookup ? { lookup } : undefined);
  cleanups.push(() => b.close());
  return { b, logText: l.text };
}

function auth(b: RimapBackend, password = PASSWORD, signal = new AbortController().signal, login = 'alice'): Promise<Outcome> {
  return b.authenticate({ login, password: Buffer.from(password, 'utf8'), service: 'imap', realm: '' }, signal);
}

describe('rimap backend: Cyrus replies', () => {
  test('tagged OK gives "OK remote authentication successful" and the LOGIN line Cyrus sends', async () => {
    const srv = await answering('TAG OK [CAPABILITY IMAP4rev1] Logged in\r\n');
    const { b } = backend(`127.0.0.1/${srv.port}`);
    assert.deepEqual(await auth(b), { ok: true, text: REPLY.ok });
    await waitFor(() => srv.received()[0]!.toString().includes('LOGOUT'));
    assert.equal(srv.received()[0]!.toString(), `saslauthd LOGIN "alice" "${PASSWORD}"\r\nsaslauthd LOGOUT\r\n`);
  });

  test('tagged NO gives "NO remote server rejected your credentials" as denied', async () => {
    const srv = await answering('TAG NO [AUTHENTICATIONFAILED] Authentication failed.\r\n');
    const { b } = backend(`127.0.0.1/${srv.port}`);
    const o = await auth(b);
    assert.deepEqual([o.ok, o.text, !o.ok && o.kind], [false, REPLY.rejected, 'denied']);
  });

  test('NO [UNAVAILABLE] is the server failing, not wrong credentials', async () => {
    const srv = await answering('TAG NO [UNAVAILABLE] Temporary authentication failure.\r\n');
    const { b } = backend(`127.0.0.1/${srv.port}`);
    const o = await auth(b);
    assert.deepEqual([o.text, !o.ok && o.kind], [REPLY.unavailable, 'unavailable']);
  });

  test('tagged BAD gives the Unexpected response alert', async () => {
    const srv = await answering('TAG BAD Error in IMAP command\r\n');
    const { b } = backend(`127.0.0.1/${srv.port}`);
    const o = await auth(b);
    assert.deepEqual([o.text, !o.ok && o.kind], [REPLY.unexpected, 'unavailable']);
  });

  test('untagged lines before the tagged answer are skipped (Cyrus would call them malformed)', async () => {
    const srv = await answering('* OK [ALERT] password expires soon\r\n* CAPABILITY IMAP4rev1\r\nTAG OK done\r\n');
    const { b } = backend(`127.0.0.1/${srv.port}`);
    assert.equal((await auth(b)).text, REPLY.ok);
  });

  test('a * BYE or * NO greeting means unavailable', async () => {
    for (const greeting of ['* BYE too many connections\r\n', '* NO go away\r\n']) {
      const srv = await fake((sock) => void sock.end(greeting));
      const { b } = backend(`127.0.0.1/${srv.port}`);
      assert.equal((await auth(b)).text, REPLY.unavailable, greeting);
    }
  });

  test('a PREAUTH or garbage greeting means Unexpected response', async () => {
    for (const greeting of ['* PREAUTH welcome\r\n', 'HTTP/1.1 400 Bad Request\r\n']) {
      const srv = await fake((sock) => void sock.end(greeting));
      const { b } = backend(`127.0.0.1/${srv.port}`);
      assert.equal((await auth(b)).text, REPLY.unexpected, greeting);
    }
  });

  test('a server that closes after LOGIN without answering gives Unexpected response', async () => {
    const srv = await fake(async (sock, readLine) => {
      sock.write(GREETING);
      await readLine();
      sock.end('* BYE shutting down\r\n');
    });
    const { b, logText } = backend(`127.0.0.1/${srv.port}`);
    assert.equal((await auth(b)).text, REPLY.unexpected);
    assert.match(logText(), /BYE shutting down/);
  });

  test('an endless response gives the error synchronizing alert', async () => {
    const srv = await fake((sock) => {
      sock.write('* OK ');
      sock.write(Buffer.alloc(70 * 1024, 0x41));
    });
    const { b } = backend(`127.0.0.1/${srv.port}`);
    assert.equal((await auth(b)).text, REPLY.sync);
  });

  test('a server streaming one endless response is cut off with the error synchronizing alert', async () => {
    const stream = await streaming('* OK ', Buffer.alloc(64 * 1024, 0x41));
    const { b } = backend(`127.0.0.1/${stream.srv.port}`);
    assert.equal((await auth(b)).text, REPLY.sync);
    await waitFor(() => stream.closedByClient());
    assert.ok(stream.written() < STREAM_CAP, `${stream.written()} bytes accepted`);
  });

  test('a server streaming endless short untagged lines is cut off with the error synchronizing alert', async () => {
    const stream = await streaming('', Buffer.from('* OK still talking\r\n'.repeat(4096)));
    const { b } = backend(`127.0.0.1/${stream.srv.port}`);
    // Every line resets the per-read timeout; only the request's deadline would end it.
    assert.equal((await auth(b, PASSWORD, AbortSignal.timeout(60_000))).text, REPLY.sync);
    await waitFor(() => stream.closedByClient());
    assert.ok(stream.written() < STREAM_CAP, `${stream.written()} bytes accepted`);
  });

  test("a refused connection gives Couldn't contact remote authentication server", async () => {
    const { b, logText } = backend(`127.0.0.1/${await freePort()}`);
    const o = await auth(b);
    assert.deepEqual([o.text, !o.ok && o.kind], [REPLY.noContact, 'unavailable']);
    assert.match(logText(), /"code":"RIMAP_CONNECT".*"sysCode":"ECONNREFUSED"/);
  });
});

describe('rimap backend: literals and capabilities', () => {
  test('without LITERAL+ it sends {n}, waits for "+", then the bytes', async () => {
    let earlyBytes = -1;
    const pw = 'pw\r\nsaslauthd2 LOGOUT';
    const srv = await fake(async (sock, readLine, readBytes) => {
      sock.write(GREETING);
      const line = await readLine();
      const n = Number(/\{(\d+)\}\r\n$/.exec(line)?.[1]);
      await new Promise((r) => setTimeout(r, 150));
      earlyBytes = srv.received()[0]!.length - Buffer.byteLength(line);
      sock.write('+ go ahead\r\n');
      const body = await readBytes(n + 2);
      sock.write(
        body.toString('latin1') === `${pw}\r\n` ? 'saslauthd NO [AUTHENTICATIONFAILED] wrong\r\n' : 'saslauthd BAD garbled\r\n',
      );
    });
    const { b } = backend(`127.0.0.1/${srv.port}`);
    assert.equal((await auth(b, pw)).text, REPLY.rejected);
    assert.equal(earlyBytes, 0, 'nothing may follow {n} before the continuation');
    const sent = srv.received()[0]!.toString('latin1');
    assert.ok(sent.startsWith(`saslauthd LOGIN "alice" {${Buffer.byteLength(pw)}}\r\n${pw}\r\n`), sent);
  });

  test('with LITERAL+ in the greeting it sends {n+} at once', async () => {
    const srv = await answering('TAG OK in\r\n', '* OK [CAPABILITY IMAP4rev1 LITERAL+] ready\r\n');
    const { b } = backend(`127.0.0.1/${srv.port}`);
    assert.equal((await auth(b, 'pässwörd')).text, REPLY.ok);
    assert.ok(srv.received()[0]!.toString('utf8').startsWith('saslauthd LOGIN "alice" {10+}\r\npässwörd\r\n'));
  });

  test('a tagged NO instead of "+" ends LOGIN and the literal is never sent', async () => {
    const srv = await fake(async (sock, readLine) => {
      sock.write(GREETING);
      await readLine();
      sock.write('saslauthd NO literal too big\r\n');
    });
    const { b } = backend(`127.0.0.1/${srv.port}`);
    assert.equal((await auth(b, 'x\ny')).text, REPLY.rejected);
    // LOGOUT is the last thing the client sends: once it is here, so is everything.
    await waitFor(() => srv.received()[0]!.includes('LOGOUT'));
    assert.ok(!srv.received()[0]!.includes('x\ny'), 'password bytes stayed home');
  });

  test('a tagged OK in place of the "+" continuation is a protocol error, never a success', async () => {
    const srv = await fake(async (sock, readLine) => {
      sock.write(GREETING);
      await readLine();
      sock.write('saslauthd OK [CAPABILITY IMAP4rev1] Logged in\r\n');
    });
    const { b, logText } = backend(`127.0.0.1/${srv.port}`);
    const o = await auth(b, 'wrong\npassword');
    assert.deepEqual([o.ok, o.text, !o.ok && o.kind], [false, REPLY.unexpected, 'unavailable']);
    assert.match(logText(), /"code":"RIMAP_PROTOCOL".*LOGIN: unexpected response in place of the .*continuation: saslauthd OK/);
    assert.ok(!srv.received()[0]!.includes('wrong\npassword'), 'password bytes stayed home');
  });

  test('a tagged BAD in place of the "+" continuation ends LOGIN with the Unexpected response alert', async () => {
    const srv = await fake(async (sock, readLine) => {
      sock.write(GREETING);
      await readLine();
      sock.write('saslauthd BAD literal refused\r\n');
    });
    const { b } = backend(`127.0.0.1/${srv.port}`);
    const o = await auth(b, 'x\ny');
    assert.deepEqual([o.ok, o.text, !o.ok && o.kind], [false, REPLY.unexpected, 'unavailable']);
  });

  test('LOGINDISABLED on a clear-text connection: the password is not sent', async () => {
    const srv = await fake((sock) => void sock.write('* OK [CAPABILITY IMAP4rev1 LOGINDISABLED STARTTLS] ready\r\n'));
    const { b, logText } = backend(`127.0.0.1/${srv.port}`);
    assert.equal((await auth(b)).text, REPLY.unexpected);
    assert.equal(srv.received()[0]!.length, 0);
    assert.match(logText(), /LOGINDISABLED/);
  });

  test('a NUL byte in the password is refused without contacting anyone', async () => {
    const silent = await startSilentServer();
    cleanups.push(() => silent.close());
    const { b } = backend(`127.0.0.1/${silent.port}`);
    const o = await auth(b, 'a\0b');
    assert.deepEqual([o.text, !o.ok && o.kind], [REPLY.rejected, 'denied']);
    assert.equal(silent.accepted(), 0);
  });
});

describe('rimap backend: STARTTLS', () => {
  test('STARTTLS refused: Unexpected response, no password sent', async () => {
    const srv = await fake(async (sock, readLine) => {
      sock.write(GREETING);
      const line = await readLine();
      sock.write(`${line.split(' ')[0]!} BAD no TLS here\r\n`);
    });
    const { b, logText } = backend(`imap://127.0.0.1:${srv.port}`);
    assert.equal((await auth(b)).text, REPLY.unexpected);
    assert.equal(srv.received()[0]!.toString(), 'saslauthd0 STARTTLS\r\n');
    assert.match(logText(), /RIMAP_STARTTLS_REFUSED/);
  });

  test('clear-text bytes after the STARTTLS OK are refused (no response injection)', async () => {
    const srv = await fake(async (sock, readLine) => {
      sock.write(GREETING);
      const line = await readLine();
      sock.write(`${line.split(' ')[0]!} OK begin TLS\r\nsaslauthd OK [injected] forged\r\n`);
    });
    const { b, logText } = backend(`imap://127.0.0.1:${srv.port}`);
    assert.equal((await auth(b)).text, REPLY.unexpected);
    assert.match(logText(), /clear text after agreeing to STARTTLS/);
    assert.equal(srv.received()[0]!.toString(), 'saslauthd0 STARTTLS\r\n');
  });
});

describe('rimap backend: several servers, resolution, deadlines', () => {
  test('a dead first server: the second answers', async () => {
    const srv = await answering('TAG OK in\r\n');
    const { b, logText } = backend(`127.0.0.1/${await freePort()},127.0.0.1/${srv.port}`);
    assert.equal((await auth(b)).text, REPLY.ok);
    assert.match(logText(), /trying the next server/);
  });

  test('servers() reports each server down after a failed try and up once it answers (metrics, status line)', async () => {
    const srv = await answering('TAG OK in\r\n');
    const deadPort = await freePort();
    const { b } = backend(`127.0.0.1/${deadPort},127.0.0.1/${srv.port}`);
    const names = [`imap://127.0.0.1:${deadPort}?plain`, `imap://127.0.0.1:${srv.port}?plain`];
    assert.deepEqual(
      b.servers(),
      names.map((name) => ({ name, up: true })),
      'untried servers count as up',
    );
    assert.equal((await auth(b)).text, REPLY.ok);
    assert.deepEqual(b.servers(), [
      { name: names[0], up: false },
      { name: names[1], up: true },
    ]);
  });

  test('a BYE greeting moves on to the next server too', async () => {
    const bye = await fake((sock) => void sock.end('* BYE busy\r\n'));
    const srv = await answering('TAG OK in\r\n');
    const { b } = backend(`127.0.0.1/${bye.port},127.0.0.1/${srv.port}`);
    assert.equal((await auth(b)).text, REPLY.ok);
  });

  test('once the password was sent, the answer stands: no second server sees it', async () => {
    const first = await answering('TAG BAD what\r\n');
    const second = await answering('TAG OK in\r\n');
    const { b } = backend(`127.0.0.1/${first.port},127.0.0.1/${second.port}`);
    assert.equal((await auth(b)).text, REPLY.unexpected);
    assert.equal(second.received().length, 0);
  });

  test('resolves the name at every authentication and tries each address', async () => {
    const srv = await answering('TAG OK in\r\n');
    let calls = 0;
    const lookup: LookupFn = async (host) => {
      calls++;
      assert.equal(host, 'imap.test');
      return calls === 1
        ? [{ address: '127.0.0.2', family: 4 }]
        : [
            { address: '127.0.0.3', family: 4 },
            { address: '127.0.0.1', family: 4 },
          ];
    };
    // 127.0.0.2/3 refuse on this port; only 127.0.0.1 runs the fake server.
    const { b } = backend(`imap.test/${srv.port}`, lookup);
    assert.equal((await auth(b)).text, REPLY.noContact, 'first resolution: only a dead address');
    assert.equal((await auth(b)).text, REPLY.ok, 'second resolution: a live address after a dead one');
    assert.equal(calls, 2);
  });

  test("a failing lookup is Couldn't contact, and the next server is tried", async () => {
    const srv = await answering('TAG OK in\r\n');
    const lookup: LookupFn = async (host) => {
      if (host === 'gone.test') throw Object.assign(new Error('getaddrinfo ENOTFOUND gone.test'), { code: 'ENOTFOUND' });
      return [{ address: '127.0.0.1', family: 4 }];
    };
    const { b, logText } = backend(`gone.test,imap.test/${srv.port}`, lookup);
    assert.equal((await auth(b)).text, REPLY.ok);
    assert.match(logText(), /RIMAP_DNS/);
  });

  test('a resolver that hangs is given up after connect_timeout, and the next server is tried', async () => {
    const srv = await answering('TAG OK in\r\n');
    const lookup: LookupFn = (host) =>
      host === 'slow.test' ? new Promise(() => undefined) : Promise.resolve([{ address: '127.0.0.1', family: 4 }]);
    const { b, logText } = backend(`imap://slow.test?plain&connect_timeout=0.2,imap.test/${srv.port}`, lookup);
    const t0 = Date.now();
    assert.equal((await auth(b)).text, REPLY.ok);
    // Given up at connect_timeout (0.2 s), not at the 5 s default: a bound
    // between the two, far above what the work takes.
    const ms = Date.now() - t0;
    assert.ok(ms >= 190 && ms < DEFAULT_CONNECT_TIMEOUT_MS, `${ms} ms`);
    assert.match(logText(), /RIMAP_DNS.*ETIMEOUT|ETIMEOUT.*RIMAP_DNS/);
  });

  test('a silent server is given up after timeout= with the unavailable alert', async () => {
    const silent = await startSilentServer();
    cleanups.push(() => silent.close());
    const { b, logText } = backend(`imap://127.0.0.1:${silent.port}?plain&timeout=0.3`);
    const t0 = Date.now();
    const o = await auth(b);
    const ms = Date.now() - t0;
    assert.deepEqual([o.text, !o.ok && o.kind], [REPLY.unavailable, 'unavailable']);
    // The log names the timer that fired (300 ms): no upper bound needed.
    assert.ok(ms >= 250, `${ms} ms`);
    assert.match(logText(), /greeting: server sent nothing for 300 ms/);
  });

  test('the AbortSignal ends a wait at once and closes the connection', async () => {
    let closed = false;
    const srv = await fake((sock) => {
      sock.on('close', () => (closed = true));
    });
    const { b } = backend(`127.0.0.1/${srv.port}`);
    const ac = new AbortController();
    setTimeout(() => ac.abort(), 100);
    const t0 = Date.now();
    const o = await auth(b, PASSWORD, ac.signal);
    // At the abort (100 ms), not at the 10 s step timeout: a bound between the two.
    assert.ok(Date.now() - t0 < DEFAULT_TIMEOUT_MS / 2, `${Date.now() - t0} ms`);
    assert.equal(!o.ok && o.kind, 'unavailable');
    await waitFor(() => closed);
  });

  test('close() drops connections in flight', async () => {
    let closed = false;
    const srv = await fake((sock) => {
      sock.on('close', () => (closed = true));
    });
    const { b } = backend(`127.0.0.1/${srv.port}`);
    const pending = auth(b);
    await waitFor(() => srv.received().length === 1);
    await b.close();
    assert.equal(!(await pending).ok, true);
    await waitFor(() => closed);
  });
});

describe('rimap backend: the password stays out of logs', () => {
  test('a server echoing the password in its answer is logged redacted', async () => {
    const srv = await fake(async (sock, readLine) => {
      sock.write(GREETING);
      const line = await readLine();
      sock.write(`saslauthd BAD you said: ${line.trim()}\r\n`);
    });
    const { b, logText } = backend(`127.0.0.1/${srv.port}`);
    assert.equal((await auth(b)).text, REPLY.unexpected);
    assert.match(logText(), /\[redacted\]/);
    assert.ok(!logText().includes(PASSWORD), logText());
  });
});

describe('sanitizeLine', () => {
  test('redacts the password as sent and in its quoted-string form, with " and \\ escaped', () => {
    const secret = Buffer.from('pa"ss\\wd');
    assert.equal(sanitizeLine(Buffer.from('saslauthd NO pa"ss\\wd'), [secret]), 'saslauthd NO [redacted]');
    assert.equal(sanitizeLine(Buffer.from('NO you said "pa\\"ss\\\\wd"'), [secret]), 'NO you said "[redacted]"');
  });

  test('redacts each piece of a password between its line breaks, as an echoed literal splits it', () => {
    const secret = Buffer.from('first-line\r\nsecond-line');
    assert.equal(sanitizeLine(Buffer.from('BAD first-line'), [secret]), 'BAD [redacted]');
    assert.equal(sanitizeLine(Buffer.from('second-line was there'), [secret]), '[redacted] was there');
  });

  test('leaves pieces shorter than three bytes, which would blank out common words', () => {
    assert.equal(sanitizeLine(Buffer.from('NO ab cd'), [Buffer.from('ab\ncd-long')]), 'NO ab cd');
  });
});

async function waitFor(cond: () => boolean, timeoutMs = 3000): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > until) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 20));
  }
}
