// ldap_servers as a failover list. Servers are tried in the configured order,
// staggered: if the first has not answered after a short delay (or failed),
// the next one is started too, and the first to answer wins, so a dead or
// hung server costs a fraction of ldap_timeout rather than all of it. A
// server that failed (or lost such a race) is put in a back-off that doubles
// up to a cap, and is tried last until it has been up again; when every
// server is in back-off they are all still tried, so recovery is immediate.
import type pino from 'pino';
import type { LdapServer, TlsSettings } from './config';
import { LdapConnection } from './connection';
import { LdapConnectivityError } from './errors';

export interface PoolOptions {
  /** First back-off; doubles on each further failure. */
  backoffBaseMs?: number;
  backoffMaxMs?: number;
  log?: pino.Logger;
}

interface Health {
  failures: number;
  retryAt: number;
}

export interface Opened<T> {
  conn: LdapConnection;
  /** What the probe returned on the winning connection. */
  value: T;
}

/** The live-ness probe: must send one operation and return on any LDAP answer. */
export type Probe<T> = (conn: LdapConnection, timeoutMs: number) => Promise<T>;

export class ServerPool {
  private readonly health = new Map<LdapServer, Health>();
  private readonly backoffBaseMs: number;
  private readonly backoffMaxMs: number;
  private readonly log: pino.Logger | undefined;

  constructor(
    readonly servers: readonly LdapServer[],
    opts: PoolOptions = {},
  ) {
    this.backoffBaseMs = opts.backoffBaseMs ?? 1000;
    this.backoffMaxMs = opts.backoffMaxMs ?? 30_000;
    this.log = opts.log;
    for (const s of servers) this.health.set(s, { failures: 0, retryAt: 0 });
  }

  /** Servers not in back-off in configured order, then the others, soonest retry first. */
  order(now = Date.now()): LdapServer[] {
    const up = this.servers.filter((s) => (this.health.get(s)?.retryAt ?? 0) <= now);
    const down = this.servers
      .filter((s) => (this.health.get(s)?.retryAt ?? 0) > now)
      .sort((a, b) => (this.health.get(a)?.retryAt ?? 0) - (this.health.get(b)?.retryAt ?? 0));
    return [...up, ...down];
  }

  /**
   * Each server, up unless it failed and has not answered since. A server
   * after a working one is tried only when those before it fail, so its
   * state can be old news: it is the last thing seen, not a probe.
   */
  states(): Array<{ name: string; up: boolean }> {
    return this.servers.map((s) => ({ name: s.uri, up: (this.health.get(s)?.failures ?? 0) === 0 }));
  }

  isDown(server: LdapServer, now = Date.now()): boolean {
    return (this.health.get(server)?.retryAt ?? 0) > now;
  }

  markUp(server: LdapServer): void {
    const h = this.health.get(server);
    if (h === undefined || h.failures === 0) return;
    h.failures = 0;
    h.retryAt = 0;
    this.log?.info({ server: server.uri }, `ldap server ${server.uri} is answering again`);
  }

  markDown(server: LdapServer, reason: string): void {
    const h = this.health.get(server);
    if (h === undefined) return;
    h.failures++;
    const delay = Math.min(this.backoffMaxMs, this.backoffBaseMs * 2 ** Math.min(h.failures - 1, 20));
    h.retryAt = Date.now() + delay;
    // Loud when a server goes down; while it stays down, once per request would drown the log.
    const level = h.failures === 1 ? 'warn' : 'debug';
    this.log?.[level](
      { server: server.uri, failures: h.failures, backoffMs: delay },
      `ldap server ${server.uri} failed (${reason}); tried last for the next ${delay} ms`,
    );
  }

  /**
   * Open a connection to the first server that answers the probe within
   * timeoutMs overall. Rejects with an LdapConnectivityError whose message
   * lists every server's failure ("uri: why; uri: why") when none does.
   */
  open<T>(tlsSettings: TlsSettings, timeoutMs: number, signal: AbortSignal, probe: Probe<T>): Promise<Opened<T>> {
    const candidates = this.order();
    const started = Date.now();
    const deadline = started + timeoutMs;
    const stagger = Math.max(50, Math.min(1000, Math.floor(timeoutMs / Math.max(1, candidates.length))));
    return new Promise<Opened<T>>((resolve, reject) => {
      const failures: string[] = [];
      const inFlight = new Map<LdapServer, LdapConnection>();
      let next = 0;
      let settled = false;
      let staggerTimer: NodeJS.Timeout | undefined;

      const finish = (): void => {
        settled = true;
        clearTimeout(staggerTimer);
        clearTimeout(deadlineTimer);
        signal.removeEventListener('abort', onAbort);
      };
      const fail = (err: LdapConnectivityError): void => {
        if (settled) return;
        finish();
        for (const [server, conn] of inFlight) {
          conn.close();
          if (err.code !== 'LDAP_ABORTED') {
            this.markDown(server, 'no answer within ldap_timeout');
            failures.push(`${server.uri}: no answer within ${timeoutMs} ms`);
          }
        }
        inFlight.clear();
        reject(err.code === 'LDAP_ABORTED' ? err : new LdapConnectivityError(err.code, failures.join('; ')));
      };
      const onAbort = (): void => fail(new LdapConnectivityError('LDAP_ABORTED', 'aborted while connecting'));
      const deadlineTimer = setTimeout(() => fail(new LdapConnectivityError('LDAP_TIMEOUT', 'timed out')), timeoutMs);
      if (signal.aborted) {
        onAbort();
        return;
      }
      signal.addEventListener('abort', onAbort, { once: true });

      const launch = (): void => {
        clearTimeout(staggerTimer);
        if (settled || next >= candidates.length) return;
        const server = candidates[next++] as LdapServer;
        const remaining = Math.max(1, deadline - Date.now());
        const conn = new LdapConnection({ server, tls: tlsSettings, timeoutMs, connectTimeoutMs: remaining, signal });
        inFlight.set(server, conn);
        const attempt = async (): Promise<T> => {
          await conn.secure(Math.max(1, deadline - Date.now()));
          return probe(conn, Math.max(1, deadline - Date.now()));
        };
        attempt().then(
          (value) => {
            inFlight.delete(server);
            if (settled) {
              conn.close();
              return;
            }
            finish();
            this.markUp(server);
            // Whoever is still connecting lost the race: slow or hung.
            for (const [slow, other] of inFlight) {
              other.close();
              this.markDown(slow, `slower than ${server.uri}`);
            }
            inFlight.clear();
            resolve({ conn, value });
          },
          (err: unknown) => {
            inFlight.delete(server);
            conn.close();
            if (settled) return;
            const e = err instanceof LdapConnectivityError ? err : new LdapConnectivityError('LDAP_CONNECTION_LOST', String(err));
            if (e.code === 'LDAP_ABORTED') return;
            this.markDown(server, e.message);
            failures.push(`${server.uri}: ${e.message}`);
            if (next < candidates.length) launch();
            else if (inFlight.size === 0) {
              finish();
              reject(new LdapConnectivityError(e.code, failures.join('; ')));
            }
          },
        );
        if (next < candidates.length) staggerTimer = setTimeout(launch, stagger);
      };
      launch();
    });
  }
}
