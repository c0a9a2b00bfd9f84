// Hostile and unusual clients over the real socket: each gets Cyrus's answer
// (or a closed connection), and the daemon keeps answering everyone else.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import net from 'node:net';
import { startDaemon, type RunningDaemon } from '../helpers/daemon';
import { createUser, removeAllUsers, runCmd, userName } from '../helpers/users';
import { field, lengthOnly, rawExchange, reply, request } from '../helpers/frames';
import { connectionsHeld } from '../helpers/procs';
import { sendRequest } from '../../src/client/request';

const PASSWORD = 'Pr0tocol-pw';

/**
 * A client that never closes its own side (allowHalfOpen): what the daemon
 * does with the connection after its answer is then up to the daemon alone.
 */
interface HeldClient {
  /** Bytes received so far. */
  bytes(): Buffer;
  /** Resolves once at least n bytes have arrived; rejects if the connection ends first. */
  received(n: number): Promise<Buffer>;
  /** Resolves once the daemon has sent EOF (its half-close or its close). */
  eof: Promise<void>;
  /** Resolves once the connection is gone, both ways. */
  closed: Promise<void>;
  /** Writes b: true if the daemon's side is still open, false once it has closed (EPIPE). */
  write(b: Buffer): Promise<boolean>;
  /** Ends our side (EOF to the daemon). */
  end(): void;
  destroy(): void;
}

function holdOpen(socketPath: string, first: Buffer): Promise<HeldClient> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ path: socketPath, allowHalfOpen: true });
    const got: Buffer[] = [];
    let ended = false;
    const wake: Array<() => void> = [];
    let onEof!: () => void;
    const eof = new Promise<void>((r) => (onEof = r));
    const closed = new Promise<void>((r) => s.once('close', () => r()));
    s.on('data', (d: Buffer) => {
      got.push(d);
      for (const w of wake.splice(0)) w();
    });
    s.on('end', () => {
      ended = true;
      onEof();
      for (const w of wake.splice(0)) w();
    });
    // EPIPE and ECONNRESET are what write() reports; nothing else is expected.
    s.on('error', () => undefined);
    s.once('connect', () => {
      s.write(first);
      resolve({
        bytes: () => Buffer.concat(got),
        async received(n) {
          for (;;) {
            const all = Buffer.concat(got);
            if (all.length >= n) return all;
            if (ended || s.destroyed) throw new Error(`connection ended after ${all.length} of ${n} bytes`);
            await new Promise<void>((r) => wake.push(r));
          }
        },
        eof,
        closed,
        write: (b) => new Promise<boolean>((r) => (s.destroyed ? r(false) : s.write(b, (err) => r(err == null)))),
        end: () => s.end(),
        destroy: () => s.destroy(),
      });
    });
    s.once('error', reject);
  });
}

// shadow without a cache is answered inside the native listener (decode,
// checks, reply in C++); with -c every request goes through the JavaScript
// decoder and authenticator. Both must behave the same on the wire.
const PATHS: [string, string[]][] = [
  ['native listener, shadow', []],
  ['JavaScript path, shadow -c', ['-c']],
];

