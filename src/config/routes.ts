// --routes FILE: which chain of mechanisms answers which realm. Pure: text in,
// routes and issues (with line and column) out, and the matcher; reading the
// file and the option files is the caller's (check.ts, backends/router.ts).
//
//   # REALM          CHAIN: MECH[:OPTION] ...     [+r | -r]
//   -                shadow
//   ldap.test        ldap:/etc/saslauthd-ldap.conf +r
//   imap.test        rimap:imaps://127.0.0.1:993
//   *.corp.test      ldap:/etc/saslauthd-corp.conf
//   *                shadow ldap:/etc/saslauthd.conf
//
// Matching: exact realm first, then the longest *.suffix, then *; "-" is the
// request without a realm. Realms compare case-insensitively (DNS names).
import { parseRimapOption } from '../backends/rimap/options';
import { TAKES_OPTION, TELLS_UNKNOWN_USER } from '../backends/chain';

/** A realm as the routes file names it. */
export type RealmPattern =
  | { kind: 'none' } // "-": no realm sent
  | { kind: 'any' } // "*": everything else
  | { kind: 'suffix'; suffix: string } // "*.example.org": ".example.org", lower case
  | { kind: 'exact'; realm: string }; // lower case

export interface RouteMember {
  mech: string;
  option: string | undefined;
}

export interface Route {
  /** As written, for logs and the route= field: "-", "*", "*.corp.test", "ldap.test". */
  name: string;
  pattern: RealmPattern;
  chain: RouteMember[];
  /** +r: join login@realm; -r: never; undefined: as the daemon's -r. */
  join: boolean | undefined;
  line: number;
}

export interface RouteIssue {
  severity: 'error' | 'warning';
  line: number;
  column: number;
  message: string;
}

export interface ParsedRoutes {
  routes: Route[];
  issues: RouteIssue[];
}

/** The wire carries at most this many bytes in a field: a longer realm can never arrive. */
const MAX_FIELD = 255;

export function formatRouteIssue(file: string, i: RouteIssue): string {
  return `${file}:${i.line}:${i.column}: ${i.severity === 'warning' ? 'warning: ' : ''}${i.message}`;
}

/** The member as a route line writes it ("ldap:/etc/x.conf"). */
export function memberText(m: RouteMember): string {
  return m.option === undefined ? m.mech : `${m.mech}:${m.option}`;
}

function parsePattern(text: string): RealmPattern | string {
  if (text === '-') return { kind: 'none' };
  if (text === '*') return { kind: 'any' };
  if (text.startsWith('*.')) {
    const suffix = text.slice(1).toLowerCase();
    if (suffix.length < 2 || suffix.includes('*')) return `'${text}': a wildcard realm is * or *.domain`;
    if (suffix.startsWith('..') || suffix.endsWith('.')) return `'${text}': not a domain after '*.'`;
    return { kind: 'suffix', suffix };
  }
  if (text.includes('*')) return `'${text}': '*' is allowed only as the whole realm or as a leading '*.'`;
  return { kind: 'exact', realm: text.toLowerCase() };
}

function patternKey(p: RealmPattern): string {
  switch (p.kind) {
    case 'none':
      return '-';
    case 'any':
      return '*';
    case 'suffix':
      return `*${p.suffix}`;
    case 'exact':
      return p.realm;
  }
}

/**
 * Parse a routes file. known: the mechanism names the daemon implements.
 * Returns every route that parsed and every issue found; a file with any
 * error issue must not be used.
 */
