// The addon runs as root, on bytes from any local user and with passwords in
// its memory: binding.gyp builds it with full RELRO (-z relro -z now), stack
// canaries (-fstack-protector-strong) and _FORTIFY_SOURCE. Flags can be lost
// without a word (a gyp edit, a toolchain that overrides them, a build that
// drops cflags), so the built .node itself is read with binutils' readelf.
import { describe, test, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ROOT } from '../../helpers/daemon';

const ADDON = path.join(ROOT, 'build', 'Release', 'saslauthd_native.node');

interface Hardening {
  /** A PT_GNU_RELRO segment: the GOT and friends read-only after relocation. */
  relro: boolean;
  /** DT_BIND_NOW, DF_BIND_NOW or DF_1_NOW: every symbol bound at load, so the whole GOT can be read-only. */
  bindNow: boolean;
  /** Calls __stack_chk_fail: functions carry stack canaries. */
  canaries: boolean;
  /** The __*_chk functions it calls (FORTIFY_SOURCE's checked variants). */
  fortified: string[];
  /** PT_GNU_STACK without X. */
  stackNotExecutable: boolean;
}

const readelf = (args: string[], file: string): string =>
  execFileSync('readelf', ['--wide', ...args, file], { encoding: 'utf8' });

function hardeningOf(file: string): Hardening {
  const segments = readelf(['--program-headers'], file);
  const dynamic = readelf(['--dynamic'], file);
  // Undefined dynamic symbols: what the library calls in libc.
  const calls = readelf(['--dyn-syms'], file)
    .split('\n')
    .filter((l) => /\sUND\s/.test(l))
    .map((l) => (l.trim().split(/\s+/)[7] ?? '').replace(/@.*/, ''));
  const stack = segments.split('\n').find((l) => /^\s*GNU_STACK\s/.test(l)) ?? '';
  return {
    relro: /^\s*GNU_RELRO\s/m.test(segments),
    bindNow: /\(BIND_NOW\)|\(FLAGS\).*\bBIND_NOW\b|\(FLAGS_1\).*\bNOW\b/.test(dynamic),
    canaries: calls.includes('__stack_chk_fail'),
    fortified: calls.filter((s) => /^__\w+_chk$/.test(s) && s !== '__stack_chk_fail'),
    // Flags column, e.g. "RW " or "RWE".
    stackNotExecutable: stack !== '' && !/\sRWE\s/.test(stack),
  };
}

describe('the built addon is hardened', () => {
  const h = hardeningOf(ADDON);

  test('has a GNU_RELRO segment', () => {
    assert.equal(h.relro, true);
  });

  test('binds every symbol at load (BIND_NOW), so RELRO covers the whole GOT', () => {
    assert.equal(h.bindNow, true);
  });

  test('calls __stack_chk_fail: its functions carry stack canaries', () => {
    assert.equal(h.canaries, true);
  });

  test('calls FORTIFY_SOURCE checked functions (__*_chk)', () => {
    assert.ok(h.fortified.length > 0, 'no __*_chk symbol: built without -D_FORTIFY_SOURCE (or without -O)');
  });

  test('has a non-executable stack', () => {
    assert.equal(h.stackNotExecutable, true);
  });
});

describe('the hardening check itself', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'saslts-hardening-'));
  after(() => fs.rmSync(dir, { recursive: true, force: true }));
  // A buffer and a memcpy of unknown length: what the canary and FORTIFY
  // instrument when they are on.
  const src = path.join(dir, 'probe.c');
  fs.writeFileSync(
    src,
    '#include <string.h>\nint f(const char *s, unsigned n) { char b[64]; memcpy(b, s, n); return b[n / 2]; }\n',
  );
  const build = (name: string, flags: string[]): string => {
    const so = path.join(dir, name);
    execFileSync('cc', ['-shared', '-fPIC', '-O2', ...flags, '-o', so, src], { stdio: ['ignore', 'pipe', 'pipe'] });
    return so;
  };

  // Without these two, a check that read nothing (a renamed readelf field, a
  // changed output shape) would pass or fail on anything.
  test('finds none of it in a library built without the flags', () => {
    const so = build('plain.so', [
      '-fno-stack-protector',
      '-U_FORTIFY_SOURCE',
      '-D_FORTIFY_SOURCE=0',
      '-Wl,-z,norelro',
      '-Wl,-z,lazy',
    ]);
    assert.deepEqual(hardeningOf(so), {
      relro: false,
      bindNow: false,
      canaries: false,
      fortified: [],
      stackNotExecutable: true,
    });
  });

  test("finds all of it in the same library built with binding.gyp's flags", () => {
    const so = build('hardened.so', ['-fstack-protector-strong', '-D_FORTIFY_SOURCE=2', '-Wl,-z,relro,-z,now']);
    assert.deepEqual(hardeningOf(so), {
      relro: true,
      bindNow: true,
      canaries: true,
      fortified: ['__memcpy_chk'],
      stackNotExecutable: true,
    });
  });
});
