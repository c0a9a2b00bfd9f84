// ldap: Cyrus saslauthd's LDAP mechanism (auth_ldap.c + lak.c) on ldapts.
// Reads the -O file (default /etc/saslauthd.conf) at startup and on SIGHUP,
// answers a bare OK or NO as Cyrus does, and logs why (User not found,
// Invalid password, Group member check failed, server unreachable). Each
// authentication uses its own short-lived connection; see ldap/ for the parts.
import type pino from 'pino';
import { type Backend, type BackendFactory, denied, type Outcome, shed, unavailable } from './backend';
import { PriorityGate } from './gate';
import { utf8Text } from '../log/display';
import { formatIssue } from '../config/saslauthd-conf';
import { DEFAULT_CONF_FILE, type LdapConfig, loadLdapConfig } from './ldap/config';
import { authenticateLdap } from './ldap/methods';
import { ServerPool } from './ldap/pool';
import { LdapSession } from './ldap/session';

/** Connections to the directory at once; more requests wait their turn. */
const MAX_IN_FLIGHT = 64;

interface Loaded {
  cfg: LdapConfig;
  pool: ServerPool;
}

/** Load the file, log its warnings, and throw with every error if it is unusable. */
function load(file: string, log: pino.Logger, previous: Loaded | undefined): Loaded {
  const result = loadLdapConfig(file);
  for (const issue of result.issues) {
    if (issue.severity === 'warning') log.warn({ file }, formatIssue(issue));
  }
  const errors = result.issues.filter((i) => i.severity === 'error').map(formatIssue);
  if (result.config === undefined) throw new Error(errors.join('; '));
  const cfg = result.config;
  // Keep what the old pool learnt about server health when the list is unchanged.
  const same =
    previous !== undefined &&
    previous.cfg.servers.length === cfg.servers.length &&
    previous.cfg.servers.every((s, i) => s.uri === cfg.servers[i]?.uri);
  const pool = same && previous ? previous.pool : new ServerPool(cfg.servers, { log });
  return { cfg, pool };
}

export const createLdapBackend: BackendFactory = async ({ mechOption, log }) => {
  const file = mechOption ?? DEFAULT_CONF_FILE;
  let current = load(file, log, undefined);
  log.info(
    { file, servers: current.cfg.servers.map((s) => s.uri), method: current.cfg.authMethod },
    `ldap: ${current.cfg.authMethod} against ${current.cfg.servers.map((s) => s.uri).join(' ')}`,
  );
  const gate = new PriorityGate(MAX_IN_FLIGHT);
  const inFlight = new Set<AbortController>();

  const backend: Backend = {
    name: 'ldap',
    refusalText: 'NO',
    async authenticate(req, signal): Promise<Outcome> {
      // A snapshot: a SIGHUP during this request does not change it.
      const { cfg, pool } = current;
      // LDAP strings are UTF-8: a login that is not cannot name an entry.
      const login = utf8Text(req.login);
      const service = utf8Text(req.service);
      const reqRealm = utf8Text(req.realm);
      if (login === undefined || service === undefined || reqRealm === undefined) {
        return denied('NO', 'User not found (the login, service or realm is not valid UTF-8)');
      }
      const entered = await gate.enter(signal, { high: req.queue?.high, shedAfterMs: req.queue?.shedAfterMs });
      if (entered === 'shed') return shed('NO');
      if (entered === 'aborted') return unavailable('NO', 'ldap request abandoned while waiting for a free connection');
      const ac = new AbortController();
      const onAbort = (): void => ac.abort();
      signal.addEventListener('abort', onAbort, { once: true });
      if (signal.aborted) ac.abort();
      inFlight.add(ac);
      try {
        const realm = reqRealm !== '' ? reqRealm : cfg.defaultRealm;
        const session = new LdapSession(cfg, pool, { login, service, realm }, req.password, ac.signal, log);
        return await authenticateLdap(session);
      } finally {
        signal.removeEventListener('abort', onAbort);
        inFlight.delete(ac);
        gate.leave();
      }
    },
    servers() {
      return current.pool.states();
    },
    async reload(): Promise<void> {
      current = load(file, log, current);
      log.info({ file, servers: current.cfg.servers.map((s) => s.uri) }, `ldap: configuration re-read from ${file}`);
    },
    async close(): Promise<void> {
      for (const ac of inFlight) ac.abort();
    },
  };
  return backend;
};
