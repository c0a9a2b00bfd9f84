// Finding the user's entry for ldap_auth_method bind and custom (lak.c
// lak_user): ldap_search_base / ldap_filter / ldap_scope with tokens
// expanded, exactly one entry required. With ldap_referrals: yes, search
// continuation references are followed one hop, anonymously (libldap's
// default without a rebind callback), and the user then binds there, so a
// referral is followed only to a server listed in ldap_servers and never to a
// weaker transport than the one it came from: the password goes where it points.
import { type Entry, type Filter, FilterParser, NoSuchObjectError, ResultCodeError } from 'ldapts';
import { maskCredentials } from '../../log/redact';
import { denied, notFound, type Outcome, unavailable } from '../backend';
import { type LdapServer, parseServerUri, type Scope } from './config';
import { type LdapConnection, type Transport, transportOf } from './connection';
import { describeResult } from './errors';
import type { LdapSession } from './session';
import { expandTokens } from './tokens';

export interface FoundUser {
  dn: string;
  entry: Entry;
  /** The connection that found it: the user's bind goes there. */
  conn: LdapConnection;
}

export type Lookup = { found: FoundUser } | { outcome: Outcome };

/**
 * Ask for two entries whatever ldap_size_limit says: ldapts drops the
 * size-limit-exceeded result code and returns what it got, so with a limit of
 * 1 a duplicate would look unique. More than one entry fails, as in Cyrus.
 */
const USER_SIZE_LIMIT = 2;

export function parseFilter(text: string, key: string): Filter | string {
  try {
    return FilterParser.parseString(text);
  } catch (err) {
    return `${key} expands to an invalid filter: ${(err as Error).message}`;
  }
}

interface Referral {
  uri: string;
  base: string | undefined;
  scope: Scope | undefined;
  filter: string | undefined;
}

