// What one authentication carries through the LDAP mechanism: the config
// snapshot it started with, the request fields, and every connection it
// opened (the pool's, plus any to referral targets), all closed at the end.
import type pino from 'pino';
import type { LdapConfig, LdapServer } from './config';
import { LdapConnection } from './connection';
import type { ServerPool } from './pool';
import type { TokenContext } from './tokens';

export class LdapSession {
  private readonly conns = new Set<LdapConnection>();

  constructor(
    readonly cfg: LdapConfig,
    readonly pool: ServerPool,
    /** Token values: login, service, and the effective realm. */
    readonly tokens: TokenContext,
    /** The raw password; never logged. */
    readonly password: Buffer,
    readonly signal: AbortSignal,
    readonly log: pino.Logger,
  ) {}

  /** Remember a connection so that close() ends it. */
  adopt(conn: LdapConnection): LdapConnection {
    this.conns.add(conn);
    return conn;
  }

  /** A direct connection (no failover), e.g. to a referral target. */
  connect(server: LdapServer): LdapConnection {
    return this.adopt(new LdapConnection({ server, tls: this.cfg.tls, timeoutMs: this.cfg.timeoutMs, signal: this.signal }));
  }

  close(): void {
    for (const c of this.conns) c.close();
    this.conns.clear();
  }
}
