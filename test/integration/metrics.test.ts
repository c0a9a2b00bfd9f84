// --metrics against a real daemon with real users: a known sequence of
// requests (successes, a cache hit, wrong passwords, broken frames) and the
// exact counts it must leave; the endpoint's socket, errors and limits; the
// figures of --workers processes added up; LDAP servers up and down.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { DAEMON_BIN, startDaemon, type RunningDaemon } from '../helpers/daemon';
import { field, lengthOnly, rawExchange, request } from '../helpers/frames';
import { sample, scrape, type Scrape } from '../helpers/metrics';
import { runTool } from '../helpers/testsaslauthd';
import { createUser, removeAllUsers, userName, type TestUser } from '../helpers/users';
import { freePorts, startSlapd, USERS, type Slapd } from '../helpers/slapd';
import { serviceConf, startLdapDaemon } from '../helpers/ldap';
import { sendRequest } from '../../src/client/request';
import { childPids } from '../helpers/procs';
import { makeKeyFile, startRedis } from '../helpers/redis';

const PASSWORD = 'Metrics-pw-1';
const ask = (socket: string, login: string, password: string): Promise<string> =>
  sendRequest(socket, { login, password, service: 'smtp', realm: '' });

let tmp: string;
before(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'saslauthd-ts-metrics-'));
});
after(() => {
  removeAllUsers();
  fs.rmSync(tmp, { recursive: true, force: true });
});

/**
 * startDaemon returns once the auth socket answers; the endpoint starts
 * just after it (and before readiness is announced): wait for its line.
 */
async function startWithMetrics(opts: Parameters<typeof startDaemon>[0]): Promise<RunningDaemon> {
  const d = await startDaemon(opts);
  await d.waitForLog(/metrics at /);
  return d;
}

