// The three ldap_auth_methods (lak.c lak_auth_bind, lak_auth_custom,
// lak_auth_fastbind), each on a fresh connection from the pool that no other
// request has used, so no earlier bind can vouch for this password (the
// fastbind shortcut of cyrus-sasl#550 cannot happen). Like lak_authenticate,
// a connection lost in the middle is retried once on a new connection.
import { isUtf8 } from 'node:buffer';
import { InvalidCredentialsError, ResultCodeError } from 'ldapts';
import { denied, ok, type Outcome, unavailable } from '../backend';
import type { LdapConnection } from './connection';
import { describeResult, LdapConnectivityError, SaslNameBindError } from './errors';
import { checkGroup, groupCheckEnabled } from './group';
import { findUser } from './lookup';
import { verifyStoredPassword } from './password';
import type { Probe } from './pool';
import type { LdapSession } from './session';
import { expandTokens } from './tokens';

/** A connection failed after the pool had opened it: worth one retry. */
class SessionLost extends Error {
  constructor(readonly reason: LdapConnectivityError) {
    super(reason.message);
  }
}

/** Why a service bind did not happen: the directory's result code, or our refusal of its DN. */
type ServiceBindRefusal = ResultCodeError | SaslNameBindError;

/** Binds (service or anonymous) and hands back a refusal as a value: any answer proves the server alive. */
function bindProbe(dn: string, password: string): Probe<ServiceBindRefusal | undefined> {
  return async (conn, timeoutMs) => {
    try {
      await conn.bind(dn, password, timeoutMs);
      return undefined;
    } catch (err) {
      if (err instanceof ResultCodeError || err instanceof SaslNameBindError) return err;
      throw err;
    }
  };
}

function serviceBindFailed(err: ServiceBindRefusal): Outcome {
  const why = err instanceof SaslNameBindError ? err.message : describeResult(err);
  return unavailable('NO', `Bind to ldap server failed (invalid user/password or insufficient access): service bind: ${why}`);
}

/** The password as the string ldapts sends; undefined if it cannot be sent faithfully. */
function passwordText(s: LdapSession): string | undefined {
  return isUtf8(s.password) ? s.password.toString('utf8') : undefined;
}

/** Simple bind as the user; undefined on success. */
async function userBind(conn: LdapConnection, dn: string, password: string): Promise<Outcome | undefined> {
  // An empty name with a password is an anonymous bind to some servers.
  if (dn.trim() === '') return denied('NO', 'Invalid password (the user DN is empty)');
  try {
    await conn.bind(dn, password);
    return undefined;
  } catch (err) {
    if (err instanceof SaslNameBindError) return denied('NO', `Invalid password (${err.message})`);
    if (err instanceof InvalidCredentialsError) return denied('NO', 'Invalid password');
    if (err instanceof ResultCodeError) return denied('NO', `Invalid password (${describeResult(err)})`);
    throw err;
  }
}

/** Rebind the connection as the service, then run the group check. */
async function groupAfterUserBind(s: LdapSession, conn: LdapConnection, userDn: string): Promise<Outcome> {
  if (!groupCheckEnabled(s.cfg)) return ok();
  try {
    await conn.bind(s.cfg.bindDn, s.cfg.bindPassword);
  } catch (err) {
    if (err instanceof ResultCodeError || err instanceof SaslNameBindError) return serviceBindFailed(err);
    throw err;
  }
  return (await checkGroup(s, conn, userDn)) ?? ok();
}

async function authBind(s: LdapSession, conn: LdapConnection): Promise<Outcome> {
  const password = passwordText(s);
  const lookup = await findUser(s, conn, ['1.1']);
  if ('outcome' in lookup) return lookup.outcome;
  const { dn } = lookup.found;
  if (password === undefined) return denied('NO', 'Invalid password (not valid UTF-8, cannot be sent in an LDAP bind)');
  const refused = await userBind(lookup.found.conn, dn, password);
  if (refused) return refused;
  return groupAfterUserBind(s, conn, dn);
}

