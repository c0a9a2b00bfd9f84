// Parses the rimap -O argument into a list of IMAP servers to try in order.
//
// Accepted per server (comma-separated list):
//   host | host/port | host:port | [v6]:port | [v6]/port | v6   Cyrus syntax, plain IMAP
//   imaps://host[:port][?query]                                 implicit TLS, default port 993
//   imap://host[:port][?query]                                  STARTTLS (required), default port 143
//   imap://host[:port]?plain                                    plain IMAP, explicitly
// query keys: starttls, plain, cafile=PATH, servername=NAME, timeout=SEC, connect_timeout=SEC
//
// Pure apart from reading /etc/services for port names. Names are not
// resolved here: that happens at every connection (Cyrus resolves once at
// startup, so DNS down at boot means no daemon; cyrus-sasl#493).
import fs from 'node:fs';
import net from 'node:net';
import { maskCredentials } from '../../log/redact';

export type TlsMode = 'implicit' | 'starttls' | 'none';

export interface RimapTarget {
  /** The element of -O as written, for messages. */
  spec: string;
  /** Name or IP literal, IPv6 without brackets. */
  host: string;
  port: number;
  tls: TlsMode;
  /** PEM CA bundle that replaces the system store for this server. */
  caFile?: string;
  /** Name to verify the certificate against (and send as SNI) instead of host. */
  servername?: string;
  connectTimeoutMs: number;
  /** Longest wait for any single server answer (greeting, STARTTLS, TLS handshake, LOGIN). */
  timeoutMs: number;
  /** Written in Cyrus's syntax (which can only mean plain IMAP). */
  cyrusSyntax: boolean;
}

export const DEFAULT_CONNECT_TIMEOUT_MS = 5_000;
export const DEFAULT_TIMEOUT_MS = 10_000;
export const PORT_IMAP = 143;
export const PORT_IMAPS = 993;

/** Thrown for a bad -O; the daemon reports "failed to initialize mechanism rimap: <message>". */
export class RimapOptionError extends Error {
  readonly code = 'RIMAP_BAD_OPTION';
}

const QUERY_KEYS = ['starttls', 'plain', 'cafile', 'servername', 'timeout', 'connect_timeout'] as const;
type QueryKey = (typeof QUERY_KEYS)[number];

const FALLBACK_SERVICES: Record<string, number> = { imap: PORT_IMAP, imap2: PORT_IMAP, imaps: PORT_IMAPS };

