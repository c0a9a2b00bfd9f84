// The daemon's command line and lifecycle: Cyrus's flags and exit codes,
// detaching with a pid file, refusing to steal a live socket, and a clean
// SIGTERM that answers in-flight requests first.
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { DAEMON_BIN, CLIENT_BIN, startDaemon, waitForSocket } from '../helpers/daemon';
import { runTool } from '../helpers/testsaslauthd';
import { childPids } from '../helpers/procs';
import { startFakeImapServer } from '../helpers/tcp';
import { createUser, removeAllUsers, userName } from '../helpers/users';
import { sendRequest } from '../../src/client/request';

const node = process.execPath;
const tmpDirs: string[] = [];
const tmp = (): string => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'saslauthd-ts-cli-'));
  tmpDirs.push(dir);
  return dir;
};
after(() => {
  for (const dir of tmpDirs) fs.rmSync(dir, { recursive: true, force: true });
});

describe('saslauthd-ts command line', () => {
  after(() => removeAllUsers());

  test('-v prints the version and mechanisms on stderr and exits 0', async () => {
    const r = await runTool(node, [DAEMON_BIN, '-v']);
    assert.equal(r.code, 0);
    assert.match(r.stderr, /^saslauthd-ts \d+\.\d+\.\d+\nauthentication mechanisms: .*shadow/);
  });

  test('-h lists every Cyrus flag and exits 0', async () => {
    const r = await runTool(node, [DAEMON_BIN, '-h']);
    assert.equal(r.code, 0);
    for (const flag of ['-a', '-O', '-m', '-n', '-c', '-s', '-t', '-r', '-l', '-d', '-f', '-V', '-v', '-h']) {
      assert.match(r.stdout, new RegExp(`^\\s+${flag}[ ,]`, 'm'), `${flag} in --help`);
    }
  });

  test('without -a it says no mechanism was given and exits 1', async () => {
    const r = await runTool(node, [DAEMON_BIN, '-f', '-m', tmp()]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /no authentication mechanism specified/);
  });

  test('an unknown mechanism is refused with exit 1', async () => {
    const r = await runTool(node, [DAEMON_BIN, '-f', '-a', 'nosuch', '-m', tmp()]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /unknown authentication mechanism: nosuch/);
  });

  test('a Cyrus mechanism we do not implement is named as such', async () => {
    const r = await runTool(node, [DAEMON_BIN, '-f', '-a', 'sasldb', '-m', tmp()]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /sasldb is a Cyrus mechanism that saslauthd-ts does not implement/);
  });

  test('--routes together with -a is a startup error, exit 1', async () => {
    const dir = tmp();
    const routes = path.join(dir, 'routes');
    fs.writeFileSync(routes, '* shadow\n');
    const r = await runTool(node, [DAEMON_BIN, '-f', '--routes', routes, '-a', 'shadow', '-m', dir]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /--routes and -a cannot be used together/);
  });

  test('an invalid routes file stops the start with its line and column, exit 1', async () => {
    const dir = tmp();
    const routes = path.join(dir, 'routes');
    fs.writeFileSync(routes, '-  shadow\nexample.org  ldpa\n');
    const r = await runTool(node, [DAEMON_BIN, '-f', '--routes', routes, '-m', dir]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, new RegExp(`${routes}:2:14: unknown mechanism 'ldpa'`));
    assert.equal(fs.existsSync(path.join(dir, 'mux')), false);
  });

  test('a chain that -O cannot serve is a startup error naming --routes', async () => {
    const r = await runTool(node, [DAEMON_BIN, '-f', '-a', 'ldap,rimap', '-O', 'x', '-m', tmp()]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /both take an option .*use --routes/);
  });

  test('-a is case-insensitive, as in Cyrus', async () => {
    const d = await startDaemon({ args: ['-a', 'SHADOW'] });
    assert.equal(await d.stop(), 0);
  });

  test('-m must be absolute', async () => {
    const r = await runTool(node, [DAEMON_BIN, '-f', '-a', 'shadow', '-m', 'relative/dir']);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /-m requires an absolute pathname/);
  });

  test('an unknown option is an error naming it', async () => {
    const r = await runTool(node, [DAEMON_BIN, '-T', '-a', 'shadow']);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /unknown option '-T'/);
  });

  test('bad numbers for -n, -s, -t are refused', async () => {
    for (const args of [
      ['-n', 'x'],
      ['-t', '0'],
      ['-s', '0'],
    ]) {
      const r = await runTool(node, [DAEMON_BIN, '-f', '-a', 'shadow', '-m', tmp(), ...args]);
      assert.equal(r.code, 1, args.join(' '));
      assert.match(r.stderr, new RegExp(args[0]!));
    }
  });

  test('creates a missing run directory', async () => {
    const dir = path.join(tmp(), 'a', 'b');
    const d = await startDaemon({ args: ['-a', 'shadow'], runDir: dir });
    assert.ok(fs.statSync(dir).isDirectory());
    await d.stop();
  });

  test('replaces a stale socket left by a crashed daemon', async () => {
    const dir = tmp();
    const crashed = await startDaemon({ args: ['-a', 'shadow'], runDir: dir });
    crashed.child.kill('SIGKILL');
    await crashed.stop();
    assert.ok(fs.existsSync(crashed.socketPath), 'SIGKILL leaves the socket file behind');
    const d = await startDaemon({ args: ['-a', 'shadow'], runDir: dir });
    const answer = await sendRequest(d.socketPath, { login: 'nobody-here', password: 'x', service: '', realm: '' });
    assert.equal(answer, 'NO Invalid username');
    assert.equal(await d.stop(), 0);
  });

  test('refuses to start while another daemon answers on the socket (exit 2)', async () => {
    const d = await startDaemon({ args: ['-a', 'shadow'] });
    try {
      const r = await runTool(node, [DAEMON_BIN, '-f', '-a', 'shadow', '-m', d.runDir]);
      assert.equal(r.code, 2);
      assert.match(r.stderr, /another saslauthd is already answering on .*mux/);
      // and the first one still works
      const answer = await sendRequest(d.socketPath, { login: 'nobody-here', password: 'x', service: '', realm: '' });
      assert.equal(answer, 'NO Invalid username');
    } finally {
      await d.stop();
    }
  });

  test('SIGTERM answers the request in flight, removes the socket and exits 0', async () => {
    // rimap against a fake IMAP server that holds its answer to LOGIN until
    // the daemon has taken SIGTERM: the request is in flight by construction,
    // whatever the machine's speed.
    let atLogin!: () => void;
    const loginSent = new Promise<void>((r) => (atLogin = r));
    let release!: () => void;
    const released = new Promise<void>((r) => (release = r));
    const imap = await startFakeImapServer(async (sock, readLine, readBytes) => {
      sock.write('* OK fake ready\r\n');
      let line = await readLine();
      for (;;) {
        const m = /\{(\d+)\}\r\n$/.exec(line);
        if (m === null) break;
        sock.write('+ go on\r\n');
        await readBytes(Number(m[1]));
        line = await readLine();
      }
      atLogin();
      await released;
      sock.write('saslauthd OK logged in\r\n');
    });
    try {
      const d = await startDaemon({ args: ['-a', 'rimap', '-O', `127.0.0.1/${imap.port}`] });
      const inFlight = sendRequest(d.socketPath, { login: 'alice', password: 'Term-pw1', service: 'imap', realm: '' });
      await loginSent;
      const stopped = d.stop();
      await d.waitForLog(/shutting down/);
      release();
      assert.equal(await inFlight, 'OK remote authentication successful');
      assert.equal(await stopped, 0);
      assert.equal(fs.existsSync(d.socketPath), false);
      await d.waitForLog(/master exited/);
    } finally {
      release();
      await imap.close();
    }
  });

  test('a SIGTERM that comes as soon as the socket listens still stops the daemon cleanly', async () => {
    // strace holds the daemon on its way back from listen(2) (for 5 s, far
    // longer than a connect takes): the socket already takes connections,
    // so a client or an init script may signal us, while the rest of
    // startup has not run yet. The signal must find our handler, not the
    // default action that kills the daemon and leaves its socket behind.
    const dir = tmp();
    const tracer = spawn(
      'strace',
      [
        '-f',
        '-qq',
        '-o',
        '/dev/null',
        '-e',
        'trace=listen',
        '-e',
        'inject=listen:delay_exit=5000000',
        node,
        DAEMON_BIN,
        '-f',
        '-a',
        'shadow',
        '-m',
        dir,
      ],
      { stdio: 'ignore' },
    );
    const exited = new Promise<string>((resolve) => tracer.once('exit', (code, signal) => resolve(signal ?? String(code))));
    try {
      await waitForSocket(path.join(dir, 'mux'), 10_000, tracer);
      const [pid] = childPids(tracer.pid!);
      assert.ok(pid !== undefined, 'the daemon runs under strace');
      assert.match(fs.readFileSync(`/proc/${pid}/status`, 'utf8'), /^State:\s+t/m, 'still held in listen(2)');
      process.kill(pid, 'SIGTERM');
      // strace exits as the daemon did (with its status, or by its signal).
      assert.equal(await exited, '0');
      assert.equal(fs.existsSync(path.join(dir, 'mux')), false, 'socket removed');
    } finally {
      tracer.kill('SIGKILL');
    }
  });

  test('detaches like Cyrus: exits 0 once listening, writes saslauthd.pid, and cleans up on SIGTERM', async () => {
    const dir = tmp();
    const r = await runTool(node, [DAEMON_BIN, '-a', 'shadow', '-m', dir]);
    assert.equal(r.code, 0, r.stderr);
    const pidFile = path.join(dir, 'saslauthd.pid');
    const pid = Number(fs.readFileSync(pidFile, 'utf8').trim());
    assert.ok(pid > 0);
    assert.equal(fs.statSync(pidFile).mode & 0o777, 0o600);
    await waitForSocket(path.join(dir, 'mux'), 1000); // already listening: no wait needed
    process.kill(pid, 'SIGTERM');
    const until = Date.now() + 10_000;
    while (fs.existsSync(pidFile) && Date.now() < until) await new Promise((res) => setTimeout(res, 50));
    assert.equal(fs.existsSync(pidFile), false);
    assert.equal(fs.existsSync(path.join(dir, 'mux')), false);
  });

  test('a detached start that fails reports the reason and a non-zero status', async () => {
    const r = await runTool(node, [DAEMON_BIN, '-a', 'nosuch', '-m', tmp()]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /unknown authentication mechanism: nosuch/);
  });

  test('-c -s -t size the cache as Cyrus would and say so at startup', async () => {
    const d = await startDaemon({ args: ['-a', 'shadow', '-c', '-s', '96', '-t', '60'] });
    await d.stop();
    // Cyrus 2.1.28's cache.c for -s 96: 173 slots (the first prime at or
    // above 96 KiB / (6 x 96 bytes) that holds 96 KiB) of 6 buckets.
    assert.match(d.output(), /credential cache: 1038 entries, 60 s, mode normal/);
  });
});