/** Scrape until pred holds (the listener closes a connection just after its answer), or fail after 5 s. */
async function scrapeUntil(sock: string, pred: (s: Scrape) => boolean): Promise<Scrape> {
  const until = Date.now() + 5000;
  for (;;) {
    const s = await scrape({ socketPath: sock });
    if (pred(s) || Date.now() > until) return s;
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe('metrics', () => {
  let user: TestUser;
  before(() => {
    user = createUser(userName('met'), PASSWORD, 'sha512crypt');
  });

  test('a known sequence of requests leaves exactly these counts', async () => {
    const sock = path.join(tmp, 'seq.sock');
    const d = await startWithMetrics({ args: ['-a', 'shadow', '-c', '--metrics', sock] });
    try {
      const r = (k: string): string => `saslauthd_requests_total{mech="shadow",result="${k}"}`;
      const before = await scrape({ socketPath: sock });
      for (const k of ['ok', 'denied', 'unavailable', 'timeout', 'shed', 'refused', 'protocol_error'])
        assert.equal(sample(before, r(k)), 0, k);

      assert.equal(await ask(d.socketPath, user.name, PASSWORD), 'OK'); // checked: cache miss
      // A success is in the cache before it is answered, so the next one hits.
      assert.equal(sample(await scrape({ socketPath: sock }), 'saslauthd_cache_entries'), 1);
      assert.equal(await ask(d.socketPath, user.name, PASSWORD), 'OK'); // cache hit
      assert.equal(await ask(d.socketPath, user.name, 'wrong-1'), 'NO Incorrect password'); // miss, denied
      assert.equal(await ask(d.socketPath, `${user.name}x`, PASSWORD), 'NO Invalid username'); // miss, denied
      const noLogin = await rawExchange(d.socketPath, [request({ login: '', password: 'x', service: '', realm: '' })]);
      assert.match(noLogin.bytes.toString('latin1'), /NO NULL login received/);
      await rawExchange(d.socketPath, [request({ login: user.name, password: '', service: '', realm: '' })]);
      await rawExchange(d.socketPath, [Buffer.concat([field(user.name), lengthOnly(257)])], { closeAfterSend: true });
      await rawExchange(d.socketPath, [field(user.name)], { closeAfterSend: true }); // incomplete: the client left
      await rawExchange(d.socketPath, [], { closeAfterSend: true }); // not a request: nothing sent

      const s = await scrapeUntil(sock, (x) => sample(x, 'saslauthd_connections_open') === 0);
      assert.equal(sample(s, r('ok')), 2);
      assert.equal(sample(s, r('denied')), 2);
      assert.equal(sample(s, r('protocol_error')), 4);
      for (const k of ['unavailable', 'timeout', 'shed', 'refused']) assert.equal(sample(s, r(k)), 0, k);
      const p = (k: string): number => sample(s, `saslauthd_protocol_errors_total{reason="${k}"}`);
      assert.deepEqual(['null_login', 'null_password', 'oversize', 'incomplete', 'read_timeout'].map(p), [1, 1, 1, 1, 0]);
      assert.equal(sample(s, 'saslauthd_cache_hits_total'), 1);
      assert.equal(sample(s, 'saslauthd_cache_misses_total'), 3);
      assert.equal(sample(s, 'saslauthd_cache_outage_answers_total'), 0);
      assert.equal(sample(s, 'saslauthd_cache_entries'), 1);
      assert.equal(sample(s, 'saslauthd_cache_capacity'), 10266);
      assert.equal(sample(s, 'saslauthd_request_duration_seconds_count{mech="shadow",result="ok"}'), 2);
      assert.equal(sample(s, 'saslauthd_request_duration_seconds_count{mech="shadow",result="denied"}'), 2);
      assert.equal(sample(s, 'saslauthd_request_duration_seconds_bucket{mech="shadow",result="ok",le="+Inf"}'), 2);
      assert.ok(sample(s, 'saslauthd_request_duration_seconds_sum{mech="shadow",result="ok"}') > 0);
      // The success made its credentials known-good; the two wrong logins are tracked.
      assert.equal(sample(s, 'saslauthd_throttle_known_good'), 1);
      assert.equal(sample(s, 'saslauthd_throttle_tracked'), 2);
      assert.equal(sample(s, 'saslauthd_throttle_penalties_total'), 0);
      assert.equal(sample(s, 'saslauthd_requests_in_flight'), 0);
      assert.equal(sample(s, 'saslauthd_connections_open'), 0);
      assert.equal(sample(s, 'saslauthd_queue_depth{pool="hash",priority="normal"}'), 0);
      assert.ok(sample(s, 'saslauthd_queue_threads{pool="hash"}') >= 1);
      assert.equal(sample(s, 'saslauthd_build_info{version="0.1.0",mech="shadow"}'), 1);
      assert.equal(sample(s, 'saslauthd_processes'), 1);
      assert.ok(sample(s, 'process_resident_memory_bytes') > 1e6);
      assert.ok(sample(s, 'process_open_fds') > 3);
      assert.ok(sample(s, 'process_cpu_seconds_total') > 0);
      assert.ok(sample(s, 'nodejs_eventloop_lag_max_seconds') >= 0);
      // No backend servers for shadow; no login, password or address anywhere.
      assert.equal([...s.samples.keys()].filter((k) => k.startsWith('saslauthd_backend_up')).length, 0);
      for (const secret of [user.name, PASSWORD, 'wrong-1']) assert.ok(!s.text.includes(secret), `${secret} in the metrics`);
      assert.equal(s.headers['content-type'], 'text/plain; version=0.0.4; charset=utf-8');
    } finally {
      await d.stop();
    }
  });

  test('throttle refusals and a read timeout are counted under their own results', async () => {
    const sock = path.join(tmp, 'throttle.sock');
    const d = await startWithMetrics({
      args: [
        '-a',
        'shadow',
        '--metrics',
        sock,
        '--throttle-free',
        '1',
        '--throttle-refuse',
        '2',
        '--throttle-delay',
        '1',
        '--throttle-max-delay',
        '1',
        '--read-timeout',
        '1',
      ],
    });
    try {
      assert.equal(await ask(d.socketPath, user.name, 'wrong-a'), 'NO Incorrect password');
      assert.equal(await ask(d.socketPath, user.name, 'wrong-b'), 'NO Incorrect password'); // second: cool-off starts
      assert.equal(await ask(d.socketPath, user.name, 'wrong-c'), 'NO Incorrect password'); // refused unchecked
      const idle = await rawExchange(d.socketPath, [field(user.name)], { timeoutMs: 10_000 });
      assert.ok(idle.closedByServer);
      const s = await scrapeUntil(sock, (x) => sample(x, 'saslauthd_protocol_errors_total{reason="read_timeout"}') === 1);
      const r = (k: string): number => sample(s, `saslauthd_requests_total{mech="shadow",result="${k}"}`);
      assert.deepEqual([r('denied'), r('refused'), r('protocol_error'), r('ok')], [2, 1, 1, 0]);
      assert.equal(sample(s, 'saslauthd_protocol_errors_total{reason="read_timeout"}'), 1);
      assert.equal(sample(s, 'saslauthd_throttle_penalties_total'), 1);
      assert.equal(sample(s, 'saslauthd_throttle_cooloffs_total'), 1);
      // Without -c there are no cache metrics at all.
      assert.equal(s.samples.get('saslauthd_cache_hits_total'), undefined);
    } finally {
      await d.stop();
    }
  });

  test('the UNIX socket is mode 0660 in its directory’s group, and goes with the daemon', async () => {
    const dir = path.join(tmp, 'sockdir');
    fs.mkdirSync(dir, { mode: 0o750 });
    const gid = Number(execFileSync('getent', ['group', 'daemon'], { encoding: 'utf8' }).split(':')[2]);
    fs.chownSync(dir, 0, gid);
    const sock = path.join(dir, 'metrics.sock');
    const d = await startWithMetrics({ args: ['-a', 'shadow', '--metrics', sock] });
    try {
      const st = fs.statSync(sock);
      assert.ok(st.isSocket());
      assert.equal(st.mode & 0o777, 0o660);
      assert.equal(st.gid, gid);
      assert.equal((await scrape({ socketPath: sock })).status, 200);
    } finally {
      await d.stop();
    }
    assert.equal(fs.existsSync(sock), false, 'socket removed on stop');
  });

  test('a TCP endpoint answers /metrics only, GET and HEAD only', async () => {
    const [port] = (await freePorts(1)) as [number];
    const d = await startWithMetrics({ args: ['-a', 'shadow', '--metrics', String(port)] });
    try {
      await d.waitForLog(new RegExp(`metrics at http://127\\.0\\.0\\.1:${port}/metrics`));
      const ok = await scrape({ port });
      assert.equal(ok.status, 200);
      assert.equal(ok.headers.connection, 'close');
      assert.equal((await scrape({ port }, '/')).status, 404);
      assert.equal((await scrape({ port }, '/metrics', 'POST')).status, 405);
      const head = await scrape({ port }, '/metrics', 'HEAD');
      assert.deepEqual([head.status, head.text], [200, '']);
      assert.equal(Number(head.headers['content-length']) > 100, true);
    } finally {
      await d.stop();
    }
  });

  test('hostile clients: idle and surplus connections are closed, and logins go on meanwhile', async () => {
    const sock = path.join(tmp, 'hostile.sock');
    const d = await startWithMetrics({ args: ['-a', 'shadow', '--metrics', sock] });
    const conns: net.Socket[] = [];
    try {
      // More connections than the endpoint keeps, none of which ever sends a byte.
      let open = 0;
      const closed = Array.from({ length: 40 }, () => {
        const c = net.connect(sock);
        conns.push(c);
        open++;
        c.on('error', () => undefined);
        // Read what comes (a 408 before the close), or the close itself is never seen.
        c.resume();
        return new Promise<void>((resolve) =>
          c.once('close', () => {
            open--;
            resolve();
          }),
        );
      });
      assert.equal(await ask(d.socketPath, user.name, PASSWORD), 'OK');
      // Every one of them is closed by the daemon: surplus at once, the rest at the idle deadline.
      const deadline = new Promise<'timeout'>((r) => setTimeout(() => r('timeout'), 20_000).unref());
      assert.notEqual(
        await Promise.race([Promise.all(closed), deadline]),
        'timeout',
        `the endpoint kept ${open} idle connections past 20 s`,
      );
      assert.equal((await scrape({ socketPath: sock })).status, 200);
      assert.equal(await ask(d.socketPath, user.name, PASSWORD), 'OK');
    } finally {
      for (const c of conns) c.destroy();
      await d.stop();
    }
  });

  test('a client trickling its request a byte at a time is cut off, however lively it keeps the connection', async () => {
    const sock = path.join(tmp, 'trickle.sock');
    const d = await startWithMetrics({ args: ['-a', 'shadow', '--metrics', sock] });
    const c = net.connect(sock);
    c.on('error', () => undefined);
    c.resume();
    const request = Buffer.from('GET /metrics HTTP/1.1\r\nHost: x\r\nUser-Agent: slow-loris-test\r\n\r\n');
    let sent = 0;
    // A byte every 500 ms: never idle for long, the whole request would take half a minute.
    const drip = setInterval(() => {
      if (sent < request.length && !c.destroyed) c.write(request.subarray(sent, ++sent));
    }, 500);
    try {
      const started = Date.now();
      const closed = new Promise<number>((resolve) => c.once('close', () => resolve(Date.now() - started)));
      const deadline = new Promise<number>((r) => setTimeout(() => r(-1), 20_000).unref());
      const after = await Promise.race([closed, deadline]);
      assert.notEqual(after, -1, 'still open after 20 s');
      assert.ok(sent < request.length, `the whole request went out (${sent} bytes) before the daemon closed`);
      assert.equal((await scrape({ socketPath: sock })).status, 200);
    } finally {
      clearInterval(drip);
      c.destroy();
      await d.stop();
    }
  });

  test('an address in use stops the start with an error naming --metrics', async () => {
    const blocker = net.createServer();
    await new Promise<void>((r) => blocker.listen(0, '127.0.0.1', () => r()));
    const port = (blocker.address() as net.AddressInfo).port;
    const runDir = fs.mkdtempSync(path.join(tmp, 'inuse-'));
    try {
      const r = await runTool(process.execPath, [
        DAEMON_BIN,
        '-f',
        '-a',
        'shadow',
        '-m',
        runDir,
        '--metrics',
        `127.0.0.1:${port}`,
      ]);
      assert.equal(r.code, 1);
      assert.match(
        r.stderr,
        new RegExp(`--metrics 127\\.0\\.0\\.1:${port}: address already in use: another process listens on port ${port}`),
      );
      assert.equal(fs.existsSync(path.join(runDir, 'mux')), false, 'the auth socket is not left behind');
    } finally {
      await new Promise((r) => blocker.close(r));
    }
  });

  test('a bad address is refused before anything starts, naming --metrics and the value', async () => {
    const r = await runTool(process.execPath, [DAEMON_BIN, '-f', '-a', 'shadow', '-m', tmp, '--metrics', 'mailhost:9464']);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /--metrics 'mailhost:9464' has host 'mailhost', which is not an IP address/);
    const missing = await runTool(process.execPath, [
      DAEMON_BIN,
      '-f',
      '-a',
      'shadow',
      '-m',
      fs.mkdtempSync(path.join(tmp, 'nodir-')),
      '--metrics',
      path.join(tmp, 'no', 'such', 'm.sock'),
    ]);
    assert.equal(missing.code, 1);
    assert.match(missing.stderr, /--metrics \/.*\/no\/such\/m\.sock: the directory .*\/no\/such does not exist/);
  });

  test('--workers 2: the endpoint adds up every worker, and a worker restart takes nothing back', async () => {
    const sock = path.join(tmp, 'workers.sock');
    const d = await startWithMetrics({ args: ['-a', 'shadow', '-c', '--workers', '2', '--metrics', sock] });
    try {
      await d.waitForLog(/listening on socket: .* \(2 worker processes\)/);
      const n = 20;
      const replies = await Promise.all(Array.from({ length: n }, () => ask(d.socketPath, user.name, PASSWORD)));
      assert.deepEqual(new Set(replies), new Set(['OK']));
      await rawExchange(d.socketPath, [request({ login: '', password: 'x', service: '', realm: '' })]);
      const s = await scrape({ socketPath: sock });
      const ok = sample(s, 'saslauthd_requests_total{mech="shadow",result="ok"}');
      assert.equal(ok, n);
      assert.equal(sample(s, 'saslauthd_requests_total{mech="shadow",result="protocol_error"}'), 1);
      assert.equal(sample(s, 'saslauthd_cache_hits_total') + sample(s, 'saslauthd_cache_misses_total'), n);
      assert.equal(sample(s, 'saslauthd_processes'), 3);
      assert.equal(sample(s, 'saslauthd_build_info{version="0.1.0",mech="shadow"}'), 1);

      // Kill both workers that served the requests, one after the other:
      // every count now comes from processes that are gone.
      const workers = childPids(d.child.pid ?? 0);
      assert.equal(workers.length, 2);
      for (const [i, pid] of workers.entries()) {
        process.kill(pid, 'SIGKILL');
        const until = Date.now() + 10_000;
        while (
          d
            .output()
            .split('\n')
            .filter((l) => /died .*restarting it/.test(l)).length <
            i + 1 &&
          Date.now() < until
        ) {
          await new Promise((r) => setTimeout(r, 50));
        }
        await scrapeUntil(sock, (x) => sample(x, 'saslauthd_processes') === 3);
      }
      assert.deepEqual(
        childPids(d.child.pid ?? 0).filter((p) => workers.includes(p)),
        [],
        'both original workers are gone',
      );
      const after = await scrapeUntil(sock, (x) => sample(x, 'saslauthd_processes') === 3);
      assert.equal(sample(after, 'saslauthd_requests_total{mech="shadow",result="ok"}'), n, 'the dead workers’ counts are kept');
      assert.equal(sample(after, 'saslauthd_processes'), 3);
    } finally {
      await d.stop();
    }
  });

  describe('ldap servers', () => {
    let slapd: Slapd;
    before(async () => {
      slapd = await startSlapd();
    });
    after(async () => {
      await slapd?.cleanup();
    });

    test('saslauthd_backend_up says which configured LDAP server is up and which is down', async () => {
      const [deadPort] = (await freePorts(1)) as [number];
      const dead = `ldap://127.0.0.1:${deadPort}/`;
      const sock = path.join(tmp, 'ldap.sock');
      const d = await startLdapDaemon(serviceConf(`${dead} ${slapd.ldapUrl}`, { ldap_timeout: 2 }), ['--metrics', sock]);
      await d.d.waitForLog(/metrics at /);
      try {
        const up = (s: Scrape, uri: string): number => sample(s, `saslauthd_backend_up{mech="ldap",server="${uri}"}`);
        const fresh = await scrape({ socketPath: sock });
        assert.deepEqual([up(fresh, dead), up(fresh, slapd.ldapUrl)], [1, 1], 'untried servers count as up');
        assert.equal(await d.ask('alice', USERS.alice.password), 'OK');
        const s = await scrape({ socketPath: sock });
        assert.deepEqual([up(s, dead), up(s, slapd.ldapUrl)], [0, 1]);
        assert.equal(sample(s, 'saslauthd_requests_total{mech="ldap",result="ok"}'), 1);
      } finally {
        await d.stop();
      }
    });
  });

  test('--state: the shared store counts as up while Redis answers, and its outage is counted', async () => {
    const redis = await startRedis();
    const keyDir = fs.mkdtempSync(path.join(tmp, 'key-'));
    const sock = path.join(tmp, 'state.sock');
    const d = await startWithMetrics({
      args: [
        '-a',
        'shadow',
        '--metrics',
        sock,
        '--state',
        redis.url(),
        '--state-key',
        makeKeyFile(keyDir),
        '--state-prefix',
        'metrics-test:',
      ],
    });
    try {
      await d.waitForLog(/shared state .*connected/);
      assert.equal(await ask(d.socketPath, user.name, PASSWORD), 'OK');
      const up = await scrapeUntil(sock, (x) => sample(x, 'saslauthd_state_operations_total') > 0);
      assert.equal(sample(up, 'saslauthd_state_up'), 1);
      const ops = sample(up, 'saslauthd_state_operations_total');
      assert.equal(sample(up, 'saslauthd_state_latency_seconds_count'), ops, 'each answered operation has its round trip');
      assert.equal(sample(up, 'saslauthd_state_latency_seconds_bucket{le="+Inf"}'), ops);
      assert.equal(sample(up, 'saslauthd_state_outages_total'), 0);

      await redis.kill();
      // The next attempts find the store gone; the daemon decides alone and says so.
      assert.equal(await ask(d.socketPath, user.name, 'wrong-x'), 'NO Incorrect password');
      await d.waitForLog(/shared state .*(unavailable|cannot connect)/, 10_000);
      const down = await scrapeUntil(sock, (x) => sample(x, 'saslauthd_state_up') === 0);
      assert.equal(sample(down, 'saslauthd_state_up'), 0);
      assert.ok(sample(down, 'saslauthd_state_outages_total') >= 1);
      assert.equal(sample(down, 'saslauthd_requests_total{mech="shadow",result="denied"}'), 1);
    } finally {
      await d.stop();
      await redis.stop();
    }
  });

  test('--check shows the metrics address, and warns when it is not loopback', async () => {
    const local = await runTool(process.execPath, [DAEMON_BIN, '--check', '-a', 'shadow', '-m', tmp, '--metrics', '9464']);
    assert.match(local.stdout, /^metrics \(--metrics\)\s+http:\/\/127\.0\.0\.1:9464\/metrics$/m);
    const off = await runTool(process.execPath, [DAEMON_BIN, '--check', '-a', 'shadow', '-m', tmp]);
    assert.match(off.stdout, /^metrics \(--metrics\)\s+off$/m);
    const open = await runTool(process.execPath, [DAEMON_BIN, '--check', '-a', 'shadow', '-m', tmp, '--metrics', '0.0.0.0:9464']);
    assert.equal(open.code, 0);
    assert.match(open.stderr, /warning: .*--metrics 0\.0\.0\.0:9464: not a loopback address/);
    const sock = await runTool(process.execPath, [
      DAEMON_BIN,
      '--check',
      '-a',
      'shadow',
      '-m',
      tmp,
      '--metrics',
      path.join(tmp, 'm.sock'),
    ]);
    assert.match(sock.stdout, /^metrics \(--metrics\)\s+\/.*\/m\.sock \(HTTP at \/metrics; mode 0660, group root from /m);
  });
});
