// SIGHUP with --routes: the file is re-read beside 100 requests in flight
// (held by a paused slapd), none of them dropped, and the new routes answer
// the next request. An invalid new file keeps the old table and says why.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { startDaemon, type RunningDaemon } from '../helpers/daemon';
import { startSlapd, type Slapd, USERS, PEOPLE } from '../helpers/slapd';
import { sample, scrape } from '../helpers/metrics';
import { sendRequest } from '../../src/client/request';

let slapd: Slapd;
let d: RunningDaemon;
let routes: string;
let conf: string;
let metricsSocket: string;

/** Requests the daemon has received whole and not answered (its metrics). */
async function inFlight(): Promise<number> {
  return sample(await scrape({ socketPath: metricsSocket }), 'saslauthd_requests_in_flight');
}

const ask = (login: string, password: string, realm: string): Promise<string> =>
  sendRequest(d.socketPath, { login, password, service: 'smtp', realm }, 60_000);

/** Waits (bounded) until cond holds. */
async function until(cond: () => boolean, what: string, timeoutMs = 20_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`not within ${timeoutMs} ms: ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

before(async () => {
  slapd = await startSlapd();
  conf = path.join(slapd.dir, 'a.conf');
  fs.writeFileSync(
    conf,
    [`ldap_servers: ${slapd.ldapUrl}`, `ldap_search_base: ${PEOPLE}`, 'ldap_filter: (uid=%u)', 'ldap_timeout: 40', ''].join('\n'),
  );
  routes = path.join(slapd.dir, 'routes');
  fs.writeFileSync(routes, `old.test ldap:${conf}\n`);
  metricsSocket = path.join(slapd.dir, 'metrics.sock');
  d = await startDaemon({ args: ['--routes', routes, '--throttle', 'off', '--auth-timeout', '50', '--metrics', metricsSocket] });
});

after(async () => {
  await d?.stop();
  await slapd?.cleanup();
});

test('100 requests in flight during a SIGHUP are all answered, and the new routes answer the next request', async () => {
  const { alice } = USERS;
  slapd.pause();
  let answers: Promise<string[]>;
  try {
    answers = Promise.all(Array.from({ length: 100 }, () => ask(alice.uid, alice.password, 'old.test')));
    // Received whole and handed to the router, which holds them on the paused slapd.
    for (let n = 0; (await inFlight()) < 100; n++) {
      if (n > 1000) throw new Error('100 requests not in flight');
      await new Promise((r) => setTimeout(r, 20));
    }
    fs.writeFileSync(routes, `new.test ldap:${conf}\n`);
    const from = d.output().length;
    d.child.kill('SIGHUP');
    await until(() => /routes: .* re-read, 1 routes/.test(d.output().slice(from)), 'the routes re-read');
  } finally {
    slapd.resume();
  }
  const got = await answers;
  assert.equal(got.length, 100);
  assert.deepEqual(
    new Set(got),
    new Set(['OK']),
    `every request in flight answered by the old route:\n${d.output().slice(-3000)}`,
  );
  assert.equal(await ask(alice.uid, alice.password, 'new.test'), 'OK');
  assert.equal(await ask(alice.uid, alice.password, 'old.test'), 'NO', 'the old realm has no route any more');
  await d.waitForLog(/no route for realm 'old.test'/);
});

test('an invalid new routes file keeps the old table and logs why', async () => {
  const { bob } = USERS;
  fs.writeFileSync(routes, `new.test ldap:${conf}\nnew.test kerberos5\n`);
  const from = d.output().length;
  d.child.kill('SIGHUP');
  await until(() => /configuration not re-read, keeping the old one/.test(d.output().slice(from)), 'the refusal logged');
  const line = d
    .output()
    .slice(from)
    .split('\n')
    .find((l) => l.includes('keeping the old one'));
  assert.match(line ?? '', /routes:2:1: realm 'new.test' is routed twice/);
  assert.match(line ?? '', /routes:2:10: unknown mechanism 'kerberos5'/);
  assert.equal(await ask(bob.uid, bob.password, 'new.test'), 'OK');
});