for (const [path, extraArgs] of PATHS) {
  describe(`wire protocol against the running daemon (${path})`, () => {
    let d: RunningDaemon;
    let user: string;
    const good = (): Buffer => request({ login: user, password: PASSWORD, service: 'imap', realm: '' });
    const stillServes = async (): Promise<void> => {
      assert.equal(await sendRequest(d.socketPath, { login: user, password: PASSWORD, service: 'imap', realm: '' }), 'OK');
    };

    before(async () => {
      user = createUser(userName('pro'), PASSWORD, 'sha512crypt').name;
      d = await startDaemon({ args: ['-a', 'shadow', '-V', '--read-timeout', '1', '--drain-timeout', '1', ...extraArgs] });
    });
    after(async () => {
      removeAllUsers();
      await d?.stop();
    });

    test('answers a valid request with the 4 bytes \\0\\2OK, then half-closes', async () => {
      const c = await holdOpen(d.socketPath, good());
      try {
        await c.eof;
        assert.deepEqual(c.bytes(), Buffer.from('\0\x02OK', 'latin1'));
        // A half-close (shutdown SHUT_WR), not a close: the daemon still takes our bytes.
        assert.equal(await c.write(Buffer.from('x')), true, 'the EOF was a close, not a half-close');
      } finally {
        c.destroy();
      }
    });

    test('answers the 3-byte NO for a field longer than 256 bytes, without reading it', async () => {
      for (const i of [0, 1, 2, 3]) {
        const before = [field(user), field(PASSWORD), field('imap')].slice(0, i);
        const r = await rawExchange(d.socketPath, [Buffer.concat([...before, lengthOnly(257)])], { closeAfterSend: true });
        assert.deepEqual(r.bytes, reply('NO '), `field ${i}`);
      }
      await d.waitForLog(/password exceeded MAX_REQ_LEN: 256/);
      await stillServes();
    });

    test('accepts a field of exactly 256 bytes', async () => {
      const r = await rawExchange(
        d.socketPath,
        [request({ login: user, password: 'p'.repeat(256), service: 'imap', realm: '' })],
        { closeAfterSend: true },
      );
      assert.deepEqual(r.bytes, reply('NO Incorrect password'));
    });

    test('answers NO NULL login received / NO NULL password received for empty fields', async () => {
      const noLogin = await rawExchange(d.socketPath, [request({ login: '', password: 'x', service: '', realm: '' })], {
        closeAfterSend: true,
      });
      assert.deepEqual(noLogin.bytes, Buffer.from('\0\x16NO NULL login received', 'latin1'));
      const noPw = await rawExchange(d.socketPath, [request({ login: user, password: '', service: '', realm: '' })], {
        closeAfterSend: true,
      });
      assert.deepEqual(noPw.bytes, Buffer.from('\0\x19NO NULL password received', 'latin1'));
      const allEmpty = await rawExchange(d.socketPath, [Buffer.alloc(8)], { closeAfterSend: true });
      assert.deepEqual(allEmpty.bytes, reply('NO NULL login received'));
    });

    test('sends nothing and closes when the client ends mid-frame', async () => {
      const full = good();
      for (const cut of [1, 2, 3, full.length - 1]) {
        const r = await rawExchange(d.socketPath, [full.subarray(0, cut)], { closeAfterSend: true });
        assert.equal(r.bytes.length, 0, `cut at ${cut}`);
        assert.equal(r.closedByServer, true);
      }
      await stillServes();
    });

    test('survives clients that vanish mid-frame (reset)', async () => {
      const full = good();
      await Promise.all(
        Array.from({ length: 20 }, (_, i) =>
          rawExchange(d.socketPath, [full.subarray(0, 1 + (i % (full.length - 1)))], { destroyAfterSend: true }),
        ),
      );
      await stillServes();
    });

    test('closes an idle client after the read timeout, and serves others meanwhile', async () => {
      const idle = rawExchange(d.socketPath, [field(user)], { timeoutMs: 10_000 });
      await stillServes();
      const r = await idle;
      assert.equal(r.closedByServer, true);
      assert.equal(r.bytes.length, 0);
      assert.ok(r.elapsedMs < 9000, `closed after ${r.elapsedMs} ms`);
      await d.waitForLog(/request not received within the read timeout/);
    });

    // The timeouts below only guard against a hang: a daemon that never
    // drains, never answers four fields or never accepts would block forever.
    test(
      'closes a client that keeps the connection open after its answer, once the drain deadline (1 s) has passed',
      { timeout: 30_000 },
      async () => {
        // Counted from before the connect: the daemon's drain timer starts
        // later (at its answer), so it cannot fire sooner than this on any machine.
        const t0 = performance.now();
        const c = await holdOpen(d.socketPath, good());
        try {
          assert.deepEqual(await c.received(4), reply('OK'));
          await c.eof;
          // EOF was the half-close that follows the answer: our side is still read (and discarded).
          assert.equal(await c.write(Buffer.from('x')), true, 'the daemon closed at once instead of draining');
          // We never close: only the drain deadline can end the connection.
          while (await c.write(Buffer.from('x'))) await new Promise((r) => setTimeout(r, 20));
          const ms = performance.now() - t0;
          assert.ok(ms >= 1000, `closed ${ms.toFixed(0)} ms after connecting, before the 1 s drain deadline`);
          assert.deepEqual(c.bytes(), reply('OK'), 'nothing but the answer');
        } finally {
          c.destroy();
        }
      },
    );

    test('answers a client that half-closes right after sending', async () => {
      const r = await rawExchange(d.socketPath, [good()], { closeAfterSend: true });
      assert.deepEqual(r.bytes, reply('OK'));
    });

    test('takes each field in its own write, as Exim sends them', async () => {
      const chunks = [field(user), field(PASSWORD), field('smtp'), field('')];
      const r = await rawExchange(d.socketPath, chunks, { delayMs: 50, closeAfterSend: true });
      assert.deepEqual(r.bytes, reply('OK'));
    });

    test('accepts the 5-field form with a client address, and logs it', async () => {
      const bytes = request({ login: user, password: PASSWORD, service: 'smtp', realm: '', clientAddr: '192.0.2.9;4242' });
      const r = await rawExchange(d.socketPath, [bytes], { closeAfterSend: true });
      assert.deepEqual(r.bytes, reply('OK'));
      await d.waitForLog(/\[remote=192\.0\.2\.9;4242\]/);
    });

    test('answers as soon as the 4th field arrives even when a 5th follows later', { timeout: 30_000 }, async () => {
      // A unique service tells this request's log line from the others.
      const service = `four${Math.random().toString(36).slice(2, 8)}`;
      const c = await holdOpen(d.socketPath, request({ login: user, password: PASSWORD, service, realm: '' }));
      try {
        // Four fields sent, the connection held open, no 5th yet: the answer
        // must come anyway (a daemon that waited for more would time out the
        // read after 1 s and close without one).
        assert.deepEqual(await c.received(4), reply('OK'));
        // The 5th, late, into the still open connection: discarded. No
        // second answer, and the answer's log line has no address.
        assert.equal(await c.write(field('192.0.2.55;5555')), true, 'the connection was still open');
        c.end();
        const line = await d.waitForLog(new RegExp(`auth success: \\[user=${user}\\] \\[service=${service}\\]`));
        assert.doesNotMatch(line, /remote=/, 'answered from four fields');
        await c.closed;
        assert.deepEqual(c.bytes(), reply('OK'));
        const lines = d
          .output()
          .split('\n')
          .filter((l) => l.includes(`[service=${service}]`));
        assert.equal(lines.length, 1, lines.join('\n'));
        assert.doesNotMatch(d.output(), /192\.0\.2\.55/);
      } finally {
        c.destroy();
      }
    });

    test('ignores bytes after the request and still answers', async () => {
      const r = await rawExchange(d.socketPath, [Buffer.concat([good(), Buffer.from('garbage garbage')])], {
        closeAfterSend: true,
      });
      assert.deepEqual(r.bytes, reply('OK'));
    });

    test('random garbage gets NO or a closed connection, never a crash', async () => {
      let x = 12345;
      const rnd = (): number => (x = (x * 1103515245 + 12345) & 0x7fffffff);
      for (let i = 0; i < 50; i++) {
        const buf = Buffer.alloc(1 + (rnd() % 600));
        for (let j = 0; j < buf.length; j++) buf[j] = rnd() & 0xff;
        const r = await rawExchange(d.socketPath, [buf], { closeAfterSend: true, timeoutMs: 5000 });
        assert.equal(r.closedByServer, true);
        if (r.bytes.length > 0) assert.match(r.bytes.subarray(2).toString('latin1'), /^NO/);
      }
      await stillServes();
      assert.equal(d.child.exitCode, null);
    });

    test('3,000 idle connections do not stall a real login', { timeout: 120_000 }, async () => {
      // A daemon of its own whose read timeout outlasts the test: none of the
      // 3,000 may be closed while the login is answered.
      const held = await startDaemon({ args: ['-a', 'shadow', '--read-timeout', '3600', ...extraArgs] });
      const pid = held.child.pid!;
      const sockets: net.Socket[] = [];
      try {
        // Opened in batches, as connections arrive in real life: a burst of
        // 3,000 connect() calls at once overflows any listen backlog.
        for (let batch = 0; batch < 15; batch++) {
          await Promise.all(
            Array.from(
              { length: 200 },
              () =>
                new Promise<void>((resolve, reject) => {
                  const s = net.connect(held.socketPath, () => resolve());
                  s.on('error', reject);
                  sockets.push(s);
                }),
            ),
          );
        }
        // Connected is not yet accepted: wait until the daemon holds every one.
        while (connectionsHeld(pid, held.socketPath) < 3000) await new Promise((r) => setTimeout(r, 20));
        const answer = await sendRequest(held.socketPath, { login: user, password: PASSWORD, service: 'imap', realm: '' });
        assert.equal(answer, 'OK');
        assert.equal(connectionsHeld(pid, held.socketPath), 3000, 'all 3,000 still open in the daemon after the login');
        assert.ok(
          sockets.every((s) => !s.destroyed && s.readyState === 'open'),
          'no client saw its connection closed',
        );
      } finally {
        for (const s of sockets) s.destroy();
        await held.stop();
      }
    });

    test('the socket is mode 0777 (access is controlled by the directory)', () => {
      const st = fs.statSync(d.socketPath);
      assert.ok(st.isSocket());
      assert.equal(st.mode & 0o777, 0o777);
    });
  });
}

