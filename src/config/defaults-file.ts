// /etc/default/saslauthd-ts: the Cyrus /etc/default/saslauthd variables
// (MECHANISMS, MECH_OPTIONS, THREADS, OPTIONS) turned into flags the way
// Debian's init script does (`-a $MECHANISMS [-O $MECH_OPTIONS] $OPTIONS
// [-n $THREADS]`), so an admin can copy old values across. The file is a
// shell fragment; we read the plain assignments a defaults file holds and
// refuse anything that would need a shell to evaluate, naming file and line.
import fs from 'node:fs';
import { parseArgs, type ParseResult } from './options';
import { type ConfIssue, formatIssue } from './saslauthd-conf';

export const DEFAULTS_FILE = '/etc/default/saslauthd-ts';
export const DEFAULTS_FILE_FLAG = '--defaults-file';

/** Variables that become flags. */
export const FLAG_KEYS = ['MECHANISMS', 'MECH_OPTIONS', 'THREADS', 'OPTIONS'] as const;
/** Variables of Cyrus's file that mean nothing under systemd: read, then ignored. */
export const IGNORED_KEYS = ['DESC', 'NAME', 'START'] as const;

export interface DefaultsVar {
  key: string;
  value: string;
  /** 1-based line of the (last) assignment. */
  line: number;
}

export interface DefaultsFile {
  file: string;
  vars: Map<string, DefaultsVar>;
  issues: ConfIssue[];
}

/** Where a flag came from, so errors can name the place. */
export interface ArgOrigin {
  file: string;
  line: number;
  key: string;
}

export interface DefaultsArgs {
  /** `-a pam -O x ... -n 5`, in Cyrus's order. */
  args: string[];
  origins: Map<string, ArgOrigin>;
  issues: ConfIssue[];
}

const ASSIGNMENT = /^(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)=/;

/**
 * Read one shell word starting at `start` (quotes, backslashes), up to an
 * unquoted blank or `#`. Returns the value and where it stopped, or an error.
 */
function readWord(text: string, start: number): { value: string; end: number } | { error: string } {
  let out = '';
  let i = start;
  while (i < text.length) {
    const c = text[i] ?? '';
    if (c === ' ' || c === '\t') break;
    if (c === '#' && i === start) break;
    if (c === '$' || c === '`') return { error: 'shell expansion ($, `) is not supported here; write the value out' };
    if (c === ';' || c === '&' || c === '|' || c === '<' || c === '>' || c === '(' || c === ')') {
      return { error: `'${c}' is shell syntax, not a value; only VAR=value lines are read` };
    }
    if (c === '\\') {
      if (i + 1 >= text.length) return { error: 'a trailing backslash (line continuation) is not supported' };
      out += text[i + 1];
      i += 2;
      continue;
    }
    if (c === "'") {
      const close = text.indexOf("'", i + 1);
      if (close < 0) return { error: 'unterminated single quote' };
      out += text.slice(i + 1, close);
      i = close + 1;
      continue;
    }
    if (c === '"') {
      i++;
      for (;;) {
        if (i >= text.length) return { error: 'unterminated double quote' };
        const d = text[i] ?? '';
        if (d === '"') {
          i++;
          break;
        }
        if (d === '$' || d === '`') {
          return { error: 'shell expansion ($, `) is not supported here; write the value out' };
        }
        if (d === '\\' && i + 1 < text.length && '"\\$`'.includes(text[i + 1] ?? '')) {
          out += text[i + 1];
          i += 2;
          continue;
        }
        out += d;
        i++;
      }
      continue;
    }
    out += c;
    i++;
  }
  return { value: out, end: i };
}

