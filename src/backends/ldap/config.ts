// The LDAP mechanism's configuration: every key Cyrus 2.1.28's lak.c reads
// from saslauthd.conf, with its aliases and defaults, turned into a typed
// LdapConfig. Where Cyrus silently ignores a mistake this reports it: an
// unknown key or a bad value is a warning naming file, line and key (an error
// in strict mode, for --check); what would make every request fail (a syntax
// error, no usable server, SASL, unreadable TLS files) is an error, and so is
// a mistake that would quietly switch a protection off (a TLS, StartTLS or
// group value nobody can read, a misspelt key close to a real one).
import fs from 'node:fs';
import path from 'node:path';
import tls from 'node:tls';
import { FilterParser } from 'ldapts';
import {
  type ConfEntry,
  type ConfIssue,
  ConfReadError,
  formatIssue,
  parseConfText,
  readConfFile,
} from '../../config/saslauthd-conf';
import { maskCredentials } from '../../log/redact';
import { isSaslMechanismName } from './errors';
import { expandTokens, templateLiteral } from './tokens';

export const DEFAULT_CONF_FILE = '/etc/saslauthd.conf';
/** Debian's system CA bundle, which libldap uses through /etc/ldap/ldap.conf. */
export const SYSTEM_CA_BUNDLE = '/etc/ssl/certs/ca-certificates.crt';
/** libldap's ldapi:// socket on Debian when the URI names none. */
export const DEFAULT_LDAPI_PATH = '/var/run/slapd/ldapi';

export type AuthMethod = 'bind' | 'custom' | 'fastbind';
export type Scope = 'sub' | 'one' | 'base';
export type Deref = 'never' | 'search' | 'find' | 'always';
export type GroupMatchMethod = 'attr' | 'filter';

export interface LdapServer {
  /** As written in ldap_servers. */
  uri: string;
  scheme: 'ldap' | 'ldaps' | 'ldapi';
  host: string;
  port: number;
  /** ldapi:// only: the UNIX socket. */
  socketPath?: string;
}

export interface TlsSettings {
  startTls: boolean;
  /** ldap_tls_check_peer; undefined (not set) verifies, like libldap's default "demand". */
  checkPeer: boolean | undefined;
  /** CA, client certificate and ciphers, built once per configuration. */
  secureContext: tls.SecureContext | undefined;
}

export interface LdapConfig {
  file: string;
  servers: LdapServer[];
  bindDn: string;
  /** ldap_password / ldap_bind_pw. Never log it. */
  bindPassword: string;
  searchBase: string;
  filter: string;
  passwordAttr: string;
  authMethod: AuthMethod;
  scope: Scope;
  groupDn: string;
  groupAttr: string;
  groupMatchMethod: GroupMatchMethod;
  groupFilter: string;
  groupSearchBase: string;
  groupScope: Scope;
  defaultRealm: string;
  timeoutMs: number;
  timeLimit: number;
  sizeLimit: number;
  deref: Deref;
  referrals: boolean;
  tls: TlsSettings;
}

type KeyKind = 'string' | 'bool' | 'int' | 'enum' | 'servers';

interface KeyDef {
  kind: KeyKind;
  /** Cyrus's default, as text (shown by --check and in the README table). */
  default: string;
  aliases?: string[];
  choices?: readonly string[];
  secret?: boolean;
  /** Only meaningful with ldap_use_sasl. */
  sasl?: boolean;
}

