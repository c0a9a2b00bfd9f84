// Reader for /etc/saslauthd.conf with Cyrus's line rules (lak.c
// lak_config_read, cfile.c): shared by the LDAP mechanism, `--check`, and
// any later mechanism that reads the same file. Pure apart from
// readConfFile; typing and validation of values belong to each mechanism.
import fs from 'node:fs';
import { maskCredentials } from '../log/redact';

export interface ConfEntry {
  /** Lower-cased key, as Cyrus compares it. */
  key: string;
  /** Value after the blanks that follow the colon; trailing whitespace kept, as Cyrus keeps it. */
  value: string;
  /** 1-based line number. */
  line: number;
}

export type IssueSeverity = 'error' | 'warning';

export interface ConfIssue {
  severity: IssueSeverity;
  file: string;
  line?: number;
  /** With line: the column (1-based), for files of short tokens (--routes). */
  column?: number;
  key?: string;
  message: string;
}

/** `/etc/saslauthd.conf:12: ldap_scop: unknown key` (line and key when known). */
export function formatIssue(issue: ConfIssue): string {
  const where =
    issue.line === undefined
      ? issue.file
      : issue.column !== undefined
        ? `${issue.file}:${issue.line}:${issue.column}`
        : `${issue.file}:${issue.line}`;
  // Messages quote values, and a value can be a URI with a password in it.
  const message = maskCredentials(issue.message);
  return issue.key !== undefined ? `${where}: ${issue.key}: ${message}` : `${where}: ${message}`;
}

export interface ConfParseResult {
  entries: ConfEntry[];
  /** Syntax problems: Cyrus rejects the whole file for any of them. */
  issues: ConfIssue[];
}

/** Cyrus reads lines with fgets into a 4096-byte buffer. */
export const CYRUS_LINE_MAX = 4095;

const KEY_CHAR = /[A-Za-z0-9_-]/;
// isspace() in the C locale.
const BLANK = /[ \t\n\v\f\r]/;

/**
 * Parse the text of a saslauthd.conf. Never throws: malformed lines become
 * error issues (where Cyrus fails the whole file) and are skipped.
 */
export function parseConfText(text: string, file: string): ConfParseResult {
  const entries: ConfEntry[] = [];
  const issues: ConfIssue[] = [];
  const lines = text.split('\n');
  // A final newline does not start another line.
  if (lines.length > 0 && lines[lines.length - 1] === '') lines.pop();
  lines.forEach((raw, i) => {
    const line = i + 1;
    let p = 0;
    while (p < raw.length && BLANK.test(raw[p] ?? '')) p++;
    if (p === raw.length || raw[p] === '#') return;
    if (Buffer.byteLength(raw, 'utf8') > CYRUS_LINE_MAX) {
      issues.push({
        severity: 'warning',
        file,
        line,
        message: `line is longer than ${CYRUS_LINE_MAX} bytes; Cyrus would split it, saslauthd-ts reads it whole`,
      });
    }
    const keyStart = p;
    while (p < raw.length && KEY_CHAR.test(raw[p] ?? '')) p++;
    const key = raw.slice(keyStart, p).toLowerCase();
    if (raw[p] !== ':') {
      const hint =
        BLANK.test(raw[p] ?? '') && raw.slice(p).trimStart().startsWith(':')
          ? 'the colon must follow the key immediately (no blank before it)'
          : 'expected "key: value"';
      // Name the key only when it looks like one: a stray line may be a password.
      const named = /^[a-z][a-z0-9]*[_-][a-z0-9_-]*$/.test(key) ? key : undefined;
      issues.push({ severity: 'error', file, line, key: named, message: `syntax error: ${hint}` });
      return;
    }
    p++;
    while (p < raw.length && BLANK.test(raw[p] ?? '')) p++;
    if (p === raw.length) {
      issues.push({ severity: 'error', file, line, key: key || undefined, message: 'empty value' });
      return;
    }
    if (key.length === 0) {
      issues.push({ severity: 'warning', file, line, message: 'line has no key before the colon; ignored' });
      return;
    }
    entries.push({ key, value: raw.slice(p), line });
  });
  return { entries, issues };
}

export class ConfReadError extends Error {
  readonly code = 'SASLAUTHD_CONF_UNREADABLE';
  constructor(
    readonly file: string,
    readonly errno: NodeJS.ErrnoException,
  ) {
    // "ENOENT: no such file or directory, open '/x'" -> "no such file or directory (ENOENT)"
    const text = errno.message.replace(/^[A-Z0-9]+: /, '').replace(/, \w+ '.*'$/, '');
    super(`${file}: cannot read the configuration file: ${text}${errno.code ? ` (${errno.code})` : ''}`);
  }
}

/** Read and parse a config file; an unreadable file throws ConfReadError. */
export function readConfFile(file: string): ConfParseResult {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (err) {
    throw new ConfReadError(file, err as NodeJS.ErrnoException);
  }
  return parseConfText(text, file);
}
