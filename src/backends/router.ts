// Several mechanisms in one daemon: the Backend behind --routes FILE (a chain
// per realm) and behind -a a,b (one chain for every realm). Each distinct
// MECH:OPTION is one instance of that mechanism, with its own connection
// pool, failover state and configuration reload, shared by every route that
// names it. A SIGHUP builds a new table beside the old one: requests in
// flight finish on the table they started with, and the instances only the
// old table used are closed once its last request is done.
import fs from 'node:fs';
import type pino from 'pino';
import {
  type ParsedRoutes,
  parseRoutes,
  formatRouteIssue,
  memberText,
  type RealmPattern,
  type Route,
  RouteTable,
} from '../config/routes';
import type { AuthRequest, Backend, BackendFactory, Outcome, ServerState } from './backend';
import { createChain, serversOf, TAKES_OPTION } from './chain';
import { maskCredentials } from '../log/redact';

/** What a request matching no route is answered: a bare NO, as a chain's. */
export const NO_ROUTE_REPLY = 'NO';

interface LiveRoute {
  name: string;
  pattern: RealmPattern;
  join: boolean | undefined;
  chain: Backend;
}

interface Table {
  matcher: RouteTable<LiveRoute>;
  instances: Map<string, Backend>;
  /** Requests running on this table. */
  refs: number;
  /** Replaced by a newer table: close `dropped` when refs reaches 0. */
  dropped: Backend[] | undefined;
}

export interface RouterOptions {
  factories: Record<string, BackendFactory>;
  log: pino.Logger;
  /** The daemon's -r: whether a route without +r/-r joins login@realm. */
  concatRealm: boolean;
}

export interface RoutesSource {
  /** --routes FILE: re-read on reload. */
  file: string;
}

/** The key of one mechanism instance: same mechanism and option, same instance. */
function instanceKey(mech: string, option: string | undefined): string {
  return `${mech}\0${option ?? ''}`;
}