async function authCustom(s: LdapSession, conn: LdapConnection): Promise<Outcome> {
  const attr = s.cfg.passwordAttr;
  const lookup = await findUser(s, conn, [attr]);
  if ('outcome' in lookup) return lookup.outcome;
  const { dn, entry } = lookup.found;
  const key = Object.keys(entry).find((k) => k !== 'dn' && k.toLowerCase() === attr.toLowerCase());
  const raw = key === undefined ? undefined : entry[key];
  const list: Array<Buffer | string> = raw === undefined ? [] : Array.isArray(raw) ? raw : [raw];
  const values = list.map((v) => (Buffer.isBuffer(v) ? v : Buffer.from(v, 'utf8')));
  // Cyrus checks the last value it is given, not each of them.
  const stored = values[values.length - 1];
  if (stored === undefined) return denied('NO', `Invalid password (${dn} has no readable ${attr})`);
  if (values.length > 1)
    s.log.debug({ dn, values: values.length }, `${attr} has several values; only the last is checked, as in Cyrus`);
  const verdict = await verifyStoredPassword(stored, s.password);
  if ('problem' in verdict) return denied('NO', `Invalid password (${verdict.problem})`);
  if (!verdict.match) return denied('NO', 'Invalid password');
  if (!groupCheckEnabled(s.cfg)) return ok();
  // Still bound as the service: the group check runs on this connection.
  return (await checkGroup(s, conn, dn)) ?? ok();
}

async function authFastbind(s: LdapSession, conn: LdapConnection): Promise<Outcome> {
  const password = passwordText(s);
  if (password === undefined) return denied('NO', 'Invalid password (not valid UTF-8, cannot be sent in an LDAP bind)');
  const dn = expandTokens(s.cfg.filter, s.tokens, 'dn');
  const refused = await userBind(conn, dn, password);
  if (refused) return refused;
  return groupAfterUserBind(s, conn, dn);
}

async function attempt(s: LdapSession): Promise<Outcome> {
  const { cfg } = s;
  const probe = cfg.authMethod === 'fastbind' ? bindProbe('', '') : bindProbe(cfg.bindDn, cfg.bindPassword);
  const opened = await s.pool.open(cfg.tls, cfg.timeoutMs, s.signal, probe);
  const conn = s.adopt(opened.conn);
  if (opened.value !== undefined && cfg.authMethod !== 'fastbind') return serviceBindFailed(opened.value);
  try {
    switch (cfg.authMethod) {
      case 'bind':
        return await authBind(s, conn);
      case 'custom':
        return await authCustom(s, conn);
      case 'fastbind':
        return await authFastbind(s, conn);
    }
  } catch (err) {
    if (err instanceof LdapConnectivityError && err.code !== 'LDAP_ABORTED') {
      s.pool.markDown(conn.server, err.message);
      throw new SessionLost(err);
    }
    throw err;
  }
}

/** Run the configured method; never rejects. */
export async function authenticateLdap(s: LdapSession): Promise<Outcome> {
  if (s.password.length === 0) return denied('NO', 'Invalid password (empty password: would be an anonymous bind)');
  try {
    for (let tries = 1; ; tries++) {
      try {
        return await attempt(s);
      } catch (err) {
        if (err instanceof SessionLost && tries === 1 && !s.signal.aborted) {
          s.log.info({ reason: err.reason.message }, 'Retrying authentication');
          s.close();
          continue;
        }
        throw err;
      }
    }
  } catch (err) {
    const e = err instanceof SessionLost ? err.reason : err;
    if (e instanceof LdapConnectivityError) {
      if (e.code === 'LDAP_ABORTED')
        return unavailable('NO', 'ldap request abandoned: the deadline passed or the daemon is stopping');
      return unavailable('NO', `Cannot connect to ldap server (${e.message})`);
    }
    return unavailable('NO', `internal error in the ldap mechanism: ${(e as Error).message}`);
  } finally {
    s.close();
  }
}