/** Parse the text of a defaults file. Never throws; problems become issues. */
export function parseDefaultsText(text: string, file: string): DefaultsFile {
  const vars = new Map<string, DefaultsVar>();
  const issues: ConfIssue[] = [];
  const lines = text.split('\n');
  if (lines.length > 0 && lines[lines.length - 1] === '') lines.pop();
  lines.forEach((raw, i) => {
    const line = i + 1;
    const body = raw.replace(/^[ \t]+/, '').replace(/\r$/, '');
    if (body === '' || body.startsWith('#')) return;
    const m = ASSIGNMENT.exec(body);
    if (!m) {
      const first = body.split(/[ \t=]/)[0] ?? body;
      issues.push({
        severity: 'error',
        file,
        line,
        key: first.slice(0, 30),
        message: 'not a VAR=value assignment (this file is read, not run by a shell)',
      });
      return;
    }
    const key = m[1] ?? '';
    const word = readWord(body, m[0].length);
    if ('error' in word) {
      issues.push({ severity: 'error', file, line, key, message: word.error });
      return;
    }
    const rest = body.slice(word.end).trim();
    if (rest !== '' && !rest.startsWith('#')) {
      issues.push({
        severity: 'error',
        file,
        line,
        key,
        message: `unexpected '${rest.slice(0, 20)}' after the value; quote values that contain blanks`,
      });
      return;
    }
    if (!(FLAG_KEYS as readonly string[]).includes(key) && !(IGNORED_KEYS as readonly string[]).includes(key)) {
      issues.push({
        severity: 'error',
        file,
        line,
        key,
        message: `unknown variable; known are ${[...FLAG_KEYS, ...IGNORED_KEYS].join(', ')}`,
      });
      return;
    }
    vars.set(key, { key, value: word.value, line });
  });
  return { file, vars, issues };
}

/** Read a defaults file; a missing or unreadable file is an error issue. */
export function readDefaultsFile(file: string): DefaultsFile {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    const why = e.code === 'ENOENT' ? 'no such file' : e.code === 'EACCES' ? 'permission denied' : e.message;
    return {
      file,
      vars: new Map(),
      issues: [{ severity: 'error', file, message: `cannot read the defaults file: ${why}${e.code ? ` (${e.code})` : ''}` }],
    };
  }
  return parseDefaultsText(text, file);
}

/** Flags that make no sense inside OPTIONS, with the reason. */
const NOT_IN_OPTIONS: Record<string, string> = {
  '-a': 'set the mechanism with MECHANISMS, not -a in OPTIONS (Cyrus refuses a second -a too)',
  '-h': 'would print the help and exit instead of starting',
  '--help': 'would print the help and exit instead of starting',
  '-v': 'would print the version and exit instead of starting',
  '--check': 'belongs on the command line, not in the defaults file',
  [DEFAULTS_FILE_FLAG]: 'a defaults file cannot name another one',
};

/** Whether these flags give --routes (which names the mechanisms itself). */
function namesRoutes(words: readonly string[]): boolean {
  return words.some((w) => w === '--routes' || w.startsWith('--routes='));
}

/**
 * Parse a fragment of flags on its own (behind a placeholder mechanism), to
 * attribute an error to the one variable it came from.
 */
function checkFragment(args: string[]): string | undefined {
  // With --routes the fragment needs no mechanism (and may have none).
  const r = parseArgs(namesRoutes(args) ? args : ['-a', 'placeholder', ...args]);
  if (r.kind === 'run') return undefined;
  return (r.stderr ?? r.stdout ?? 'invalid flags').trim().replace(/^saslauthd-ts: /, '');
}