describe('testsaslauthd-ts', () => {
  after(() => removeAllUsers());

  test('prints the stock output lines and exit codes', async () => {
    const u = createUser(userName('tc'), 'Client-pw1');
    const d = await startDaemon({ args: ['-a', 'shadow'] });
    try {
      const ok = await runTool(node, [CLIENT_BIN, '-f', d.socketPath, '-u', u.name, '-p', u.password]);
      assert.equal(ok.stdout, '0: OK "Success."\n');
      assert.equal(ok.code, 0);
      const no = await runTool(node, [CLIENT_BIN, '-f', d.socketPath, '-u', u.name, '-p', 'bad', '-R', '2']);
      assert.equal(no.stdout, '0: NO "authentication failed"\n1: NO "authentication failed"\n');
      assert.equal(no.code, 255);
      const json = await runTool(node, [CLIENT_BIN, '-f', d.socketPath, '-u', u.name, '-p', 'bad', '--json']);
      assert.deepEqual(JSON.parse(json.stdout), { try: 0, ok: false, reply: 'NO Incorrect password' });
    } finally {
      await d.stop();
    }
  });

  test('usage errors exit 1 with the stock usage text', async () => {
    const r = await runTool(node, [CLIENT_BIN, '-u', 'x']);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /^testsaslauthd: usage: testsaslauthd -u username -p password/);
  });

  test('-p - reads the password from standard input, so it is not in the process list', async () => {
    const u = createUser(userName('tp'), 'Stdin-pw-1');
    const d = await startDaemon({ args: ['-a', 'shadow'] });
    try {
      const run = (
        input: string,
        ...extra: string[]
      ): Promise<{ code: number | null; stdout: string; stderr: string; argv: string }> =>
        new Promise((resolve) => {
          const child = spawn(node, [CLIENT_BIN, '-f', d.socketPath, '-u', u.name, '-p', '-', ...extra], {
            stdio: ['pipe', 'pipe', 'pipe'],
          });
          let stdout = '';
          let stderr = '';
          child.stdout.on('data', (b: Buffer) => (stdout += b.toString()));
          child.stderr.on('data', (b: Buffer) => (stderr += b.toString()));
          // What ps shows for the client while it waits for its password.
          const argv = fs.readFileSync(`/proc/${child.pid}/cmdline`, 'utf8').replace(/\0/g, ' ');
          child.stdin.end(input);
          child.on('exit', (code) => resolve({ code, stdout, stderr, argv }));
        });
      const ok = await run('Stdin-pw-1\n');
      assert.deepEqual([ok.code, ok.stdout], [0, '0: OK "Success."\n']);
      assert.ok(!ok.argv.includes('Stdin-pw-1'), ok.argv);
      // Only the first line, with or without CR LF or any line ending.
      assert.equal((await run('Stdin-pw-1\r\nignored\n', '-R', '2')).stdout, '0: OK "Success."\n1: OK "Success."\n');
      assert.equal((await run('Stdin-pw-1')).code, 0);
      const wrong = await run('Stdin-pw-2\n', '--json');
      assert.deepEqual(JSON.parse(wrong.stdout), { try: 0, ok: false, reply: 'NO Incorrect password' });
      const empty = await run('');
      assert.equal(empty.code, 1);
      assert.match(empty.stderr, /^testsaslauthd-ts: -p -: no password on standard input$/m);
    } finally {
      await d.stop();
    }
  });

  test('--ping gets "NO NULL login received" from a live daemon, exits 0 and prints one line', async () => {
    const d = await startDaemon({ args: ['-a', 'shadow'] });
    try {
      const r = await runTool(node, [CLIENT_BIN, '--ping', '-f', d.socketPath]);
      assert.equal(r.code, 0);
      assert.match(r.stdout, /^OK: saslauthd answers on \S+\/mux \("NO NULL login received", \d+ ms\)\n$/);
      // The daemon saw an empty login, and no mechanism ran for it.
      await d.waitForLog(/NULL login received/);
      assert.doesNotMatch(d.output(), /auth failure/);
    } finally {
      await d.stop();
    }
  });

  test('--ping exits 1 with one line when nothing listens, or when it is not a saslauthd', async () => {
    const dir = tmp();
    const none = await runTool(node, [CLIENT_BIN, '--ping', '-f', path.join(dir, 'mux')]);
    assert.deepEqual([none.code, none.stdout], [1, `FAILED: ${path.join(dir, 'mux')}: connect() : No such file or directory\n`]);

    // Something that accepts and answers, but not as saslauthd would.
    const other = path.join(dir, 'other');
    const impostor = net.createServer((c) => {
      c.resume(); // read the request, so the client's close is seen and close() can finish
      c.end(Buffer.from([0, 2, 0x4f, 0x4b]));
    });
    await new Promise<void>((r) => impostor.listen(other, () => r()));
    // And something that accepts and never answers.
    const silentPath = path.join(dir, 'silent');
    const held: net.Socket[] = [];
    const silent = net.createServer((c) => void held.push(c));
    await new Promise<void>((r) => silent.listen(silentPath, () => r()));
    try {
      const wrong = await runTool(node, [CLIENT_BIN, '--ping', '-f', other]);
      assert.deepEqual(
        [wrong.code, wrong.stdout],
        [1, `FAILED: ${other} answered "OK", not "NO NULL login received": is a saslauthd listening there?\n`],
      );
      const hung = await runTool(node, [CLIENT_BIN, '--ping', '-f', silentPath, '--timeout', '1']);
      assert.deepEqual([hung.code, hung.stdout], [1, `FAILED: ${silentPath}: no answer within 1 s\n`]);
    } finally {
      for (const c of held) c.destroy();
      await new Promise((r) => impostor.close(r));
      await new Promise((r) => silent.close(r));
    }
  });

  test('--ping refuses credentials', async () => {
    const r = await runTool(node, [CLIENT_BIN, '--ping', '-u', 'x', '-p', 'y']);
    assert.equal(r.code, 1);
    assert.equal(r.stderr, 'testsaslauthd-ts: --ping sends no credentials: leave out -u, -p\n');
  });

  test('a missing socket prints the connect error and exits 255', async () => {
    const r = await runTool(node, [CLIENT_BIN, '-u', 'x', '-p', 'y', '-f', '/nonexistent/mux']);
    assert.equal(r.code, 255);
    assert.equal(r.stdout, '0: ');
    assert.match(r.stderr, /connect\(\) : No such file or directory/);
  });
});
