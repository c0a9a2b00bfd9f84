// The group check (lak.c lak_group_member), run after a successful
// authentication when ldap_group_dn or ldap_group_filter is set, on a
// connection bound as the service (or anonymous):
//   attr:   compare ldap_group_attr of ldap_group_dn with the user's DN;
//   filter: search ldap_group_search_base / ldap_group_scope with
//           ldap_group_filter (%D = the user's DN); one hit is enough.
import { NoSuchAttributeError, NoSuchObjectError, ResultCodeError, UndefinedTypeError } from 'ldapts';
import { denied, type Outcome, unavailable } from '../backend';
import type { LdapConfig } from './config';
import type { LdapConnection } from './connection';
import { describeResult } from './errors';
import { parseFilter } from './lookup';
import type { LdapSession } from './session';
import { expandTokens } from './tokens';

const FAILED = 'Group member check failed';

export function groupCheckEnabled(cfg: LdapConfig): boolean {
  return cfg.groupDn !== '' || cfg.groupFilter !== '';
}

/** Resolves undefined for a member, or the failure outcome. */
export async function checkGroup(s: LdapSession, conn: LdapConnection, userDn: string): Promise<Outcome | undefined> {
  const { cfg } = s;
  const tokens = { ...s.tokens, userDn };
  try {
    if (cfg.groupMatchMethod === 'attr') {
      // Cyrus: a group filter without "match_method: filter" compares against an empty DN and fails.
      if (cfg.groupDn === '') return denied('NO', `${FAILED} (ldap_group_dn is empty)`);
      const groupDn = expandTokens(cfg.groupDn, tokens, 'dn');
      const member = await conn.compare(groupDn, cfg.groupAttr, userDn);
      return member ? undefined : denied('NO', `${FAILED} (${userDn} is not a ${cfg.groupAttr} of ${groupDn})`);
    }
    if (cfg.groupFilter === '') return denied('NO', `${FAILED} (ldap_group_filter is empty)`);
    const filterText = expandTokens(cfg.groupFilter, tokens, 'filter');
    const filter = parseFilter(filterText, 'ldap_group_filter');
    if (typeof filter === 'string') return unavailable('NO', filter);
    const result = await conn.search({
      base: expandTokens(cfg.groupSearchBase, tokens, 'dn'),
      scope: cfg.groupScope,
      filter,
      derefAliases: cfg.deref,
      sizeLimit: 1,
      timeLimit: cfg.timeLimit,
      attributes: ['1.1'],
    });
    return result.searchEntries.length > 0 ? undefined : denied('NO', `${FAILED} (no entry matches ${filterText})`);
  } catch (err) {
    if (err instanceof NoSuchObjectError || err instanceof NoSuchAttributeError || err instanceof UndefinedTypeError) {
      return denied('NO', `${FAILED} (${describeResult(err)})`);
    }
    if (err instanceof ResultCodeError) return unavailable('NO', `${FAILED} (${describeResult(err)})`);
    throw err;
  }
}
