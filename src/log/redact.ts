// Masking of credentials written into text that gets printed: the password
// of a URI's userinfo (imaps://user:secret@host, ldap://cn=x:secret@host/)
// and the same user:secret@host without a scheme, in -O values, config
// values, startup errors, --check output and log lines. An admin who puts a
// password in a URI must not find it in the journal; what is left (scheme,
// user, host) still says which setting is meant.

export const MASK = '***';

/** Characters that end the token a URI is in, as URIs are quoted in our messages. */
const DELIMITERS = /([\s'"<>,;()[\]]+)/;
function maskToken(token: string): string {
  const at = token.lastIndexOf('@');
  if (at === -1) return token;
  // After scheme://, wherever the URI starts in the token (MECH_OPTIONS=imaps://...).
  const sep = token.indexOf('://');
  const start = sep !== -1 && sep < at ? sep + 3 : 0;
  const colon = token.indexOf(':', start);
  if (colon === -1 || colon > at) return token;
  return `${token.slice(0, colon + 1)}${MASK}${token.slice(at)}`;
}

/**
 * text with the password of every user:password@ masked. A login such as
 * alice@example.org (no colon before the @) is left alone.
 */
export function maskCredentials(text: string): string {
  if (!text.includes('@')) return text;
  return text
    .split(DELIMITERS)
    .map((part, i) => (i % 2 === 1 ? part : maskToken(part)))
    .join('');
}
