// IMAP argument encoding: nothing a user types can end the LOGIN line early.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import {
  buildCommand,
  isQuotable,
  NO_LITERAL_EXTENSIONS,
  quoted,
  UnsendableValueError,
} from '../../../../src/backends/rimap/command';

const b = (s: string): Buffer => Buffer.from(s, 'utf8');
const wire = (parts: { bytes: Buffer }[]): string => Buffer.concat(parts.map((p) => p.bytes)).toString('latin1');

describe('rimap quoting', () => {
  test('escapes only " and \\ inside a quoted string', () => {
    assert.equal(quoted(b('pa"ss\\ w')).toString(), '"pa\\"ss\\\\ w"');
    assert.equal(quoted(b('')).toString(), '""');
  });

  test('quotes 7-bit values without CR, LF or NUL', () => {
    assert.equal(isQuotable(b('a "b" \\c {5}\t~')), true);
    for (const bad of ['a\rb', 'a\nb', 'a\0b', 'pässword']) assert.equal(isQuotable(b(bad)), false, JSON.stringify(bad));
  });

  test('sends plain values as quoted strings in one part', () => {
    const parts = buildCommand('saslauthd', 'LOGIN', [b('us"er'), b('pa\\ss word')], NO_LITERAL_EXTENSIONS);
    assert.equal(parts.length, 1);
    assert.equal(parts[0]!.awaitContinuation, false);
    assert.equal(wire(parts), 'saslauthd LOGIN "us\\"er" "pa\\\\ss word"\r\n');
  });

  test('sends a value with CR LF as a synchronizing literal and waits for "+"', () => {
    const pw = b('x\r\nA1 DELETE INBOX');
    const parts = buildCommand('saslauthd', 'LOGIN', [b('alice'), pw], NO_LITERAL_EXTENSIONS);
    assert.deepEqual(
      parts.map((p) => [p.bytes.toString('latin1'), p.awaitContinuation]),
      [
        [`saslauthd LOGIN "alice" {${pw.length}}\r\n`, true],
        ['x\r\nA1 DELETE INBOX\r\n', false],
      ],
    );
  });

  test('uses {n+} when the server has LITERAL+', () => {
    const parts = buildCommand('saslauthd', 'LOGIN', [b('alice'), b('pw\r\nsaslauthd2 LOGOUT')], { plus: true, minus: false });
    assert.equal(parts.length, 1);
    assert.equal(wire(parts), 'saslauthd LOGIN "alice" {21+}\r\npw\r\nsaslauthd2 LOGOUT\r\n');
  });

  test('uses {n+} with LITERAL- only up to 4096 bytes', () => {
    const small = buildCommand('t', 'LOGIN', [b('u'), b('\n'.repeat(4096))], { plus: false, minus: true });
    assert.equal(small.length, 1);
    const big = buildCommand('t', 'LOGIN', [b('u'), b('\n'.repeat(4097))], { plus: false, minus: true });
    assert.equal(big.length, 2);
    assert.match(big[0]!.bytes.toString('latin1'), /\{4097\}\r\n$/);
  });

  test('sends 8-bit (UTF-8) values as literals, counted in bytes', () => {
    const pw = b('pässwörd-🔑');
    const parts = buildCommand('saslauthd', 'LOGIN', [b('jörg'), pw], { plus: true, minus: false });
    assert.equal(
      wire(parts),
      Buffer.concat([b(`saslauthd LOGIN {5+}\r\njörg {${pw.length}+}\r\n`), pw, b('\r\n')]).toString('latin1'),
    );
  });

  test('two synchronizing literals wait twice', () => {
    const parts = buildCommand('t', 'LOGIN', [b('a\nb'), b('c\nd')], NO_LITERAL_EXTENSIONS);
    assert.deepEqual(
      parts.map((p) => [p.bytes.toString('latin1'), p.awaitContinuation]),
      [
        ['t LOGIN {3}\r\n', true],
        ['a\nb {3}\r\n', true],
        ['c\nd\r\n', false],
      ],
    );
  });

  test('refuses a NUL byte rather than truncating or sending it', () => {
    assert.throws(() => buildCommand('t', 'LOGIN', [b('u'), b('a\0b')], NO_LITERAL_EXTENSIONS), UnsendableValueError);
  });

  test('no CR or LF ever appears outside a literal', () => {
    const nasty = ['\r', '\n', '\r\n', 'a\r\nb LOGOUT\r\n', '"\r\n"', '\\\r\n', '{3}\r\nabc'];
    for (const login of nasty) {
      for (const pw of nasty) {
        for (const lit of [NO_LITERAL_EXTENSIONS, { plus: true, minus: false }]) {
          const bytes = Buffer.concat(buildCommand('t', 'LOGIN', [b(login), b(pw)], lit).map((p) => p.bytes));
          assert.deepEqual(stripLiterals(bytes), 't LOGIN {L} {L}\r\n', JSON.stringify([login, pw, lit]));
        }
      }
    }
  });
});

/** Replaces each `{n}`/`{n+}` CRLF + n bytes with `{L}`; what is left must be one line. */
function stripLiterals(buf: Buffer): string {
  let out = '';
  let i = 0;
  while (i < buf.length) {
    const m = /^\{(\d+)\+?\}\r\n/.exec(buf.subarray(i, i + 20).toString('latin1'));
    if (m) {
      out += '{L}';
      i += m[0].length + Number(m[1]);
      continue;
    }
    out += String.fromCharCode(buf[i]!);
    i++;
  }
  return out;
}