/** Turn the variables into flags, Cyrus's order: -a, -O, OPTIONS, -n. */
export function defaultsToArgs(df: DefaultsFile): DefaultsArgs {
  const args: string[] = [];
  const origins = new Map<string, ArgOrigin>();
  const issues: ConfIssue[] = [];
  const at = (v: DefaultsVar): ArgOrigin => ({ file: df.file, line: v.line, key: v.key });
  const err = (v: DefaultsVar, message: string): void => {
    issues.push({ severity: 'error', file: df.file, line: v.line, key: v.key, message });
  };

  const mech = df.vars.get('MECHANISMS');
  const unreadable = df.issues.some((i) => i.line === undefined && i.severity === 'error');
  // OPTIONS="--routes FILE" names the mechanisms itself: MECHANISMS stays empty.
  const routed = namesRoutes((df.vars.get('OPTIONS')?.value ?? '').split(/[ \t]+/));
  if (unreadable) {
    // Already reported: the file could not be read at all.
  } else if ((mech === undefined || mech.value.trim() === '') && routed) {
    // --routes in OPTIONS.
  } else if (mech === undefined || mech.value.trim() === '') {
    const where = mech ?? { key: 'MECHANISMS', value: '', line: 0 };
    issues.push({
      severity: 'error',
      file: df.file,
      ...(where.line > 0 ? { line: where.line } : {}),
      key: 'MECHANISMS',
      message: 'no mechanism set; add e.g. MECHANISMS="pam"',
    });
  } else if (/\s/.test(mech.value.trim())) {
    err(
      mech,
      `'${mech.value}': only one mechanism may be used at a time; for a chain write them with commas (MECHANISMS="shadow,ldap"), or route realms with OPTIONS="--routes FILE" and MECHANISMS=""`,
    );
  } else {
    args.push('-a', mech.value.trim());
    origins.set('-a', at(mech));
  }

  const mo = df.vars.get('MECH_OPTIONS');
  if (mo !== undefined && mo.value !== '') {
    // Cyrus passes it unquoted (so it cannot hold blanks); one argument here.
    args.push('-O', mo.value);
    origins.set('-O', at(mo));
  }

  const opts = df.vars.get('OPTIONS');
  if (opts !== undefined) {
    // Unquoted $OPTIONS in the init script: split on blanks, no quote removal.
    const words = opts.value.split(/[ \t]+/).filter((w) => w !== '');
    const bad = words.find((w) => NOT_IN_OPTIONS[w.split('=')[0] ?? w] !== undefined);
    if (bad !== undefined) {
      err(opts, `${bad}: ${NOT_IN_OPTIONS[bad.split('=')[0] ?? bad] ?? ''}`);
    } else {
      const problem = checkFragment(words);
      if (problem !== undefined) err(opts, `'${opts.value}': ${problem}`);
      else {
        for (const w of words) if (w.startsWith('-')) origins.set(w, at(opts));
        args.push(...words);
      }
    }
  }

  const threads = df.vars.get('THREADS');
  if (threads !== undefined && threads.value !== '') {
    if (!/^\d+$/.test(threads.value)) err(threads, `'${threads.value}' is not a whole number (e.g. THREADS=5)`);
    else {
      args.push('-n', threads.value);
      origins.set('-n', at(threads));
    }
  }

  return { args, origins, issues };
}

/** The path given with --defaults-file, if any (last one wins). */
export function findDefaultsFileArg(argv: readonly string[]): string | undefined {
  let found: string | undefined;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i] ?? '';
    if (a === '--') break;
    if (a === DEFAULTS_FILE_FLAG) found = argv[++i];
    else if (a.startsWith(`${DEFAULTS_FILE_FLAG}=`)) found = a.slice(DEFAULTS_FILE_FLAG.length + 1);
  }
  return found;
}

/**
 * The daemon's option parsing with --defaults-file: the file's flags first,
 * then the command line's (which win). Any error in the file stops startup
 * with the file, line and variable named.
 */
export function parseArgsWithDefaults(argv: string[]): ParseResult {
  const file = findDefaultsFileArg(argv);
  if (file === undefined) return parseArgs(argv);
  const df = readDefaultsFile(file);
  const converted = defaultsToArgs(df);
  const errors = [...df.issues, ...converted.issues].filter((i) => i.severity === 'error');
  if (errors.length > 0) {
    return {
      kind: 'exit',
      code: 1,
      stderr: errors.map((i) => `saslauthd-ts: ${formatIssue(i)}\n`).join(''),
    };
  }
  return parseArgs([...converted.args, ...argv]);
}