describe('out of descriptors', () => {
  let user: string;
  before(() => {
    user = createUser(userName('fds'), PASSWORD, 'sha512crypt').name;
  });
  after(() => removeAllUsers());

  const connectIdle = (socketPath: string, n: number): Promise<net.Socket[]> =>
    Promise.all(
      Array.from(
        { length: n },
        () =>
          new Promise<net.Socket>((resolve, reject) => {
            const s = net.connect(socketPath, () => resolve(s));
            s.on('error', reject);
          }),
      ),
    );

  test('past the connection limit new clients wait in the backlog, keeping descriptors for the mechanism', async () => {
    // 120 descriptors, 64 kept back: 56 connections at most.
    const d = await startDaemon({ args: ['-a', 'shadow', '--read-timeout', '60'], nofile: 120 });
    const idle: net.Socket[] = [];
    try {
      idle.push(...(await connectIdle(d.socketPath, 80)));
      await d.waitForLog(/connection limit reached: 56 open/);
      // This one waits in the backlog behind 24 idle ones until slots free up;
      // then the mechanism still has descriptors to read /etc/passwd and /etc/shadow.
      // Connected (queued in the backlog) and sent before any slot frees up.
      const c = await holdOpen(d.socketPath, request({ login: user, password: PASSWORD, service: 'imap', realm: '' }));
      try {
        for (const s of idle.splice(0, 40)) s.destroy();
        assert.deepEqual(await c.received(4), reply('OK'));
      } finally {
        c.destroy();
      }
      assert.equal(d.child.exitCode, null);
    } finally {
      for (const s of idle) s.destroy();
      await d.stop();
    }
  });

  test('EMFILE pauses accepting with one log line, and serving resumes once descriptors free up', async () => {
    const d = await startDaemon({ args: ['-a', 'shadow', '--read-timeout', '60'] });
    const idle: net.Socket[] = [];
    try {
      const pid = d.child.pid!;
      const open = fs.readdirSync(`/proc/${pid}/fd`).length;
      runCmd('prlimit', ['--pid', String(pid), `--nofile=${open + 10}:${open + 10}`]);
      idle.push(...(await connectIdle(d.socketPath, 30)));
      await d.waitForLog(/socket accept failure: EMFILE/);
      for (const s of idle.splice(0)) s.destroy();
      assert.equal(await sendRequest(d.socketPath, { login: user, password: PASSWORD, service: 'imap', realm: '' }), 'OK');
      assert.equal(d.output().match(/socket accept failure/g)?.length, 1, 'one line, not one per attempt');
    } finally {
      for (const s of idle) s.destroy();
      await d.stop();
    }
  });
});
