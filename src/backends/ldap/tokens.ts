// Cyrus's %-token expansion for ldap_filter, ldap_search_base, ldap_group_dn,
// ldap_group_filter and ldap_group_search_base (lak.c lak_expand_tokens),
// with the escaping the result needs: RFC 4515 where it becomes a filter,
// RFC 4514 where it becomes a DN. Cyrus filter-escapes both, which lets a
// login such as "a,ou=x" change the structure of a fastbind DN.

export interface TokenContext {
  /** The login as the mechanism receives it (after -r). */
  login: string;
  service: string;
  /** The request realm, or ldap_default_realm when the request has none. */
  realm: string;
  /** %D: the user's DN; only group expansions have one. */
  userDn?: string;
}

/** Where the expanded text goes: an LDAP filter or a DN. */
export type ExpansionTarget = 'filter' | 'dn';

/** RFC 4515 §3: escape the characters that are special in a filter assertion value. */
export function escapeFilterValue(value: string): string {
  return value.replace(/[*()\\\0]/g, (c) => `\\${c.charCodeAt(0).toString(16).padStart(2, '0')}`);
}

/** RFC 4514 §2.4: escape a string for use inside an attribute value of a DN. */
export function escapeDnValue(value: string): string {
  let out = '';
  for (let i = 0; i < value.length; i++) {
    const c = value[i] ?? '';
    if (c === '\0') out += '\\00';
    else if ('\\"+,;<>='.includes(c)) out += `\\${c}`;
    else if ((c === ' ' || c === '#') && i === 0) out += `\\${c}`;
    else if (c === ' ' && i === value.length - 1) out += '\\ ';
    else out += c;
  }
  return out;
}

/** The labels of the login's domain (after the first "@"), else of the realm; %1 is the last. */
function domainLabel(ctx: TokenContext, n: number): string {
  const at = ctx.login.indexOf('@');
  const domain = at >= 0 ? ctx.login.slice(at + 1) : ctx.realm;
  if (domain.length === 0) return '';
  const labels = domain.split('.');
  return labels[labels.length - n] ?? '';
}

/** The raw (unescaped) value of one token, or undefined for an unknown token. */
function tokenValue(token: string, ctx: TokenContext): string | undefined {
  const at = ctx.login.indexOf('@');
  switch (token) {
    case 'u':
      return ctx.login;
    case 'U':
      return at >= 0 ? ctx.login.slice(0, at) : ctx.login;
    case 'd':
      // Only the login's domain: Cyrus does not fall back to the realm here.
      return at >= 0 ? ctx.login.slice(at + 1) : '';
    case 'r':
      return ctx.realm;
    case 'R':
      return ctx.realm.length > 0 ? `@${ctx.realm}` : '';
    case 's':
      return ctx.service;
    case 'D':
      return ctx.userDn ?? '';
    default:
      if (token >= '1' && token <= '9') return domainLabel(ctx, Number(token));
      return undefined;
  }
}

/**
 * Expand %% %u %U %d %r %R %1-%9 %s %D in template. Every substituted value
 * is escaped for target; an unknown %x disappears and a lone trailing % stays,
 * as in Cyrus. %D in a DN is inserted as is: it is already a DN, from the server.
 */
export function expandTokens(template: string, ctx: TokenContext, target: ExpansionTarget): string {
  let out = '';
  for (let i = 0; i < template.length; i++) {
    const c = template[i];
    if (c !== '%' || i === template.length - 1) {
      out += c;
      continue;
    }
    const token = template[++i] ?? '';
    if (token === '%') {
      out += '%';
      continue;
    }
    const value = tokenValue(token, ctx);
    if (value === undefined) continue;
    if (token === 'D' && target === 'dn') out += value;
    else out += target === 'filter' ? escapeFilterValue(value) : escapeDnValue(value);
  }
  return out;
}

/** The text of template that no token supplies: what stays the same whatever the login, realm or service. */
export function templateLiteral(template: string): string {
  let out = '';
  for (let i = 0; i < template.length; i++) {
    const c = template[i];
    if (c !== '%' || i === template.length - 1) out += c;
    else if (template[++i] === '%') out += '%';
  }
  return out;
}