/** Every key lak.c reads, keyed by its canonical name. */
export const LDAP_KEYS: Readonly<Record<string, KeyDef>> = {
  ldap_servers: { kind: 'servers', default: 'ldap://localhost/' },
  ldap_bind_dn: { kind: 'string', default: '' },
  ldap_password: { kind: 'string', default: '', aliases: ['ldap_bind_pw'], secret: true },
  ldap_version: { kind: 'int', default: '3' },
  ldap_search_base: { kind: 'string', default: '' },
  ldap_filter: { kind: 'string', default: '(uid=%u)' },
  ldap_password_attr: { kind: 'string', default: 'userPassword' },
  ldap_auth_method: { kind: 'enum', default: 'bind', choices: ['bind', 'custom', 'fastbind'] },
  ldap_scope: { kind: 'enum', default: 'sub', choices: ['sub', 'one', 'base'] },
  ldap_group_dn: { kind: 'string', default: '' },
  ldap_group_attr: { kind: 'string', default: 'uniqueMember' },
  ldap_group_match_method: { kind: 'enum', default: 'attr', choices: ['attr', 'filter'] },
  ldap_group_filter: { kind: 'string', default: '' },
  ldap_group_search_base: { kind: 'string', default: '' },
  ldap_group_scope: { kind: 'enum', default: 'sub', choices: ['sub', 'one', 'base'] },
  ldap_default_realm: { kind: 'string', default: '', aliases: ['ldap_default_domain'] },
  ldap_timeout: { kind: 'int', default: '5' },
  ldap_time_limit: { kind: 'int', default: '5' },
  ldap_size_limit: { kind: 'int', default: '1' },
  ldap_deref: { kind: 'enum', default: 'never', choices: ['never', 'search', 'find', 'always'] },
  ldap_referrals: { kind: 'bool', default: 'no' },
  ldap_restart: { kind: 'bool', default: 'yes' },
  ldap_use_sasl: { kind: 'bool', default: 'no' },
  ldap_id: { kind: 'string', default: '', aliases: ['ldap_sasl_authc_id'], sasl: true },
  ldap_authz_id: { kind: 'string', default: '', aliases: ['ldap_sasl_authz_id'], sasl: true },
  ldap_mech: { kind: 'string', default: '', aliases: ['ldap_sasl_mech'], sasl: true },
  ldap_realm: { kind: 'string', default: '', aliases: ['ldap_sasl_realm'], sasl: true },
  ldap_sasl_secprops: { kind: 'string', default: '', sasl: true },
  ldap_start_tls: { kind: 'bool', default: 'no' },
  ldap_tls_check_peer: { kind: 'bool', default: '(unset: verify)' },
  ldap_tls_cacert_file: { kind: 'string', default: '' },
  ldap_tls_cacert_dir: { kind: 'string', default: '' },
  ldap_tls_ciphers: { kind: 'string', default: '' },
  ldap_tls_cert: { kind: 'string', default: '' },
  ldap_tls_key: { kind: 'string', default: '' },
  ldap_debug: { kind: 'int', default: '0' },
};

const ALIASES: ReadonlyMap<string, string> = new Map(
  Object.entries(LDAP_KEYS).flatMap(([key, def]) => [[key, key] as const, ...(def.aliases ?? []).map((a) => [a, key] as const)]),
);

/** Cyrus 2.1.28 truncates these two to LAK_BUF_LEN - 1 bytes. */
const CYRUS_GROUP_BUF = 127;

export interface LdapConfigResult {
  /** Undefined when there is at least one error. */
  config: LdapConfig | undefined;
  issues: ConfIssue[];
  /** Every known key with the value in effect (passwords masked), for --check. */
  effective: Record<string, string>;
}

interface SetValue {
  value: string;
  line: number;
  /** The key as written (may be an alias). */
  written: string;
}

/** Turns one file's entries into a typed config, collecting issues on the way. */
class Builder {
  readonly issues: ConfIssue[] = [];
  private readonly set = new Map<string, SetValue>();

  constructor(
    private readonly file: string,
    entries: ConfEntry[],
  ) {
    for (const e of entries) {
      const key = ALIASES.get(e.key);
      if (key === undefined) {
        const near = nearestKey(e.key);
        // A near miss is most likely a setting the admin believes is in force
        // (ldap_goup_dn: a group restriction); Cyrus ignores it silently.
        if (near !== undefined) {
          this.error(
            e.line,
            e.key,
            `unknown key (did you mean ${near}?); Cyrus ignores it silently, so the setting it was meant to make is not in force; correct the name or remove the line`,
          );
        } else {
          this.warn(e.line, e.key, 'unknown key; ignored');
        }
        continue;
      }
      const prev = this.set.get(key);
      if (prev !== undefined) {
        this.warn(
          e.line,
          e.key,
          `also set on line ${prev.line}${prev.written !== e.key ? ` as ${prev.written}` : ''}; the last one wins, as in Cyrus`,
        );
      }
      if (/\s$/.test(e.value)) {
        const kind = LDAP_KEYS[key]?.kind;
        const kept = kind === 'string' ? 'it is kept, as Cyrus keeps it' : 'it is ignored';
        this.warn(e.line, e.key, `value ends in whitespace; ${kept}`);
      }
      this.set.set(key, { value: e.value, line: e.line, written: e.key });
    }
  }

