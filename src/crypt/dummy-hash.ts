// What an unknown user's password is hashed against. Cyrus answers an
// unknown login without hashing anything, so answer times tell which accounts
// exist; we spend one hash on every path, and that hash must cost what a real
// check costs on this host. A yescrypt dummy on a host of $6$ hashes answered
// unknown users 15 times slower than known ones: the same oracle, reversed.
//
// The method and cost come from the hashes /etc/shadow actually holds (the
// most common method and parameters among real entries), and only without
// any from /etc/login.defs. On Debian 12 login.defs says SHA512 while
// chpasswd and passwd go through PAM and write yescrypt, so the file alone
// would pick the wrong cost; the hashes do not lie.
export interface DummyHash {
  /** The setting crypt(3) is given: a real hash of the chosen kind, or a fresh salt for it. */
  setting: string;
  /** Method and cost, without salt: "$y$j9T$", "$6$rounds=65536$", "$2b$10$", "DES". */
  method: string;
  /** Where the choice came from, for the log and --check. */
  source: string;
}

const DES = /^[./0-9A-Za-z]{13}$/;

/** The method and cost of a crypt(3) hash, without its salt; undefined for anything else ("*", "!", "x", ""). */
export function methodOf(hash: string): string | undefined {
  const h = hash.startsWith('!') ? hash.slice(1) : hash;
  if (DES.test(h)) return 'DES';
  const parts = h.split('$');
  // "", id, [params...], salt, hash
  if (parts.length < 4 || parts[0] !== '' || !/^[0-9a-z]+$/.test(parts[1] ?? '')) return undefined;
  const id = parts[1] as string;
  switch (id) {
    case 'y':
    case 'gy':
    case '7':
      return `$${id}$${parts[2] ?? ''}$`; // params (N, r, p) decide the cost
    case '2a':
    case '2b':
    case '2x':
    case '2y':
      return `$${id}$${parts[2] ?? ''}$`; // the cost factor
    case '5':
    case '6':
      return parts[2]?.startsWith('rounds=') ? `$${id}$${parts[2]}$` : `$${id}$`;
    default:
      return `$${id}$`;
  }
}

/** The most common method among the hashes of a shadow file, with the latest hash of that method. */
export function sampleShadow(text: string): { method: string; hash: string; count: number; of: number } | undefined {
  const byMethod = new Map<string, { count: number; hash: string }>();
  let of = 0;
  for (const line of text.split('\n')) {
    const hash = line.split(':')[1];
    if (hash === undefined) continue;
    const method = methodOf(hash);
    if (method === undefined) continue;
    of++;
    const e = byMethod.get(method) ?? { count: 0, hash: '' };
    e.count++;
    e.hash = hash.startsWith('!') ? hash.slice(1) : hash;
    byMethod.set(method, e);
  }
  let best: { method: string; hash: string; count: number } | undefined;
  for (const [method, e] of byMethod) if (best === undefined || e.count > best.count) best = { method, ...e };
  return best === undefined ? undefined : { ...best, of };
}

const LOGIN_DEFS_PREFIX: Record<string, string> = {
  YESCRYPT: '$y$',
  SHA512: '$6$',
  SHA256: '$5$',
  BCRYPT: '$2b$',
  MD5: '$1$',
  DES: '',
};

/** ENCRYPT_METHOD and its cost setting from login.defs: [prefix, count] for crypt_gensalt, or undefined. */
export function loginDefsMethod(text: string): { name: string; prefix: string; count: number } | undefined {
  const value = (key: string): string | undefined => {
    const m = new RegExp(`^\\s*${key}\\s+(\\S+)`, 'm').exec(text);
    return m?.[1];
  };
  const name = value('ENCRYPT_METHOD')?.toUpperCase();
  if (name === undefined) return undefined;
  const prefix = LOGIN_DEFS_PREFIX[name];
  if (prefix === undefined) return undefined;
  const num = (key: string): number => Number(value(key) ?? 0) || 0;
  let count = 0;
  if (name === 'YESCRYPT') count = num('YESCRYPT_COST_FACTOR');
  else if (name === 'SHA512' || name === 'SHA256') count = num('SHA_CRYPT_MAX_ROUNDS') || num('SHA_CRYPT_MIN_ROUNDS');
  else if (name === 'BCRYPT') count = num('BCRYPT_MAX_ROUNDS') || num('BCRYPT_MIN_ROUNDS');
  return { name, prefix, count };
}

export interface DummySources {
  shadowFile: string;
  shadowText: string | undefined;
  loginDefsFile: string;
  loginDefsText: string | undefined;
  /** libxcrypt's crypt_gensalt (native.cryptGensalt). */
  gensalt(prefix: string, count: number): string | undefined;
}

/** The dummy for this host, or undefined to keep libxcrypt's preferred method. */
export function chooseDummyHash(src: DummySources): DummyHash | undefined {
  const sample = src.shadowText !== undefined ? sampleShadow(src.shadowText) : undefined;
  if (sample !== undefined) {
    return {
      setting: sample.hash,
      method: sample.method,
      source: `${src.shadowFile}: ${sample.count} of ${sample.of} hashes`,
    };
  }
  const defs = src.loginDefsText !== undefined ? loginDefsMethod(src.loginDefsText) : undefined;
  if (defs !== undefined) {
    const setting = src.gensalt(defs.prefix, defs.count);
    if (setting !== undefined) {
      return {
        setting,
        method: methodOf(`${setting}x`) ?? defs.prefix,
        source: `${src.loginDefsFile}: ENCRYPT_METHOD ${defs.name}${defs.count ? ` (${defs.count})` : ''}`,
      };
    }
  }
  return undefined;
}
