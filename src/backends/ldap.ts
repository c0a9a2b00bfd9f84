// ldap: Cyrus saslauthd's LDAP mechanism (auth_ldap.c + lak.c) on ldapts.
// Reads the -O file (default /etc/saslauthd.conf) at startup and on SIGHUP,
// answers a bare OK or NO as Cyrus does, and logs why (User not found,
// Invalid password, Group member check failed, server unreachable). Each
// authentication uses its own short-lived connection; see ldap/ for the parts.
import type pino from 'pino';
import { type Backend, type BackendFactory, type Outcome, unavailable } from './backend';
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

/** A counting semaphore whose waiters give up when their request is abandoned. */
class Gate {
  private active = 0;
  private readonly waiting: Array<() => void> = [];

  constructor(private readonly limit: number) {}

  async enter(signal: AbortSignal): Promise<boolean> {
    if (this.active < this.limit) {
      this.active++;
      return true;
    }
    return new Promise<boolean>((resolve) => {
      const go = (): void => {
        signal.removeEventListener('abort', giveUp);
        this.active++;
        resolve(true);
      };
      const giveUp = (): void => {
        const i = this.waiting.indexOf(go);
        if (i >= 0) this.waiting.splice(i, 1);
        resolve(false);
      };
      this.waiting.push(go);
      signal.addEventListener('abort', giveUp, { once: true });
    });
  }

  leave(): void {
    this.active--;
    this.waiting.shift()?.();
  }
}

export const createLdapBackend: BackendFactory = async ({ mechOption, log }) => {
  const file = mechOption ?? DEFAULT_CONF_FILE;
  let current = load(file, log, undefined);
  log.info(
    { file, servers: current.cfg.servers.map((s) => s.uri), method: current.cfg.authMethod },
    `ldap: ${current.cfg.authMethod} against ${current.cfg.servers.map((s) => s.uri).join(' ')}`,
  );
  const gate = new Gate(MAX_IN_FLIGHT);
  const inFlight = new Set<AbortController>();

  const backend: Backend = {
    name: 'ldap',
    async authenticate(req, signal): Promise<Outcome> {
      // A snapshot: a SIGHUP during this request does not change it.
      const { cfg, pool } = current;
      if (!(await gate.enter(signal))) return unavailable('NO', 'ldap request abandoned while waiting for a free connection');
      const ac = new AbortController();
      const onAbort = (): void => ac.abort();
      signal.addEventListener('abort', onAbort, { once: true });
      if (signal.aborted) ac.abort();
      inFlight.add(ac);
      try {
        const realm = req.realm !== '' ? req.realm : cfg.defaultRealm;
        const session = new LdapSession(
          cfg,
          pool,
          { login: req.login, service: req.service, realm },
          req.password,
          ac.signal,
          log,
        );
        return await authenticateLdap(session);
      } finally {
        signal.removeEventListener('abort', onAbort);
        inFlight.delete(ac);
        gate.leave();
      }
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
