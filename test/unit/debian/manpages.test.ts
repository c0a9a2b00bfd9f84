// The man pages in debian/ document exactly the options `-h` lists, with the
// same defaults: adding a flag without documenting it (or the reverse), or
// changing a default in one place only, fails here.
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
        Object.fromEntries([...entries].map(([flag, text]) => [flag, statedDefault(text)]).sort());
      const fromHelp = defaults(helpEntries(help(`${name}.js`)));
      assert.ok(
        Object.values(fromHelp).filter((d) => d !== undefined).length >= 3,
        `few defaults parsed from -h: ${JSON.stringify(fromHelp)}`,
      );
      assert.deepEqual(defaults(manEntries(roff)), fromHelp);
    });
  }
});
