// The man pages in debian/ and the README's flag table document exactly the
// options `-h` lists, with the same defaults: adding a flag without
// documenting it (or the reverse), or changing a default in one place only,
// fails here.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { helpEntries, helpOptions, manEntries, manOptions, statedDefault } from '../../helpers/manpage';

const ROOT = path.resolve(__dirname, '..', '..', '..', '..');

function help(bin: string): string {
  return execFileSync(process.execPath, [path.join(ROOT, 'bin', bin), '-h'], { encoding: 'utf8' });
}

describe('man pages', () => {
  for (const name of ['saslauthd-ts', 'testsaslauthd-ts']) {
    test(`${name}(8) lists the same options as ${name} -h`, () => {
      const roff = fs.readFileSync(path.join(ROOT, 'debian', `${name}.8`), 'utf8');
      const fromHelp = helpOptions(help(`${name}.js`));
      assert.ok(fromHelp.length > 5, `no options parsed from -h:\n${help(`${name}.js`)}`);
      assert.deepEqual(manOptions(roff), fromHelp);
    });

    test(`${name}(8) states the same default as ${name} -h for every option`, () => {
      const roff = fs.readFileSync(path.join(ROOT, 'debian', `${name}.8`), 'utf8');
      const defaults = (entries: Map<string, string>): Record<string, string | undefined> =>
        Object.fromEntries([...entries].map(([flag, text]): [string, string | undefined] => [flag, statedDefault(text)]).sort());
      const fromHelp = defaults(helpEntries(help(`${name}.js`)));
      assert.ok(
        Object.values(fromHelp).filter((d) => d !== undefined).length >= 3,
        `few defaults parsed from -h: ${JSON.stringify(fromHelp)}`,
      );
      assert.deepEqual(defaults(manEntries(roff)), fromHelp);
    });
  }

  /** The README's "Command line" table: flag and stated default ("(5)") per row. */
  function readmeTable(): Map<string, string> {
    const md = fs.readFileSync(path.join(ROOT, 'README.md'), 'utf8');
    const section = md.slice(md.indexOf('## Command line'), md.indexOf('\n## ', md.indexOf('## Command line') + 5));
    const rows = new Map<string, string>();
    for (const line of section.split('\n')) {
      const m = /^\| (`-(?:[^|\\]|\\.)*) \| (.*) \|$/.exec(line);
      if (m === null) continue;
      // "`-h`, `--help`": every flag the cell names.
      for (const f of m[1]!.matchAll(/`(-[^` ]+)/g)) rows.set(f[1]!, m[2]!);
    }
    return rows;
  }

  test("the README's flag table lists the same options as saslauthd-ts -h", () => {
    const fromHelp = helpOptions(help('saslauthd-ts.js'));
    assert.deepEqual([...readmeTable().keys()].sort(), fromHelp);
  });

  test("the README's flag table states the same default as saslauthd-ts -h", () => {
    // The table gives a default as "(value)" at the end of its text.
    const stated = (text: string): string | undefined => /\(([^()]*)\)$/.exec(text)?.[1]?.replace(/`/g, '');
    const fromHelp = helpEntries(help('saslauthd-ts.js'));
    for (const [flag, text] of readmeTable()) {
      const d = statedDefault(fromHelp.get(flag) ?? '');
      if (d === undefined) continue;
      const mine = stated(text);
      assert.ok(mine !== undefined && mine.split(';')[0]!.trim().startsWith(d), `${flag}: README says (${mine ?? 'no default'}), -h says ${d}`);
    }
  });
});