  warn(line: number | undefined, key: string | undefined, message: string): void {
    this.issues.push({ severity: 'warning', file: this.file, line, key, message });
  }

  error(line: number | undefined, key: string | undefined, message: string): void {
    this.issues.push({ severity: 'error', file: this.file, line, key, message });
  }

  has(key: string): boolean {
    return this.set.has(key);
  }

  where(key: string): { line: number | undefined; key: string } {
    const s = this.set.get(key);
    return { line: s?.line, key: s?.written ?? key };
  }

  str(key: string): string {
    return this.set.get(key)?.value ?? LDAP_KEYS[key]?.default ?? '';
  }

  bool(key: string): boolean {
    return this.optBool(key) ?? parseBoolLoose(LDAP_KEYS[key]?.default ?? 'no');
  }

  /**
   * Cyrus's lak_config_switch, but loud about values it would silently read
   * as "no": a warning, or an error where "no" switches a protection off.
   */
  optBool(key: string): boolean | undefined {
    const s = this.set.get(key);
    if (s === undefined) return undefined;
    const v = s.value.trim().toLowerCase();
    if (BOOL_TRUE.includes(v)) return true;
    if (BOOL_FALSE.includes(v)) return false;
    const b = parseBoolLoose(v);
    if (failsClosed(key)) {
      this.error(
        s.line,
        s.written,
        `'${shown(s.value)}' is not a yes/no value (accepted: ${[...BOOL_TRUE, ...BOOL_FALSE].join(', ')}); ` +
          `Cyrus would read it as ${b ? 'yes' : 'no'}, but a security setting must say what it means; write one of them`,
      );
      return b;
    }
    this.warn(
      s.line,
      s.written,
      `'${shown(s.value)}' is not yes/no/true/false/on/off/1/0; read as ${b ? 'yes' : 'no'}, as Cyrus does`,
    );
    return b;
  }

  int(key: string, min: number): number {
    const def = Number(LDAP_KEYS[key]?.default ?? '0');
    const s = this.set.get(key);
    if (s === undefined) return def;
    const v = s.value.trim();
    const m = /^-?\d+/.exec(v);
    if (m === null) {
      this.warn(s.line, s.written, `'${shown(s.value)}' is not a number; using the default ${def} (Cyrus would use 0)`);
      return def;
    }
    const n = Number(m[0]);
    if (n < min) {
      this.warn(s.line, s.written, `${n} is below the minimum ${min}; using the default ${def}`);
      return def;
    }
    if (m[0].length !== v.length)
      this.warn(s.line, s.written, `'${shown(s.value)}' has text after the number; read as ${n}, as Cyrus does`);
    return n;
  }

  choice<T extends string>(key: string): T {
    const def = LDAP_KEYS[key];
    const s = this.set.get(key);
    const fallback = (def?.default ?? '') as T;
    if (s === undefined || def?.choices === undefined) return fallback;
    const v = s.value.trim().toLowerCase();
    if (def.choices.includes(v)) return v as T;
    if (failsClosed(key)) {
      this.error(
        s.line,
        s.written,
        `'${shown(s.value)}' is not one of ${def.choices.join(', ')}; Cyrus 2.1.28 would silently use the default ${fallback}, ` +
          'which changes who passes the group check; write one of them',
      );
      return fallback;
    }
    this.warn(
      s.line,
      s.written,
      `'${shown(s.value)}' is not one of ${def.choices.join(', ')}; using the default ${fallback}, as Cyrus 2.1.28 does`,
    );
    return fallback;
  }

  effective(): Record<string, string> {
    const out: Record<string, string> = {};
    for (const [key, def] of Object.entries(LDAP_KEYS)) {
      const s = this.set.get(key);
      if (def.secret) out[key] = s !== undefined ? '(set)' : '(not set)';
      else out[key] = maskCredentials(s?.value ?? def.default);
    }
    return out;
  }
}

