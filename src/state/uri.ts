// --state: where the fleet's shared state lives. A Redis (or Valkey) server
// named the way mail operators already write it for rspamd and Dovecot:
//   redis://[user:password@]host[:port][/db]
//   rediss://[user:password@]host[:port][/db]    (TLS; --state-tls-* flags)
//   unix://[user:password@]/path/to/redis.sock[?db=N]
//   /path/to/redis.sock                           (a bare socket path)
// The password is a secret: maskStateUri() is the only form that may be
// printed (--check, errors, logs).

export interface StateTarget {
  kind: 'tcp' | 'tls' | 'unix';
  host?: string;
  port?: number;
  path?: string;
  db: number;
  username?: string;
  password?: string;
  /** The URI with its password replaced by "***": safe to print. */
  display: string;
}

export class StateUriError extends Error {
  readonly code = 'STATE_URI';
}

const DEFAULT_PORT = 6379;

function decode(s: string, what: string, display: string): string {
  try {
    return decodeURIComponent(s);
  } catch {
    throw new StateUriError(`--state ${display}: the ${what} has a malformed %-escape`);
  }
}

function parseDb(s: string, display: string): number {
  if (!/^\d{1,5}$/.test(s))
    throw new StateUriError(`--state ${display}: the database must be a number (as in redis://host:6379/0), not '${s}'`);
  return Number(s);
}

/** The URI with any password masked, for messages about a URI that may not even parse. */
export function maskStateUri(uri: string): string {
  // scheme://user:password@ -> scheme://user:***@ ; scheme://password@ (no colon) is a password too.
  return uri.replace(/^([a-z]+:\/\/)([^@/]*)@/i, (_m, scheme: string, cred: string) => {
    const colon = cred.indexOf(':');
    return colon >= 0 ? `${scheme}${cred.slice(0, colon)}:***@` : `${scheme}***@`;
  });
}

export function parseStateUri(uri: string): StateTarget {
  const display = maskStateUri(uri);
  if (uri.startsWith('/')) {
    if (/[?#]/.test(uri))
      throw new StateUriError(
        `--state ${display}: a bare socket path takes no options; use unix://${uri.split('?')[0] ?? ''}?db=N`,
      );
    return { kind: 'unix', path: uri, db: 0, display };
  }
  const m = /^([a-z]+):\/\/(?:([^@/]*)@)?(.*)$/i.exec(uri);
  if (m === null) {
    throw new StateUriError(
      `--state ${display}: not a Redis URI; use redis://[user:password@]host[:port][/db], rediss://... or unix:///path/to/redis.sock`,
    );
  }
  const scheme = (m[1] ?? '').toLowerCase();
  const cred = m[2];
  const rest = m[3] ?? '';
  let username: string | undefined;
  let password: string | undefined;
  if (cred !== undefined && cred !== '') {
    const colon = cred.indexOf(':');
    // redis://secret@host is how redis-cli reads a bare password (no user): so do we.
    if (colon < 0) password = decode(cred, 'password', display);
    else {
      const u = cred.slice(0, colon);
      if (u !== '') username = decode(u, 'user name', display);
      password = decode(cred.slice(colon + 1), 'password', display);
    }
  }
  const withCred = (t: StateTarget): StateTarget => {
    if (username !== undefined) t.username = username;
    if (password !== undefined && password !== '') t.password = password;
    return t;
  };
  if (scheme === 'unix') {
    const [p = '', query = ''] = rest.split('?', 2);
    if (!p.startsWith('/'))
      throw new StateUriError(
        `--state ${display}: a unix:// URI needs an absolute socket path, as in unix:///run/redis/redis-server.sock`,
      );
    let db = 0;
    for (const part of query.split('&').filter((x) => x !== '')) {
      const [k, v = ''] = part.split('=', 2);
      if (k === 'db') db = parseDb(v, display);
      else throw new StateUriError(`--state ${display}: unknown option '${k ?? ''}' (only db=N)`);
    }
    return withCred({ kind: 'unix', path: decode(p, 'socket path', display), db, display });
  }
  if (scheme !== 'redis' && scheme !== 'rediss') {
    throw new StateUriError(`--state ${display}: unknown scheme '${scheme}://'; use redis://, rediss:// (TLS) or unix://`);
  }
  if (/[?#]/.test(rest))
    throw new StateUriError(
      `--state ${display}: options after '?' are not supported; TLS files are set with --state-tls-ca, --state-tls-cert and --state-tls-key`,
    );
  const slash = rest.indexOf('/');
  const hostPort = slash < 0 ? rest : rest.slice(0, slash);
  const dbPart = slash < 0 ? '' : rest.slice(slash + 1);
  const hp = /^(?:\[([0-9a-fA-F:.]+)\]|([^:[\]]+))(?::(\d{1,5}))?$/.exec(hostPort);
  if (hp === null) throw new StateUriError(`--state ${display}: '${hostPort}' is not host[:port]`);
  const port = hp[3] === undefined ? DEFAULT_PORT : Number(hp[3]);
  if (port < 1 || port > 65535) throw new StateUriError(`--state ${display}: port ${port} is out of range`);
  return withCred({
    kind: scheme === 'rediss' ? 'tls' : 'tcp',
    host: hp[1] ?? hp[2] ?? '',
    port,
    db: dbPart === '' ? 0 : parseDb(dbPart, display),
    display,
  });
}
