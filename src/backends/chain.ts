// A chain of mechanisms (-a shadow,ldap, or one line of --routes): asked in
// order, the next one only when the current one says the login does not
// exist there (Outcome.unknownUser). A wrong password ends the chain, and so
// does an outage: going on after "unavailable" could let a same-named account
// elsewhere log in with a different password (docs/routes.md).
import type pino from 'pino';
import { shown } from '../log/display';
import type { AuthRequest, Backend, Outcome, ServerState } from './backend';

/** What a chain of more than one mechanism answers to any refusal: the bytes never tell which mechanism, or the throttle, said it. */
export const CHAIN_REFUSAL = 'NO';

/** Mechanisms that can say "no such login": only they may have a successor in a chain. */
export const TELLS_UNKNOWN_USER: ReadonlySet<string> = new Set(['shadow', 'ldap', 'pam']);

/** Mechanisms that take an option (-O, or MECH:OPTION in a route). */
export const TAKES_OPTION: ReadonlySet<string> = new Set(['ldap', 'rimap']);

/**
 * The chain as one Backend. A chain of one is that mechanism with only its
 * name and route stamped on the outcome; a longer chain answers every
 * refusal with CHAIN_REFUSAL (the reason still names the mechanism's).
 */
export function createChain(
  members: readonly Backend[],
  log: pino.Logger,
  opts: { route?: string | undefined; name?: string } = {},
): Backend {
  const first = members[0];
  if (first === undefined) throw new Error('a chain needs at least one mechanism');
  const single = members.length === 1;
  const name = opts.name ?? members.map((m) => m.name).join(',');
  const route = opts.route;
  const stamp = (o: Outcome, mech: string): Outcome => {
    const out: Outcome = { ...o, mech: o.mech ?? mech };
    if (route !== undefined) out.route = route;
    if (!single && !out.ok && out.kind !== 'timeout') out.text = CHAIN_REFUSAL;
    return out;
  };
  return {
    name,
    refusalText: single ? first.refusalText : CHAIN_REFUSAL,
    needsPassword: members.some((m) => m.needsPassword !== false),
    async authenticate(req: AuthRequest, signal: AbortSignal): Promise<Outcome> {
      for (let i = 0; ; i++) {
        const m = members[i];
        if (m === undefined) throw new Error('unreachable: a chain ends on its last mechanism');
        req.asking = m.name;
        const out = await m.authenticate(req, signal);
        const next = members[i + 1];
        if (next === undefined || out.ok || out.kind !== 'denied' || out.unknownUser !== true || signal.aborted) {
          return stamp(out, m.name);
        }
        // PAM marks a refusal it is only delaying as decided; the chain goes
        // on, so that is not this request's answer any more.
        delete req.decided;
        log.debug(
          { user: shown(req.login), realm: shown(req.realm), mech: m.name, next: next.name, reason: out.reason },
          `chain: ${m.name}: ${out.reason} [user=${shown(req.login)}]; asking ${next.name}`,
        );
      }
    },
  };
}

/** The servers of several mechanism instances, for the metrics and the status line. */
export function serversOf(instances: Iterable<Backend>): ServerState[] {
  const out: ServerState[] = [];
  for (const b of instances) for (const s of b.servers?.() ?? []) out.push({ ...s, mech: b.name });
  return out;
}
