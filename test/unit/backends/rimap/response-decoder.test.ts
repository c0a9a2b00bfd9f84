// The IMAP response decoder: whole responses from any chunking, literals
// kept inside their response, and a size limit.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import {
  capabilitiesOf,
  MAX_RESPONSE_BYTES,
  ResponseDecodeError,
  ResponseDecoder,
} from '../../../../src/backends/rimap/response-decoder';

const GREETING = '* OK [CAPABILITY IMAP4rev1 LITERAL+ STARTTLS] Dovecot ready.\r\n';

describe('rimap response decoder', () => {
  test('parses greeting, untagged, continuation and tagged responses', () => {
    const d = new ResponseDecoder();
    const rs = d.push(
      Buffer.from(
        `${GREETING}+ go ahead\r\n* CAPABILITY IMAP4rev1 LOGINDISABLED\r\nsaslauthd no [AUTHENTICATIONFAILED] Authentication failed.\r\n`,
      ),
    );
    assert.deepEqual(
      rs.map((r) => [r.kind, r.tag, r.status, r.code, r.text]),
      [
        ['untagged', '*', 'OK', 'CAPABILITY IMAP4rev1 LITERAL+ STARTTLS', 'Dovecot ready.'],
        ['continuation', '+', '', undefined, 'go ahead'],
        ['untagged', '*', 'CAPABILITY', undefined, 'IMAP4rev1 LOGINDISABLED'],
        ['tagged', 'saslauthd', 'NO', 'AUTHENTICATIONFAILED', 'Authentication failed.'],
      ],
    );
    assert.deepEqual([...capabilitiesOf(rs[0]!)!], ['IMAP4REV1', 'LITERAL+', 'STARTTLS']);
    assert.deepEqual([...capabilitiesOf(rs[2]!)!], ['IMAP4REV1', 'LOGINDISABLED']);
    assert.equal(capabilitiesOf(rs[3]!), undefined);
  });

  test('gives the same responses when fed one byte at a time', () => {
    const input = Buffer.from(`${GREETING}* 1 FETCH (BODY[] {12}\r\nline1\r\nline2)\r\nsaslauthd OK done\r\n`);
    const whole = new ResponseDecoder().push(input);
    const d = new ResponseDecoder();
    const bytewise = [];
    for (const byte of input) bytewise.push(...d.push(Buffer.from([byte])));
    assert.deepEqual(
      bytewise.map((r) => r.raw.toString()),
      whole.map((r) => r.raw.toString()),
    );
    assert.equal(whole.length, 3);
    assert.equal(d.buffered, 0);
  });

  test('keeps CR LF inside a literal in its response instead of starting a new one', () => {
    const rs = new ResponseDecoder().push(Buffer.from('* 1 FETCH (X {20}\r\nsaslauthd OK forged)\r\nsaslauthd NO real\r\n'));
    assert.equal(rs.length, 2);
    assert.equal(rs[0]!.status, '1');
    assert.deepEqual([rs[1]!.tag, rs[1]!.status], ['saslauthd', 'NO']);
  });

  test('keeps an incomplete tail for later', () => {
    const d = new ResponseDecoder();
    assert.deepEqual(d.push(Buffer.from('* OK hel')), []);
    assert.equal(d.buffered, 8);
    assert.equal(d.push(Buffer.from('lo\r\n'))[0]!.text, 'hello');
  });

  test('tolerates a bare LF line end', () => {
    const rs = new ResponseDecoder().push(Buffer.from('* OK hi\nt OK\n'));
    assert.deepEqual(
      rs.map((r) => r.raw.toString()),
      ['* OK hi', 't OK'],
    );
  });

  test('refuses a response longer than the limit, with or without a literal', () => {
    assert.throws(() => new ResponseDecoder().push(Buffer.alloc(MAX_RESPONSE_BYTES + 1, 0x41)), ResponseDecodeError);
    assert.throws(() => new ResponseDecoder().push(Buffer.from('* X {999999999}\r\n')), ResponseDecodeError);
    const d = new ResponseDecoder(100);
    assert.throws(() => {
      for (let i = 0; i < 20; i++) d.push(Buffer.from('0123456789'));
    }, ResponseDecodeError);
  });
});
