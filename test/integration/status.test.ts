// systemd's status line: a real daemon with NOTIFY_SOCKET pointing at a
// stand-in for systemd (a datagram socket), reached through systemd-notify
// as under the unit. What `systemctl status` would show, how often it
// changes, and that "stopping" is the last word.
import { after, afterEach, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { startDaemon } from '../helpers/daemon';
import { rawExchange, request } from '../helpers/frames';
import { notifyReceiver, type NotifyReceiver } from '../helpers/metrics';
import { createUser, removeAllUsers, userName, type TestUser } from '../helpers/users';
import { freePorts, startSlapd, USERS, type Slapd } from '../helpers/slapd';
import { serviceConf, startLdapDaemon } from '../helpers/ldap';
import { sendRequest } from '../../src/client/request';

const PASSWORD = 'Status-pw-1';
const ask = (socket: string, login: string, password: string): Promise<string> =>
  sendRequest(socket, { login, password, service: 'smtp', realm: '' });
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

let tmp: string;
let user: TestUser;
before(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'saslauthd-ts-status-'));
  user = createUser(userName('sts'), PASSWORD, 'sha512crypt');
});
after(() => {
  removeAllUsers();
  fs.rmSync(tmp, { recursive: true, force: true });
});

describe('systemd status line', () => {
  let n = 0;
  let rx: NotifyReceiver;
  const receiver = async (): Promise<NotifyReceiver> => (rx = await notifyReceiver(path.join(tmp, `notify-${++n}`)));
  const statusLines = (): string[] => rx.messages().filter((m) => m.startsWith('STATUS=serving'));
  // A receiver left running would keep the test process alive.
  afterEach(() => rx?.close());

  test('shows requests, failures and outages once they change, and "stopping" last', async () => {
    await receiver();
    const d = await startDaemon({ args: ['-a', 'shadow'], env: { NOTIFY_SOCKET: rx.socket } });
    try {
      await rx.waitFor(/READY=1/);
      assert.equal(await ask(d.socketPath, user.name, PASSWORD), 'OK');
      assert.equal(await ask(d.socketPath, user.name, PASSWORD), 'OK');
      assert.equal(await ask(d.socketPath, user.name, 'wrong'), 'NO Incorrect password');
      // A probe's empty login is not a request the status counts.
      await rawExchange(d.socketPath, [request({ login: '', password: '', service: '', realm: '' })]);
      await rx.waitFor(/^STATUS=serving: 3 requests, 1 failed, 0 unavailable; mechanism shadow$/);
    } finally {
      assert.equal(await d.stop(), 0);
    }
    await rx.waitFor(/STOPPING=1/);
    const all = rx.messages();
    assert.match(all[all.length - 1] ?? '', /^STOPPING=1 STATUS=stopping on SIGTERM$/, `last message: ${all.join('\n')}`);
  });

  test('changes at most once a second under steady traffic, and not at all while idle', async () => {
    await receiver();
    const d = await startDaemon({ args: ['-a', 'shadow', '-c'], env: { NOTIFY_SOCKET: rx.socket } });
    try {
      await rx.waitFor(/READY=1/);
      // 150 logins 20 ms apart (3 s or more), every one a change: one line
      // per login unless bounded. Counted, not timed: a slower machine takes
      // longer and is allowed a line for each second it takes.
      const started = Date.now();
      const sent = 150;
      for (let i = 0; i < sent; i++) {
        assert.equal(await ask(d.socketPath, user.name, PASSWORD), 'OK');
        await sleep(20);
      }
      await rx.waitFor(new RegExp(`^STATUS=serving: ${sent} requests, 0 failed`));
      // One line per started second at most (when each arrives depends on
      // how fast systemd-notify starts, so gaps are not measured).
      const seconds = Math.ceil((Date.now() - started) / 1000);
      assert.ok(
        statusLines().length <= seconds + 1,
        `${statusLines().length} status lines in ${seconds} s:\n${statusLines().join('\n')}`,
      );
      assert.ok(statusLines().length >= 2, `status lines: ${statusLines().join('\n')}`);
      // Nothing changes: nothing is sent.
      const settled = statusLines().length;
      await sleep(2500);
      assert.equal(statusLines().length, settled);
    } finally {
      await d.stop();
    }
  });

  test('--workers 2: the primary reports the requests of every worker', async () => {
    await receiver();
    const d = await startDaemon({ args: ['-a', 'shadow', '--workers', '2'], env: { NOTIFY_SOCKET: rx.socket } });
    try {
      await rx.waitFor(/READY=1/);
      const replies = await Promise.all(
        Array.from({ length: 12 }, (_, i) => ask(d.socketPath, user.name, i < 10 ? PASSWORD : 'wrong')),
      );
      assert.equal(replies.filter((r) => r === 'OK').length, 10);
      await rx.waitFor(/^STATUS=serving: 12 requests, 2 failed, 0 unavailable; mechanism shadow$/);
    } finally {
      await d.stop();
    }
  });

  describe('with ldap', () => {
    let slapd: Slapd;
    before(async () => {
      slapd = await startSlapd();
    });
    after(async () => {
      await slapd?.cleanup();
    });

    test('names each LDAP server up or down', async () => {
      await receiver();
      const [deadPort] = (await freePorts(1)) as [number];
      const dead = `ldap://127.0.0.1:${deadPort}/`;
      const d = await startLdapDaemon(serviceConf(`${dead} ${slapd.ldapUrl}`, { ldap_timeout: 2 }), [], {
        NOTIFY_SOCKET: rx.socket,
      });
      try {
        await rx.waitFor(/READY=1/);
        assert.equal(await d.ask('alice', USERS.alice.password), 'OK');
        assert.equal(await d.ask('alice', 'wrong-password'), 'NO');
        const escaped = (s: string): string => s.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');
        await rx.waitFor(
          new RegExp(
            `^STATUS=serving: 2 requests, 1 failed, 0 unavailable; ldap ${escaped(dead)} down, ${escaped(slapd.ldapUrl)} up$`,
          ),
        );
      } finally {
        await d.stop();
      }
    });
  });
});