export function parseRoutes(text: string, known: readonly string[]): ParsedRoutes {
  const routes: Route[] = [];
  const issues: RouteIssue[] = [];
  const seen = new Map<string, number>();
  const err = (line: number, column: number, message: string): void => {
    issues.push({ severity: 'error', line, column, message });
  };
  const lines = text.split('\n');
  lines.forEach((raw, idx) => {
    const lineNo = idx + 1;
    const line = raw.endsWith('\r') ? raw.slice(0, -1) : raw;
    const tokens: Array<{ text: string; column: number }> = [];
    for (const m of line.matchAll(/\S+/g)) {
      if (m[0].startsWith('#')) break;
      tokens.push({ text: m[0], column: (m.index ?? 0) + 1 });
    }
    const head = tokens[0];
    if (head === undefined) return;
    const pattern = parsePattern(head.text);
    if (typeof pattern === 'string') {
      err(lineNo, head.column, pattern);
      return;
    }
    let bad = false;
    if (Buffer.byteLength(head.text, 'latin1') > MAX_FIELD) {
      err(
        lineNo,
        head.column,
        `realm '${head.text.slice(0, 40)}...' is longer than ${MAX_FIELD} bytes: this route can never match`,
      );
      bad = true;
    }
    const key = patternKey(pattern);
    const first = seen.get(key);
    if (first !== undefined) {
      err(lineNo, head.column, `realm '${head.text}' is routed twice (first on line ${first}); this line can never match`);
      bad = true;
    } else {
      seen.set(key, lineNo);
    }
    let join: boolean | undefined;
    const chain: RouteMember[] = [];
    const members = new Map<string, number>();
    for (const t of tokens.slice(1)) {
      if (t.text === '+r' || t.text === '-r') {
        if (join !== undefined) {
          err(lineNo, t.column, `'${t.text}': the realm join is set twice on this line`);
          bad = true;
        }
        join = t.text === '+r';
        continue;
      }
      const colon = t.text.indexOf(':');
      const mech = (colon < 0 ? t.text : t.text.slice(0, colon)).toLowerCase();
      const option = colon < 0 ? undefined : t.text.slice(colon + 1);
      if (!/^[a-z][a-z0-9]*$/.test(mech)) {
        err(lineNo, t.column, `'${t.text}': expected MECH[:OPTION] or +r/-r`);
        bad = true;
        continue;
      }
      if (!known.includes(mech)) {
        err(lineNo, t.column, `unknown mechanism '${mech}' (available: ${known.join(', ')})`);
        bad = true;
        continue;
      }
      if (option !== undefined && !TAKES_OPTION.has(mech)) {
        err(lineNo, t.column + mech.length, `${mech} takes no option; write '${mech}' alone`);
        bad = true;
        continue;
      }
      if (option === '') {
        err(lineNo, t.column + mech.length + 1, `empty option after '${mech}:'`);
        bad = true;
        continue;
      }
      if (mech === 'rimap') {
        try {
          parseRimapOption(option);
        } catch (e) {
          err(lineNo, option === undefined ? t.column : t.column + mech.length + 1, `rimap: ${(e as Error).message}`);
          bad = true;
          continue;
        }
      }
      const member = { mech, option };
      const prev = chain[chain.length - 1];
      if (prev !== undefined && !TELLS_UNKNOWN_USER.has(prev.mech)) {
        err(
          lineNo,
          t.column,
          `'${t.text}' can never be asked: ${prev.mech} cannot tell an unknown login from a wrong password, so a chain never goes past it`,
        );
        bad = true;
        continue;
      }
      const id = memberText(member);
      const again = members.get(id);
      if (again !== undefined) {
        err(lineNo, t.column, `'${t.text}' is already in this chain (column ${again}): asked again it would answer the same`);
        bad = true;
        continue;
      }
      members.set(id, t.column);
      chain.push(member);
    }
    if (chain.length === 0 && !bad) {
      err(lineNo, line.length + 1, `realm '${head.text}' has no mechanism: expected ${head.text} MECH[:OPTION] ...`);
      bad = true;
    }
    if (!bad) routes.push({ name: head.text, pattern, chain, join, line: lineNo });
  });
  if (routes.length === 0 && issues.length === 0) {
    err(1, 1, 'no routes: every request would be refused; add a line such as "* shadow"');
  }
  return { routes, issues };
}

/** The matcher: exact, then the longest suffix, then "*"; "-" for no realm. */
export class RouteTable<T extends { pattern: RealmPattern }> {
  private readonly exact = new Map<string, T>();
  /** Longest suffix first. */
  private readonly suffixes: Array<{ suffix: string; route: T }> = [];
  private none: T | undefined;
  private any: T | undefined;

  constructor(readonly routes: readonly T[]) {
    for (const r of routes) {
      const p = r.pattern;
      if (p.kind === 'none') this.none ??= r;
      else if (p.kind === 'any') this.any ??= r;
      else if (p.kind === 'exact') {
        if (!this.exact.has(p.realm)) this.exact.set(p.realm, r);
      } else this.suffixes.push({ suffix: p.suffix, route: r });
    }
    this.suffixes.sort((a, b) => b.suffix.length - a.suffix.length);
  }

  match(realm: string): T | undefined {
    if (realm === '') return this.none ?? this.any;
    const r = realm.toLowerCase();
    const exact = this.exact.get(r);
    if (exact !== undefined) return exact;
    for (const s of this.suffixes) {
      if (r.length > s.suffix.length && r.endsWith(s.suffix)) return s.route;
    }
    return this.any;
  }
}
