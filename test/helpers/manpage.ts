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
