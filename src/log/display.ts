// Request fields arrive as Latin-1 strings, one character per byte the client
// sent (see server/exchange.ts). For people, show them as the UTF-8 text they
// usually are, and escape what is not text, so a log line can be neither
// mojibake nor split in two by a control byte.
import { isUtf8 } from 'node:buffer';

const PLAIN = /^[\x20-\x7e]*$/;

function escapeControls(s: string): string {
  return s.replace(/\p{Cc}/gu, (c) => `\\x${c.charCodeAt(0).toString(16).padStart(2, '0')}`);
}

/** A Latin-1 request field as log text. */
export function shown(field: string): string {
  if (PLAIN.test(field)) return field;
  const bytes = Buffer.from(field, 'latin1');
  if (isUtf8(bytes)) return escapeControls(bytes.toString('utf8'));
  let out = '';
  for (const b of bytes) out += b >= 0x20 && b < 0x7f ? String.fromCharCode(b) : `\\x${b.toString(16).padStart(2, '0')}`;
  return out;
}

/** A Latin-1 request field as the UTF-8 text it encodes, or undefined when its bytes are not UTF-8. */
export function utf8Text(field: string): string | undefined {
  if (PLAIN.test(field)) return field;
  const bytes = Buffer.from(field, 'latin1');
  return isUtf8(bytes) ? bytes.toString('utf8') : undefined;
}