const BOOL_TRUE: readonly string[] = ['yes', 'true', 'on', '1', 'y', 't'];
const BOOL_FALSE: readonly string[] = ['no', 'false', 'off', '0', 'n', 'f'];

/**
 * Keys whose unreadable value is an error rather than Cyrus's silent guess:
 * the guess can turn off certificate checks, StartTLS or a group restriction.
 */
function failsClosed(key: string): boolean {
  return key.startsWith('ldap_tls_') || key === 'ldap_start_tls' || key.startsWith('ldap_group_');
}

/** lak_config_switch: the first character decides; "on" is true, everything unknown false. */
function parseBoolLoose(v: string): boolean {
  const c = v.charAt(0).toLowerCase();
  return c === '1' || c === 'y' || c === 't' || v.toLowerCase().startsWith('on');
}

/** A value quoted in a message, shortened. */
function shown(v: string): string {
  const t = v.trim();
  return t.length > 40 ? `${t.slice(0, 37)}...` : t;
}

/** An unknown key this close to a known one is taken for a misspelling of it. */
const TYPO_DISTANCE = 2;

function nearestKey(key: string): string | undefined {
  let best: string | undefined;
  let bestD = TYPO_DISTANCE + 1;
  for (const k of ALIASES.keys()) {
    const d = editDistance(key, k);
    if (d < bestD) {
      best = k;
      bestD = d;
    }
  }
  return best;
}

function editDistance(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const cur = [i];
    for (let j = 1; j <= b.length; j++) {
      cur[j] = Math.min((prev[j] ?? 0) + 1, (cur[j - 1] ?? 0) + 1, (prev[j - 1] ?? 0) + (a[i - 1] === b[j - 1] ? 0 : 1));
    }
    prev = cur;
  }
  return prev[b.length] ?? 0;
}

