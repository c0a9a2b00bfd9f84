// One LDAP connection against a link that drops. ldapts reopens a dropped
// connection by itself on the next operation, unbound, and after StartTLS in
// plain text. A connection here is one socket: losing it fails the operation.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import tls from 'node:tls';
import { EqualityFilter } from 'ldapts';
import { type LdapServer, parseServerUri, type TlsSettings } from '../../src/backends/ldap/config';
import { LdapConnection } from '../../src/backends/ldap/connection';
import { LdapConnectivityError } from '../../src/backends/ldap/errors';
import { BASE_DN, SERVICE_DN, SERVICE_PASSWORD, startSlapd, USERS, type Slapd } from '../helpers/slapd';
import { type CaptureProxy, startCaptureProxy } from '../helpers/tcp';

/** Waits for an event the test cannot subscribe to; the limit only keeps a broken run from hanging. */
async function until(cond: () => boolean, what: string): Promise<void> {
  const limit = Date.now() + 10_000;
  while (!cond()) {
    if (Date.now() > limit) throw new Error(`gave up waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

function server(uri: string): LdapServer {
  const s = parseServerUri(uri);
  assert.ok(typeof s !== 'string', String(s));
  return s;
}

describe('an LDAP connection whose link drops', () => {
  let slapd: Slapd;
  let plainProxy: CaptureProxy;
  let tlsProxy: CaptureProxy;
  before(async () => {
    slapd = await startSlapd();
    plainProxy = await startCaptureProxy(slapd.ldapPort);
    tlsProxy = await startCaptureProxy(slapd.ldapsPort);
  });
  after(async () => {
    await plainProxy?.close();
    await tlsProxy?.close();
    await slapd?.cleanup();
  });

  const trustingCa = (): TlsSettings => ({
    startTls: false,
    checkPeer: true,
    secureContext: tls.createSecureContext({ ca: fs.readFileSync(slapd.caFile) }),
  });

  const searchAlice = (conn: LdapConnection): Promise<unknown> =>
    conn.search({
      base: BASE_DN,
      scope: 'sub',
      filter: new EqualityFilter({ attribute: 'uid', value: USERS.alice.uid }),
      derefAliases: 'never',
      sizeLimit: 2,
      timeLimit: 5,
      attributes: ['1.1'],
    });

  /** Bind as the service, cut the link, wait until the connection has seen it, then search. */
  async function dropThenSearch(conn: LdapConnection, proxy: CaptureProxy): Promise<number> {
    const before = proxy.connections().length;
    await conn.secure();
    await conn.bind(SERVICE_DN, SERVICE_PASSWORD);
    assert.equal(proxy.connections().length, before + 1);
    proxy.cut();
    await until(() => conn.openSockets === 0, 'the connection to notice the drop');
    await assert.rejects(
      searchAlice(conn),
      (err: unknown) => err instanceof LdapConnectivityError && err.code === 'LDAP_CONNECTION_LOST',
    );
    return proxy.connections().length - before;
  }

  test('after an ldaps:// connection drops, the next operation fails and no second connection is opened', async () => {
    const conn = new LdapConnection({
      server: server(`ldaps://127.0.0.1:${tlsProxy.port}/`),
      tls: trustingCa(),
      timeoutMs: 5000,
      signal: new AbortController().signal,
    });
    try {
      assert.equal(await dropThenSearch(conn, tlsProxy), 1, 'a second connection was opened');
    } finally {
      conn.close();
    }
  });

  test('after a StartTLS connection drops, the next operation fails as lost rather than waiting for an answer, and no second connection is opened', async () => {
    const conn = new LdapConnection({
      server: server(`ldap://127.0.0.1:${plainProxy.port}/`),
      tls: { ...trustingCa(), startTls: true },
      // Long, so that waiting for an answer that cannot come would show as a timeout, not pass.
      timeoutMs: 30_000,
      signal: new AbortController().signal,
    });
    try {
      assert.equal(await dropThenSearch(conn, plainProxy), 1, 'a second connection was opened');
    } finally {
      conn.close();
    }
  });
});