/** Port of a TCP service name from a services(5) file; undefined when absent. */
export function lookupServicePort(name: string, servicesFile = '/etc/services'): number | undefined {
  let text: string;
  try {
    text = fs.readFileSync(servicesFile, 'latin1');
  } catch {
    return FALLBACK_SERVICES[name.toLowerCase()];
  }
  for (const raw of text.split('\n')) {
    const line = raw.replace(/#.*/, '').trim();
    if (line === '') continue;
    const [svc, portProto, ...aliases] = line.split(/\s+/);
    const m = /^(\d+)\/tcp$/i.exec(portProto ?? '');
    if (m === null || svc === undefined) continue;
    if (svc === name || aliases.includes(name)) return Number(m[1]);
  }
  return undefined;
}

export interface ParseOptions {
  servicesFile?: string;
}

export function parseRimapOption(option: string | undefined, opts: ParseOptions = {}): RimapTarget[] {
  if (option === undefined || option.trim() === '') {
    throw new RimapOptionError(
      'no hostname specified: give the IMAP server with -O, e.g. -O imap.example.com, -O imaps://imap.example.com ' +
        'or -O imap://imap.example.com (STARTTLS)',
    );
  }
  const specs = option.split(',').map((s) => s.trim());
  if (specs.some((s) => s === '')) {
    throw new RimapOptionError(`-O '${maskCredentials(option)}': empty server in the comma-separated list`);
  }
  return specs.map((spec) => parseOne(spec, opts));
}

function parseOne(spec: string, opts: ParseOptions): RimapTarget {
  // Before any other check, so no message quotes a password (as a port, say).
  if ((spec.split('?')[0] ?? '').includes('@')) throw bad(spec, 'user names or passwords do not belong in -O');
  const url = /^([A-Za-z][A-Za-z0-9+.-]*):\/\/(.*)$/s.exec(spec);
  if (url === null) return parseCyrus(spec, opts);
  const scheme = url[1]!.toLowerCase();
  if (scheme !== 'imap' && scheme !== 'imaps') {
    throw bad(spec, `unknown scheme '${url[1]!}://'; use imaps:// or imap://`);
  }
  return parseUrl(spec, scheme, url[2]!);
}

function bad(spec: string, what: string): RimapOptionError {
  return new RimapOptionError(`-O '${maskCredentials(spec)}': ${what}`);
}

function parsePortNumber(spec: string, text: string): number {
  if (!/^\d{1,5}$/.test(text)) throw bad(spec, `port '${text}' is not a number`);
  const port = Number(text);
  if (port < 1 || port > 65535) throw bad(spec, `port ${port} is out of range (1-65535)`);
  return port;
}

function parsePortOrService(spec: string, text: string, opts: ParseOptions): number {
  if (/^\d+$/.test(text)) return parsePortNumber(spec, text);
  if (!/^[A-Za-z][A-Za-z0-9_.+-]*$/.test(text)) throw bad(spec, `'${text}' is neither a port number nor a service name`);
  const port = lookupServicePort(text, opts.servicesFile);
  if (port === undefined) {
    throw bad(spec, `unknown service name '${text}' (not in ${opts.servicesFile ?? '/etc/services'}); give a port number`);
  }
  return port;
}

const LABEL = '[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?';
const HOSTNAME = new RegExp(`^${LABEL}(?:\\.${LABEL})*\\.?$`);

function checkHost(spec: string, host: string, bracketed: boolean): string {
  if (bracketed) {
    if (!net.isIPv6(host)) throw bad(spec, `'[${host}]' is not an IPv6 address`);
    return host;
  }
  if (host === '') throw bad(spec, 'no host name');
  if (net.isIP(host) !== 0) return host;
  if (host.length > 253 || !HOSTNAME.test(host)) throw bad(spec, `'${host}' is not a valid host name or address`);
  return host;
}

/**
 * Cyrus's forms plus host:port. The rule for colons: brackets or a slash
 * separate an IPv6 address from its port; an unbracketed name with two or
 * more colons is an IPv6 address on the default port; exactly one colon is
 * host:port.
 */
function parseCyrus(spec: string, opts: ParseOptions): RimapTarget {
  let host: string;
  let portText: string | undefined;
  let bracketed = false;
  const br = /^\[([^\]]*)\](?:([:/])(.*))?$/s.exec(spec);
  if (spec.startsWith('[')) {
    if (br === null) throw bad(spec, "an IPv6 address in brackets must look like '[::1]', '[::1]:143' or '[::1]/143'");
    host = br[1]!;
    bracketed = true;
    if (br[2] !== undefined) {
      portText = br[3]!;
      if (portText === '') throw bad(spec, 'empty port');
    }
  } else if (spec.includes('/')) {
    const slash = spec.lastIndexOf('/');
    host = spec.slice(0, slash);
    portText = spec.slice(slash + 1);
    if (portText === '') throw bad(spec, 'empty port after /');
  } else {
    const colons = spec.split(':').length - 1;
    if (colons === 1) {
      const colon = spec.indexOf(':');
      host = spec.slice(0, colon);
      portText = spec.slice(colon + 1);
      if (portText === '') throw bad(spec, 'empty port after :');
    } else {
      host = spec;
    }
  }
  return {
    spec,
    host: checkHost(spec, host, bracketed),
    port: portText === undefined ? PORT_IMAP : parsePortOrService(spec, portText, opts),
    tls: 'none',
    connectTimeoutMs: DEFAULT_CONNECT_TIMEOUT_MS,
    timeoutMs: DEFAULT_TIMEOUT_MS,
    cyrusSyntax: true,
  };
}

function parseSeconds(spec: string, key: string, value: string): number {
  if (!/^\d+(\.\d+)?$/.test(value)) throw bad(spec, `${key}=${value}: give seconds, e.g. ${key}=5`);
  const ms = Math.round(Number(value) * 1000);
  if (ms < 1 || ms > 3_600_000) throw bad(spec, `${key}=${value}: must be between 0.001 and 3600 seconds`);
  return ms;
}