/** RFC 4516 LDAP URL: ldap://host:port/base?attributes?scope?filter */
function parseReferral(uri: string): Referral | undefined {
  const m = /^(ldaps?:\/\/[^/?#]*)(?:\/([^?#]*)(?:\?[^?#]*(?:\?([^?#]*)(?:\?([^?#]*))?)?)?)?/i.exec(uri);
  if (m === null) return undefined;
  const scope = (m[3] ?? '').toLowerCase();
  try {
    return {
      uri: `${m[1] ?? ''}/`,
      base: m[2] ? decodeURIComponent(m[2]) : undefined,
      scope: scope === 'base' || scope === 'one' || scope === 'sub' ? scope : undefined,
      filter: m[4] ? decodeURIComponent(m[4]) : undefined,
    };
  } catch {
    return undefined;
  }
}

/** 'tls' and 'local' both keep the password off the network in clear. */
const PROTECTED: ReadonlySet<Transport> = new Set(['tls', 'local']);

function sameEndpoint(a: LdapServer, b: LdapServer): boolean {
  if (a.scheme !== b.scheme) return false;
  if (a.scheme === 'ldapi') return a.socketPath === b.socketPath;
  return a.host.toLowerCase() === b.host.toLowerCase() && a.port === b.port;
}

function hostPort(server: LdapServer): string {
  if (server.socketPath !== undefined) return server.socketPath;
  return `${server.host.includes(':') ? `[${server.host}]` : server.host}:${server.port}`;
}

/** The listed server a referral may be followed to, or why it may not. */
function referralTarget(s: LdapSession, from: LdapConnection, ref: Referral): LdapServer | string {
  const parsed = parseServerUri(ref.uri);
  if (typeof parsed === 'string') return parsed;
  const listed = s.cfg.servers.find((l) => sameEndpoint(l, parsed));
  if (listed === undefined) return `${hostPort(parsed)} is not in ldap_servers`;
  if (PROTECTED.has(from.transport) && !PROTECTED.has(transportOf(listed, s.cfg.tls))) {
    return `it would not be encrypted, while ${from.server.uri} is; set ldap_start_tls: yes or refer to ldaps://`;
  }
  return listed;
}

async function followReferral(
  s: LdapSession,
  server: LdapServer,
  ref: Referral,
  base: string,
  filter: Filter,
  attributes: string[],
): Promise<Array<{ entry: Entry; conn: LdapConnection }>> {
  const conn = s.connect(server);
  await conn.secure();
  await conn.bind('', '');
  let refFilter = filter;
  if (ref.filter !== undefined) {
    const parsed = parseFilter(ref.filter, 'referral');
    if (typeof parsed !== 'string') refFilter = parsed;
  }
  const result = await conn.search({
    base: ref.base ?? base,
    scope: ref.scope ?? s.cfg.scope,
    filter: refFilter,
    derefAliases: s.cfg.deref,
    sizeLimit: USER_SIZE_LIMIT,
    timeLimit: s.cfg.timeLimit,
    attributes,
    explicitBufferAttributes: attributes,
  });
  return result.searchEntries.map((entry) => ({ entry, conn }));
}

/** Search for the one entry the login maps to, fetching attributes. */
export async function findUser(s: LdapSession, conn: LdapConnection, attributes: string[]): Promise<Lookup> {
  const { cfg } = s;
  const base = expandTokens(cfg.searchBase, s.tokens, 'dn');
  const filterText = expandTokens(cfg.filter, s.tokens, 'filter');
  const filter = parseFilter(filterText, 'ldap_filter');
  if (typeof filter === 'string') return { outcome: unavailable('NO', filter) };

  let found: Array<{ entry: Entry; conn: LdapConnection }>;
  let references: string[];
  try {
    const result = await conn.search({
      base,
      scope: cfg.scope,
      filter,
      derefAliases: cfg.deref,
      sizeLimit: USER_SIZE_LIMIT,
      timeLimit: cfg.timeLimit,
      attributes,
      explicitBufferAttributes: attributes,
    });
    found = result.searchEntries.map((entry) => ({ entry, conn }));
    references = result.searchReferences;
  } catch (err) {
    // A base made from tokens (ou=%d,...) that does not exist: no such user.
    if (err instanceof NoSuchObjectError) return { outcome: denied('NO', `User not found (search base ${base} does not exist)`) };
    if (err instanceof ResultCodeError)
      return { outcome: unavailable('NO', `User not found (search failed: ${describeResult(err)})`) };
    throw err;
  }

  if (cfg.referrals && references.length > 0) {
    for (const uri of references) {
      const ref = parseReferral(uri);
      if (ref === undefined) {
        s.log.warn({ referral: maskCredentials(uri) }, 'cannot parse a search reference; ignored');
        continue;
      }
      const target = referralTarget(s, conn, ref);
      if (typeof target === 'string') {
        // The directory's URI: it may carry a password of its own.
        const shown = maskCredentials(uri);
        s.log.warn(
          { referral: shown, server: conn.server.uri },
          `not following the referral ${shown} from ${conn.server.uri}: ${target}`,
        );
        return { outcome: unavailable('NO', `User not found (referral ${shown} not followed: ${maskCredentials(target)})`) };
      }
      try {
        found.push(...(await followReferral(s, target, ref, base, filter, attributes)));
      } catch (err) {
        const why = err instanceof ResultCodeError ? describeResult(err) : (err as Error).message;
        return { outcome: unavailable('NO', `User not found (cannot follow referral ${maskCredentials(uri)}: ${why})`) };
      }
      if (found.length > 1) break;
    }
  }

  if (found.length === 0) return { outcome: notFound('NO', 'User not found') };
  if (found.length > 1)
    return { outcome: denied('NO', `User not found (more than one entry matches ${filterText}; exactly one is required)`) };
  const only = found[0] as { entry: Entry; conn: LdapConnection };
  s.log.debug({ dn: only.entry.dn, server: only.conn.server.uri }, 'user entry found');
  return { found: { dn: only.entry.dn, entry: only.entry, conn: only.conn } };
}