/** Read and parse a routes file; throws one message listing every error. */
export function loadRoutesFile(file: string, known: readonly string[]): ParsedRoutes {
  let text: string;
  try {
    text = fs.readFileSync(file, 'latin1');
  } catch (err) {
    throw new Error(`${file}: cannot read the routes file: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
  const parsed = parseRoutes(text, known);
  const errors = parsed.issues.filter((i) => i.severity === 'error');
  if (errors.length > 0) throw new Error(errors.map((i) => formatRouteIssue(file, i)).join('; '));
  return parsed;
}

export class Router implements Backend {
  readonly name: string;
  readonly refusalText = NO_ROUTE_REPLY;
  readonly needsPassword = true;
  private table: Table;
  private reloading: Promise<void> = Promise.resolve();

  private constructor(
    private readonly opts: RouterOptions,
    private readonly source: RoutesSource | undefined,
    table: Table,
    name: string,
  ) {
    this.table = table;
    this.name = name;
  }

  /** --routes FILE. Throws (with every error of the file) if it is unusable. */
  static async fromFile(file: string, opts: RouterOptions): Promise<Router> {
    const parsed = loadRoutesFile(file, Object.keys(opts.factories));
    const table = await buildTable(parsed.routes, new Map(), opts, false);
    return new Router(opts, { file }, table, 'routes');
  }

  /**
   * -a a,b [-O option]: one chain for every request. Its outcomes carry the
   * answering mechanism but no route, and the realm join stays the
   * authenticator's (-r), so give this chain join false.
   */
  static async chain(mechs: readonly string[], option: string | undefined, opts: RouterOptions): Promise<Router> {
    const route: Route = {
      name: '*',
      pattern: { kind: 'any' },
      chain: mechs.map((mech) => ({ mech, option: TAKES_OPTION.has(mech) ? option : undefined })),
      join: false,
      line: 0,
    };
    const table = await buildTable([route], new Map(), opts, true);
    return new Router(opts, undefined, table, mechs.join(','));
  }

  /** The routes in force, as lines of the file would write them (for the log and --check). */
  describe(): string[] {
    return describeRoutes(this.table.matcher.routes.map((r) => ({ name: r.name, join: r.join, chain: r.chain.name })));
  }

  refusalFor(realm: string): string {
    return this.table.matcher.match(realm)?.chain.refusalText ?? NO_ROUTE_REPLY;
  }

  routeOf(realm: string): string | undefined {
    if (this.source === undefined) return undefined;
    return this.table.matcher.match(realm)?.name ?? '(none)';
  }

  async authenticate(req: AuthRequest, signal: AbortSignal): Promise<Outcome> {
    const table = this.table;
    const route = table.matcher.match(req.realm);
    if (route === undefined) {
      return {
        ok: false,
        kind: 'denied',
        text: NO_ROUTE_REPLY,
        reason: `no route for realm '${req.realm}'${this.source !== undefined ? ` in ${this.source.file}` : ''}`,
        route: '(none)',
      };
    }
    // The authenticator made this request for us alone: the route decides
    // whether the mechanisms see login or login@realm.
    const join = route.join ?? this.opts.concatRealm;
    if (join && req.realm.length > 0) req.login = `${req.login}@${req.realm}`;
    table.refs++;
    try {
      return await route.chain.authenticate(req, signal);
    } finally {
      table.refs--;
      if (table.refs === 0 && table.dropped !== undefined) closeAll(table, this.opts.log);
    }
  }

  servers(): ServerState[] {
    return serversOf(this.table.instances.values());
  }

  /**
   * SIGHUP: re-read the routes file (when there is one) and every instance's
   * own configuration. Any error keeps the old table whole and rejects with
   * the reason; requests in flight finish on the table they started with.
   */
  reload(): Promise<void> {
    const run = this.reloading.then(() => this.reloadNow());
    this.reloading = run.catch(() => undefined);
    return run;
  }

  private async reloadNow(): Promise<void> {
    const old = this.table;
    if (this.source === undefined) {
      for (const b of old.instances.values()) await b.reload?.();
      return;
    }
    const parsed = loadRoutesFile(this.source.file, Object.keys(this.opts.factories));
    const next = await buildTable(parsed.routes, old.instances, this.opts, false);
    old.dropped = [...old.instances].filter(([k]) => !next.instances.has(k)).map(([, b]) => b);
    this.table = next;
    if (old.refs === 0) closeAll(old, this.opts.log);
    this.opts.log.info({ routes: this.describe() }, `routes: ${this.source.file} re-read, ${next.matcher.routes.length} routes`);
  }

  async close(): Promise<void> {
    await Promise.all([...this.table.instances.values()].map((b) => b.close?.() ?? Promise.resolve()));
  }
}

function closeAll(table: Table, log: pino.Logger): void {
  const dropped = table.dropped ?? [];
  table.dropped = [];
  for (const b of dropped) {
    b.close?.().catch((err: unknown) => log.warn({ err }, `routes: closing a retired ${b.name} instance failed`));
  }
}

/**
 * The table for routes: instances of `previous` are reused (and reloaded) for
 * the same MECH:OPTION, the others created. On any failure the instances
 * created here are closed again and the error thrown.
 */
async function buildTable(
  routes: readonly Route[],
  previous: ReadonlyMap<string, Backend>,
  opts: RouterOptions,
  anonymous: boolean,
): Promise<Table> {
  const instances = new Map<string, Backend>();
  const created: Backend[] = [];
  try {
    for (const r of routes) {
      for (const m of r.chain) {
        const key = instanceKey(m.mech, m.option);
        if (instances.has(key)) continue;
        const old = previous.get(key);
        if (old !== undefined) {
          await old.reload?.();
          instances.set(key, old);
          continue;
        }
        const factory = opts.factories[m.mech];
        if (factory === undefined) throw new Error(`unknown authentication mechanism: ${m.mech}`);
        let b: Backend;
        try {
          b = await factory({ mechOption: m.option, log: opts.log.child({ mech: m.mech }), chained: true });
        } catch (err) {
          throw new Error(`${memberText(m)}: failed to initialize mechanism: ${(err as Error).message}`);
        }
        created.push(b);
        instances.set(key, b);
      }
    }
  } catch (err) {
    await Promise.all(created.map((b) => b.close?.() ?? Promise.resolve()));
    throw err;
  }
  const live: LiveRoute[] = routes.map((r) => ({
    name: r.name,
    pattern: r.pattern,
    join: r.join,
    chain: createChain(
      r.chain.map((m) => instances.get(instanceKey(m.mech, m.option)) as Backend),
      opts.log,
      { route: anonymous ? undefined : r.name, name: r.chain.map((m) => maskCredentials(memberText(m))).join(' ') },
    ),
  }));
  return { matcher: new RouteTable(live), instances, refs: 0, dropped: undefined };
}

/** "REALM CHAIN [+r|-r]" lines, most specific first (the order matching uses). */
export function describeRoutes(routes: ReadonlyArray<{ name: string; join: boolean | undefined; chain: string }>): string[] {
  const rank = (n: string): number => (n === '-' ? 0 : n === '*' ? 3 : n.startsWith('*.') ? 2 : 1);
  return [...routes]
    .sort((a, b) => rank(a.name) - rank(b.name) || b.name.length - a.name.length || a.name.localeCompare(b.name))
    .map((r) => `${r.name} ${r.chain}${r.join === undefined ? '' : r.join ? ' +r' : ' -r'}`);
}