function parseUrl(spec: string, scheme: 'imap' | 'imaps', rest: string): RimapTarget {
  const q = rest.indexOf('?');
  let authority = q === -1 ? rest : rest.slice(0, q);
  const query = q === -1 ? '' : rest.slice(q + 1);
  if (authority.endsWith('/')) authority = authority.slice(0, -1);
  if (authority.includes('/')) throw bad(spec, 'an imap URL has no path; write imaps://host:port');
  if (authority.includes('#')) throw bad(spec, "'#' is not allowed");

  let host: string;
  let portText: string | undefined;
  let bracketed = false;
  if (authority.startsWith('[')) {
    const m = /^\[([^\]]*)\](?::(.*))?$/s.exec(authority);
    if (m === null) throw bad(spec, 'an IPv6 address must be written in brackets: imaps://[::1]:993');
    host = m[1]!;
    portText = m[2];
    bracketed = true;
  } else {
    const parts = authority.split(':');
    if (parts.length > 2) throw bad(spec, 'an IPv6 address must be written in brackets: imaps://[::1]:993');
    host = parts[0]!;
    portText = parts[1];
  }
  if (portText === '') throw bad(spec, 'empty port after :');

  const params = new Map<QueryKey, string>();
  if (query !== '') {
    for (const item of query.split('&')) {
      if (item === '') continue;
      const eq = item.indexOf('=');
      const rawKey = eq === -1 ? item : item.slice(0, eq);
      let value: string;
      try {
        value = eq === -1 ? '' : decodeURIComponent(item.slice(eq + 1));
      } catch {
        throw bad(spec, `bad percent-encoding in '${item}'`);
      }
      const key = rawKey.toLowerCase() as QueryKey;
      if (!QUERY_KEYS.includes(key)) {
        throw bad(spec, `unknown parameter '${rawKey}' (known: ${QUERY_KEYS.join(', ')})`);
      }
      if (params.has(key)) throw bad(spec, `parameter '${key}' given twice`);
      params.set(key, value);
    }
  }
  for (const flag of ['starttls', 'plain'] as const) {
    const v = params.get(flag);
    if (v !== undefined && v !== '') throw bad(spec, `'${flag}' takes no value; write ?${flag}`);
  }

  let tls: TlsMode;
  if (scheme === 'imaps') {
    if (params.has('starttls'))
      throw bad(spec, 'starttls does not apply to imaps:// (TLS from the start); use imap://host?starttls');
    if (params.has('plain')) throw bad(spec, 'plain contradicts imaps://; use imap://host?plain');
    tls = 'implicit';
  } else if (params.has('plain')) {
    if (params.has('starttls')) throw bad(spec, 'choose one of starttls and plain');
    tls = 'none';
  } else {
    tls = 'starttls';
  }
  if (tls === 'none') {
    for (const key of ['cafile', 'servername'] as const) {
      if (params.has(key)) throw bad(spec, `${key} needs TLS, but plain was asked for`);
    }
  }

  const target: RimapTarget = {
    spec,
    host: checkHost(spec, host, bracketed),
    port: portText === undefined ? (scheme === 'imaps' ? PORT_IMAPS : PORT_IMAP) : parsePortNumber(spec, portText),
    tls,
    connectTimeoutMs: DEFAULT_CONNECT_TIMEOUT_MS,
    timeoutMs: DEFAULT_TIMEOUT_MS,
    cyrusSyntax: false,
  };
  const caFile = params.get('cafile');
  if (caFile !== undefined) {
    if (!caFile.startsWith('/')) throw bad(spec, `cafile=${caFile}: give an absolute path`);
    target.caFile = caFile;
  }
  const servername = params.get('servername');
  if (servername !== undefined) target.servername = checkHost(spec, servername, false);
  const timeout = params.get('timeout');
  if (timeout !== undefined) target.timeoutMs = parseSeconds(spec, 'timeout', timeout);
  const connectTimeout = params.get('connect_timeout');
  if (connectTimeout !== undefined) target.connectTimeoutMs = parseSeconds(spec, 'connect_timeout', connectTimeout);
  return target;
}

/** Canonical form for logs: imaps://host:993, imap://host:143?starttls, imap://host:143?plain. */
export function describeTarget(t: RimapTarget): string {
  const host = net.isIPv6(t.host) ? `[${t.host}]` : t.host;
  switch (t.tls) {
    case 'implicit':
      return `imaps://${host}:${t.port}`;
    case 'starttls':
      return `imap://${host}:${t.port}?starttls`;
    case 'none':
      return `imap://${host}:${t.port}?plain`;
  }
}

export function isLoopback(host: string): boolean {
  if (host === 'localhost' || host.endsWith('.localhost')) return true;
  if (net.isIPv4(host)) return host.startsWith('127.');
  if (net.isIPv6(host)) return host === '::1' || /^::ffff:127\./i.test(host);
  return false;
}

/** Startup warnings an admin should see (clear-text passwords on the network). */
export function targetWarnings(t: RimapTarget): string[] {
  const out: string[] = [];
  if (t.tls === 'none' && !isLoopback(t.host)) {
    out.push(
      `-O '${t.spec}': passwords go to ${t.host} port ${t.port} in clear text; ` +
        `use imaps://${net.isIPv6(t.host) ? `[${t.host}]` : t.host} or imap://… (STARTTLS) to encrypt them`,
    );
  }
  if (t.tls === 'none' && t.port === PORT_IMAPS) {
    out.push(
      `-O '${t.spec}': port 993 is normally IMAPS (TLS from the start), but plain IMAP will be spoken; did you mean imaps://…?`,
    );
  }
  return out;
}
