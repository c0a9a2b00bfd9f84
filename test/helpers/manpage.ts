// Option names out of commander's -h text and out of a man page's roff
// OPTIONS section, to check that the two list the same flags.

/** The flags column of commander's help ("  -a <mech>   text", "  -h, --help  ..."). */
export function helpOptions(help: string): string[] {
  const names = new Set<string>();
  for (const line of help.split('\n')) {
    const m = /^ {2}(-[^ ].*?)(?: {2,}|$)/.exec(line);
    if (!m) continue;
    for (const flag of (m[1] ?? '').split(/,\s*/)) names.add(flag.split(/[ =]/)[0] ?? flag);
  }
  return [...names].sort();
}

/** The tag line after each .TP in the OPTIONS section. */
export function manOptions(roff: string): string[] {
  const names = new Set<string>();
  const lines = roff.split('\n');
  const start = lines.findIndex((l) => /^\.SH OPTIONS/.test(l));
  const end = lines.findIndex((l, i) => i > start && /^\.SH /.test(l));
  for (let i = start; i >= 0 && i < end; i++) {
    if (lines[i] !== '.TP') continue;
    const tag = (lines[i + 1] ?? '').replace(/\\-/g, '-').replace(/\\f[BIRP]/g, '');
    for (const m of tag.matchAll(/(?:^|[\s"])(--?[A-Za-z][A-Za-z0-9-]*)/g)) names.add(m[1] ?? '');
  }
  return [...names].sort();
}

/** Each option's help text (wrapped lines joined), under each of its flags. */
export function helpEntries(help: string): Map<string, string> {
  const entries = new Map<string, string>();
  let current: string[] = [];
  for (const line of help.split('\n')) {
    const m = /^ {2}(-[^ ].*?)(?: {2,}(.*)|$)/.exec(line);
    if (m) {
      current = (m[1] ?? '').split(/,\s*/).map((f) => f.split(/[ =]/)[0] ?? f);
      for (const f of current) entries.set(f, (m[2] ?? '').trim());
    } else if (/^ {4,}\S/.test(line) && current.length > 0) {
      for (const f of current) entries.set(f, `${entries.get(f) ?? ''} ${line.trim()}`.trim());
    } else {
      current = [];
    }
  }
  return entries;
}

/** Words of a roff macro line, double quotes grouping. */
function roffArgs(rest: string): string[] {
  return [...rest.matchAll(/"([^"]*)"|(\S+)/g)].map((m) => m[1] ?? m[2] ?? '');
}

/** One line of roff as plain text: font macros resolved, escapes removed. */
function roffText(line: string): string {
  const text = ((): string => {
    const m = /^\.([A-Z]{1,2})(?:\s+(.*))?$/.exec(line);
    if (!m) return line;
    const args = roffArgs(m[2] ?? '');
    // .BR, .IR, .BI ... alternate fonts without a space; .B and .I join words.
    if (/^(BR|RB|IR|RI|BI|IB)$/.test(m[1] ?? '')) return args.join('');
    if (/^(B|I)$/.test(m[1] ?? '')) return args.join(' ');
    return '';
  })();
  return text
    .replace(/\\-/g, '-')
    .replace(/\\f[BIRP]/g, '')
    .replace(/\\&/g, '');
}

/** Each option's text in a man page's OPTIONS section, as plain text, under each of its flags. */
export function manEntries(roff: string): Map<string, string> {
  const entries = new Map<string, string>();
  const lines = roff.split('\n');
  const start = lines.findIndex((l) => /^\.SH OPTIONS/.test(l));
  const end = lines.findIndex((l, i) => i > start && /^\.SH /.test(l));
  for (let i = start; i >= 0 && i < end; i++) {
    if (lines[i] !== '.TP') continue;
    const flags = [...roffText(lines[i + 1] ?? '').matchAll(/(?:^|[\s",])(--?[A-Za-z][A-Za-z0-9-]*)/g)].map((m) => m[1] ?? '');
    const body: string[] = [];
    for (let j = i + 2; j < end && lines[j] !== '.TP'; j++) body.push(roffText(lines[j] ?? ''));
    const text = body.join(' ').replace(/\s+/g, ' ').trim();
    for (const f of flags) entries.set(f, text);
  }
  return entries;
}

/**
 * The default an option's text states: commander's "(default: 5)", a man
 * page's "(default 5)" or "Default: normal." Quotes go; an empty string is
 * "empty", as the man pages say it.
 */
export function statedDefault(text: string): string | undefined {
  // A word of its own: not the "default" of a path such as /etc/default.
  const m = /(?:^|[\s(,;])default:?\s+(""|"[^"]*"|[^\s;,)]+)/i.exec(text);
  if (!m) return undefined;
  const value = (m[1] ?? '').replace(/^"(.*)"$/, '$1').replace(/\.$/, '');
  return value === '' ? 'empty' : value;
}