/** Parse one ldap_servers entry; a string is the problem with it. */
export function parseServerUri(uri: string): LdapServer | string {
  const m = /^(ldaps?|ldapi):\/\/([^/?#]*)(?:[/?#].*)?$/i.exec(uri);
  if (m === null) return `'${uri}' is not an LDAP URI (ldap://host[:port]/, ldaps://... or ldapi://...)`;
  const scheme = (m[1] ?? '').toLowerCase() as LdapServer['scheme'];
  const hostPort = m[2] ?? '';
  if (scheme === 'ldapi') {
    const socketPath = hostPort.length > 0 ? decodeURIComponent(hostPort) : DEFAULT_LDAPI_PATH;
    if (!socketPath.startsWith('/')) return `'${uri}': the ldapi socket must be an absolute path, %2F-encoded`;
    return { uri, scheme, host: 'localhost', port: 0, socketPath };
  }
  const hp = /^(\[[0-9A-Fa-f:.]+\]|[^:[\]]*)(?::(\d*))?$/.exec(hostPort);
  if (hp === null) return `'${uri}': cannot read host and port`;
  const host = (hp[1] ?? '').replace(/^\[|\]$/g, '') || 'localhost';
  const portText = hp[2] ?? '';
  const port = portText === '' ? (scheme === 'ldaps' ? 636 : 389) : Number(portText);
  if (!Number.isInteger(port) || port < 1 || port > 65535) return `'${uri}': port ${portText} is out of range`;
  return { uri, scheme, host, port };
}

/** The CERTIFICATE blocks of a PEM text. */
function pemCertificates(text: string): string[] {
  return text.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? [];
}

/** Builds the TLS context once: CA file or directory, client cert and key, ciphers. */
function buildTls(b: Builder, tlsUsed: boolean): TlsSettings {
  const startTls = b.bool('ldap_start_tls');
  const checkPeer = b.optBool('ldap_tls_check_peer');
  if (checkPeer === false && BOOL_FALSE.includes(b.str('ldap_tls_check_peer').trim().toLowerCase())) {
    // Cyrus's meaning is kept (measured: it accepts an untrusted certificate),
    // but an admin must be reminded at every start and reload.
    const w = b.where('ldap_tls_check_peer');
    b.warn(
      w.line,
      w.key,
      "no: the directory's TLS certificate is not verified, so anyone on the network path can pose as the directory, " +
        'read the passwords and answer OK; set ldap_tls_cacert_file to the CA that signed it and remove this line',
    );
  }
  // Problems with TLS files only break connections that use TLS.
  const problem = (key: string, message: string): void => {
    const w = b.where(key);
    if (tlsUsed) b.error(w.line, w.key, message);
    else b.warn(w.line, w.key, `${message} (no server uses TLS, so this does not matter yet)`);
  };
  const readFile = (key: string): string | undefined => {
    const file = b.str(key);
    if (file === '') return undefined;
    try {
      return fs.readFileSync(file, 'utf8');
    } catch (err) {
      problem(key, `cannot read ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
      return undefined;
    }
  };

  let ca: string[] | undefined;
  const caFile = readFile('ldap_tls_cacert_file');
  if (caFile !== undefined) {
    ca = pemCertificates(caFile);
    if (ca.length === 0) problem('ldap_tls_cacert_file', `${b.str('ldap_tls_cacert_file')} holds no PEM certificate`);
  }
  const caDir = b.str('ldap_tls_cacert_dir');
  if (caDir !== '') {
    try {
      const fromDir: string[] = [];
      for (const name of fs.readdirSync(caDir).sort()) {
        const full = path.join(caDir, name);
        try {
          if (fs.statSync(full).isFile()) fromDir.push(...pemCertificates(fs.readFileSync(full, 'utf8')));
        } catch {
          // dangling hash links and unreadable files: OpenSSL skips them too
        }
      }
      if (fromDir.length === 0) problem('ldap_tls_cacert_dir', `${caDir} holds no PEM certificate`);
      ca = [...new Set([...(ca ?? []), ...fromDir])];
    } catch (err) {
      problem('ldap_tls_cacert_dir', `cannot read ${caDir}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
    }
  }
  if (ca === undefined) {
    // Nothing configured: libldap on Debian trusts the system bundle.
    ca = [...tls.rootCertificates];
    try {
      ca.push(...pemCertificates(fs.readFileSync(SYSTEM_CA_BUNDLE, 'utf8')));
    } catch {
      // no system bundle: Node's own roots only
    }
  }

  const cert = readFile('ldap_tls_cert');
  const key = readFile('ldap_tls_key');
  if (b.has('ldap_tls_cert') !== b.has('ldap_tls_key')) {
    const missing = b.has('ldap_tls_cert') ? 'ldap_tls_key' : 'ldap_tls_cert';
    const w = b.where(b.has('ldap_tls_cert') ? 'ldap_tls_cert' : 'ldap_tls_key');
    b.warn(w.line, w.key, `set without ${missing}; no client certificate is sent`);
  }

  let ciphers: string | undefined = b.str('ldap_tls_ciphers').trim() || undefined;
  if (ciphers !== undefined) {
    try {
      tls.createSecureContext({ ciphers });
    } catch {
      const w = b.where('ldap_tls_ciphers');
      b.warn(
        w.line,
        w.key,
        `'${shown(ciphers)}' is not an OpenSSL cipher list (Debian's libldap takes GnuTLS priority strings); ignored, Node's default ciphers apply`,
      );
      ciphers = undefined;
    }
  }

  let secureContext: tls.SecureContext | undefined;
  try {
    secureContext = tls.createSecureContext({
      ca,
      ...(cert !== undefined && key !== undefined ? { cert, key } : {}),
      ...(ciphers !== undefined ? { ciphers } : {}),
    });
  } catch (err) {
    const k = cert !== undefined ? 'ldap_tls_cert' : 'ldap_tls_cacert_file';
    problem(k, `TLS setup failed: ${(err as Error).message}`);
  }
  return { startTls, checkPeer, secureContext };
}

const SAMPLE = { login: 'user@example.org', service: 'imap', realm: 'example.org', userDn: 'uid=user,dc=example,dc=org' };

function checkFilter(b: Builder, key: string): void {
  const template = b.str(key);
  if (template === '') return;
  try {
    FilterParser.parseString(expandTokens(template, SAMPLE, 'filter'));
  } catch (err) {
    const w = b.where(key);
    b.warn(w.line, w.key, `not a valid LDAP filter (${(err as Error).message}); every authentication will fail`);
  }
}

/** Build the typed configuration from parsed entries. */
export function buildLdapConfig(file: string, entries: ConfEntry[], parseIssues: ConfIssue[] = []): LdapConfigResult {
  const b = new Builder(file, entries);
  b.issues.unshift(...parseIssues);

  // Servers: a bad entry is skipped loudly; none left is fatal.
  const servers: LdapServer[] = [];
  for (const uri of b
    .str('ldap_servers')
    .split(/\s+/)
    .filter((u) => u.length > 0)) {
    const s = parseServerUri(uri);
    const w = b.where('ldap_servers');
    if (typeof s === 'string') b.warn(w.line, w.key, `${s}; ignored`);
    else servers.push(s);
  }
  if (servers.length === 0) {
    const w = b.where('ldap_servers');
    b.error(w.line, w.key, 'no usable LDAP URI; set ldap_servers: ldap://host/ (several may be listed, separated by spaces)');
  }

  if (isSaslMechanismName(b.str('ldap_bind_dn'))) {
    const w = b.where('ldap_bind_dn');
    b.error(
      w.line,
      w.key,
      `'${shown(b.str('ldap_bind_dn'))}' is a SASL mechanism name, not a DN: the LDAP library would make a SASL bind of it; ` +
        "write the service account's DN, or leave ldap_bind_dn out to search anonymously",
    );
  }

  const version = b.int('ldap_version', 2);
  if (version !== 3) {
    const w = b.where('ldap_version');
    b.warn(w.line, w.key, `LDAPv${version} is not supported; LDAPv3 is used`);
  }

  if (b.bool('ldap_use_sasl')) {
    const w = b.where('ldap_use_sasl');
    b.error(
      w.line,
      w.key,
      'SASL binds are not supported by saslauthd-ts; set ldap_use_sasl: no and use simple binds (ldap_auth_method: bind, custom or fastbind)',
    );
  } else {
    for (const [key, def] of Object.entries(LDAP_KEYS)) {
      if (def.sasl && b.has(key)) {
        const w = b.where(key);
        b.warn(w.line, w.key, 'has no effect without ldap_use_sasl; ignored, as Cyrus does');
      }
    }
  }

  const authMethod = b.choice<AuthMethod>('ldap_auth_method');
  const filter = b.str('ldap_filter');
  if (authMethod === 'fastbind') {
    if (templateLiteral(filter).trim() === '') {
      // The login would be the whole bind DN: never a valid DN (tokens are
      // DN-escaped), but "EXTERNAL" would be a SASL bind in ldapts.
      const w = b.where('ldap_filter');
      b.error(
        w.line,
        w.key,
        `with ldap_auth_method: fastbind this is the bind DN template, but '${shown(filter)}' is made of tokens only: the login would be the whole DN; ` +
          'write a DN such as uid=%U,ou=people,dc=example,dc=org',
      );
    } else if (filter.trimStart().startsWith('(') || !filter.includes('=')) {
      const w = b.where('ldap_filter');
      b.warn(
        w.line,
        w.key,
        `with ldap_auth_method: fastbind this is the bind DN template (e.g. uid=%U,ou=people,dc=example,dc=org), but '${shown(filter)}' is not a DN`,
      );
    }
  } else {
    checkFilter(b, 'ldap_filter');
  }

  const groupMatchMethod = b.choice<GroupMatchMethod>('ldap_group_match_method');
  const groupDn = b.str('ldap_group_dn');
  const groupFilter = b.str('ldap_group_filter');
  for (const key of ['ldap_group_filter', 'ldap_group_search_base']) {
    if (Buffer.byteLength(b.str(key)) > CYRUS_GROUP_BUF) {
      const w = b.where(key);
      b.warn(w.line, w.key, `longer than ${CYRUS_GROUP_BUF} bytes: Cyrus truncates it there, saslauthd-ts uses all of it`);
    }
  }
  if (groupMatchMethod === 'attr' && groupDn === '' && groupFilter !== '') {
    const w = b.where('ldap_group_filter');
    b.warn(
      w.line,
      w.key,
      'set, but ldap_group_match_method is attr and ldap_group_dn is empty: every user fails the group check, as in Cyrus; add ldap_group_match_method: filter',
    );
  }
  if (groupMatchMethod === 'filter') {
    if (groupFilter === '') {
      const w = b.where('ldap_group_match_method');
      b.warn(w.line, w.key, 'filter needs ldap_group_filter; without it every user fails the group check');
    } else checkFilter(b, 'ldap_group_filter');
  }

  const timeout = b.int('ldap_timeout', 1);
  const timeLimit = b.int('ldap_time_limit', 0);
  const sizeLimit = b.int('ldap_size_limit', 0);
  const debug = b.int('ldap_debug', 0);
  if (debug !== 0) {
    const w = b.where('ldap_debug');
    b.warn(w.line, w.key, 'libldap debug output does not exist here; use -V for debug logs');
  }
  b.bool('ldap_restart'); // accepted: Node restarts interrupted system calls itself

  const tlsUsed = servers.some((s) => s.scheme === 'ldaps') || b.bool('ldap_start_tls');
  if (b.bool('ldap_start_tls') && servers.some((s) => s.scheme === 'ldaps')) {
    const w = b.where('ldap_start_tls');
    b.warn(w.line, w.key, 'StartTLS is skipped on ldaps:// servers, which are already encrypted');
  }
  if (b.bool('ldap_start_tls') && servers.some((s) => s.scheme === 'ldapi')) {
    const w = b.where('ldap_start_tls');
    b.warn(w.line, w.key, 'StartTLS is skipped on ldapi:// servers');
  }
  const tlsSettings = buildTls(b, tlsUsed);

  const searchBase = b.str('ldap_search_base');
  const config: LdapConfig = {
    file,
    servers,
    bindDn: b.str('ldap_bind_dn'),
    bindPassword: b.str('ldap_password'),
    searchBase,
    filter,
    passwordAttr: b.str('ldap_password_attr'),
    authMethod,
    scope: b.choice<Scope>('ldap_scope'),
    groupDn,
    groupAttr: b.str('ldap_group_attr'),
    groupMatchMethod,
    groupFilter,
    // Cyrus: the group search base defaults to the user search base once a group filter is set.
    groupSearchBase: b.has('ldap_group_search_base') ? b.str('ldap_group_search_base') : searchBase,
    groupScope: b.choice<Scope>('ldap_group_scope'),
    defaultRealm: b.str('ldap_default_realm'),
    timeoutMs: timeout * 1000,
    timeLimit,
    sizeLimit,
    deref: b.choice<Deref>('ldap_deref'),
    referrals: b.bool('ldap_referrals'),
    tls: tlsSettings,
  };
  const hasError = b.issues.some((i) => i.severity === 'error');
  // In file order, as an admin reads them (sort is stable).
  const issues = [...b.issues].sort((x, y) => (x.line ?? 0) - (y.line ?? 0));
  return { config: hasError ? undefined : config, issues, effective: b.effective() };
}

/** Read and build; an unreadable file throws ConfReadError. */
export function loadLdapConfig(file: string): LdapConfigResult {
  const parsed = readConfFile(file);
  return buildLdapConfig(file, parsed.entries, parsed.issues);
}

/** Build from text (tests, and callers that already hold the file). */
export function ldapConfigFromText(text: string, file: string): LdapConfigResult {
  const parsed = parseConfText(text, file);
  return buildLdapConfig(file, parsed.entries, parsed.issues);
}

export interface LdapConfigCheck {
  /** Formatted `file:line: key: message` lines. */
  errors: string[];
  warnings: string[];
  effective: Record<string, string>;
}

/**
 * Validate a config file for `saslauthd-ts --check`. Never throws: an
 * unreadable file is an error. In strict mode every warning is an error.
 */
export function checkLdapConfig(file: string = DEFAULT_CONF_FILE, opts: { strict?: boolean } = {}): LdapConfigCheck {
  let result: LdapConfigResult;
  try {
    result = loadLdapConfig(file);
  } catch (err) {
    if (err instanceof ConfReadError) return { errors: [err.message], warnings: [], effective: {} };
    throw err;
  }
  const errors: string[] = [];
  const warnings: string[] = [];
  for (const issue of result.issues) {
    if (issue.severity === 'error' || opts.strict === true) errors.push(formatIssue(issue));
    else warnings.push(formatIssue(issue));
  }
  return { errors, warnings, effective: result.effective };
}
