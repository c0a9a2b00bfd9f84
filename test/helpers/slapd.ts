// A private OpenLDAP slapd for the LDAP tests: slapd.conf + mdb under a temp
// dir, schemas read from /etc/ldap/schema, listening on 127.0.0.1 free high
// ports (ldap:// and ldaps://) and on an ldapi:// socket in the temp dir,
// with a throwaway CA, server and client certificates made by openssl. It
// can be stopped, killed, paused and restarted on the same ports, and is
// killed and removed when the test process ends, however it ends.
import { type ChildProcess, execFile, execFileSync, spawn } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { Client } from 'ldapts';
import { startWatchdog } from './watchdog';

const execFileP = promisify(execFile);

export const BASE_DN = 'dc=example,dc=org';
/** A second suffix, reached from BASE_DN through a referral object (REFERRAL_DN). */
export const REMOTE_BASE_DN = 'dc=example,dc=net';
/** The referral object; its ref names this slapd's own ldap:// port unless a test changes it. */
export const REFERRAL_DN = `ou=partners,${BASE_DN}`;
export const PEOPLE = `ou=people,${BASE_DN}`;

export interface DirUser {
  uid: string;
  dn: string;
  password: string;
}

function user(uid: string, rdn: string, password: string, ou = PEOPLE): DirUser {
  return { uid, dn: `uid=${rdn},${ou}`, password };
}

/** The directory's people. Unique per fixture only in password, which is fine: each fixture is its own slapd. */
export const USERS = {
  /** {SSHA} */
  alice: user('alice', 'alice', 'alice-Secret1'),
  /** {CRYPT} sha512crypt */
  bob: user('bob', 'bob', 'bob-Secret2'),
  /** cleartext userPassword */
  carol: user('carol', 'carol', 'carol-Secret3'),
  /** {SSHA512} (pw-sha2, which slapd loads here) */
  dave: user('dave', 'dave', 'dave-Secret4'),
  /** {MD5}; not in the group */
  erin: user('erin', 'erin', 'erin-Secret5'),
  /** uid with DN specials: "a,b+c" */
  comma: user('a,b+c', 'a\\,b\\+c', 'comma-Secret6'),
  /** Two entries share uid=dup: this one in ou=people, another in ou=staff (DUP_STAFF_PASSWORD). */
  dup: user('dup', 'dup', 'dup-Secret7'),
  /** In REMOTE_BASE_DN, found only by following the referral. */
  remy: user('remy', 'remy', 'remy-Secret8', `ou=people,${REMOTE_BASE_DN}`),
} as const;

/** The second uid=dup entry (ou=staff) has its own password. */
export const DUP_STAFF_PASSWORD = 'dup-Staff7';

export const GROUP_DN = `cn=mailusers,ou=groups,${BASE_DN}`;
export const GROUP_MEMBERS = ['alice', 'bob', 'carol', 'dave', 'comma'] as const;
export const SERVICE_DN = `cn=svc,${BASE_DN}`;
export const SERVICE_PASSWORD = 'svc-Secret0';
export const ADMIN_DN = `cn=admin,${BASE_DN}`;
export const ADMIN_PASSWORD = 'admin-Secret9';

export interface SlapdOptions {
  /** TLSVerifyClient demand: TLS clients must present a certificate from the CA. */
  requireClientCert?: boolean;
  /** Log every operation (slapd -d stats): output() then holds "BIND dn=..." lines, slapd's own record of binds. */
  logStats?: boolean;
}

/** How many simple binds as dn slapd logged (needs logStats). */
export function bindsAs(output: string, dn: string): number {
  const needle = `BIND dn="${dn}" method=128`;
  return output.split('\n').filter((l) => l.includes(needle)).length;
}

export interface Slapd {
  dir: string;
  ldapPort: number;
  ldapsPort: number;
  ldapUrl: string;
  ldapsUrl: string;
  ldapiUrl: string;
  /** The CA that signed the server and client certificates. */
  caFile: string;
  /** A directory holding only caFile's certificate. */
  caDir: string;
  /** A CA that signed nothing here. */
  otherCaFile: string;
  clientCertFile: string;
  clientKeyFile: string;
  running(): boolean;
  /** (Re)start on the same ports and wait until it answers. */
  start(): Promise<void>;
  /** SIGTERM and wait. */
  stop(): Promise<void>;
  /** SIGKILL and wait. */
  kill(): Promise<void>;
  /** SIGSTOP: the kernel still accepts connections, nobody answers. */
  pause(): void;
  resume(): void;
  /** Run ldapmodify as the admin; manageDsaIT changes referral objects themselves (-M) instead of following them. */
  modify(ldif: string, opts?: { manageDsaIT?: boolean }): Promise<void>;
  /** Run ldappasswd as the admin (the server hashes the new password). */
  setPassword(dn: string, password: string): Promise<void>;
  output(): string;
  /** Kill and remove everything. */
  cleanup(): Promise<void>;
}

/** Free TCP ports on 127.0.0.1 (bound to 0, then released). */
export async function freePorts(n: number): Promise<number[]> {
  const servers = await Promise.all(
    Array.from(
      { length: n },
      () =>
        new Promise<net.Server>((resolve, reject) => {
          const s = net.createServer();
          s.once('error', reject);
          s.listen(0, '127.0.0.1', () => resolve(s));
        }),
    ),
  );
  const ports = servers.map((s) => (s.address() as net.AddressInfo).port);
  await Promise.all(servers.map((s) => new Promise((r) => s.close(r))));
  return ports;
}

function ssha(password: string, algorithm = 'sha1', tag = 'SSHA'): string {
  const salt = crypto.randomBytes(8);
  const digest = crypto.createHash(algorithm).update(password).update(salt).digest();
  return `{${tag}}${Buffer.concat([digest, salt]).toString('base64')}`;
}

function md5(password: string): string {
  return `{MD5}${crypto.createHash('md5').update(password).digest('base64')}`;
}

function openssl(args: string[], cwd: string): void {
  execFileSync('openssl', args, { cwd, stdio: ['ignore', 'pipe', 'pipe'] });
}

/** CA, server (127.0.0.1 / localhost), client and an unrelated CA, all EC P-256. */
function makeCertificates(dir: string): void {
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
  openssl(
    [
      'req',
      '-x509',
      ...ec,
      '-keyout',
      'ca.key',
      '-out',
      'ca.pem',
      '-days',
      '2',
      '-subj',
      '/CN=saslauthd-ts test CA',
      '-addext',
      'basicConstraints=critical,CA:TRUE',
      '-addext',
      'keyUsage=critical,keyCertSign,cRLSign',
    ],
    dir,
  );
  openssl(
    [
      'req',
      '-x509',
      ...ec,
      '-keyout',
      'other-ca.key',
      '-out',
      'other-ca.pem',
      '-days',
      '2',
      '-subj',
      '/CN=unrelated CA',
      '-addext',
      'basicConstraints=critical,CA:TRUE',
      '-addext',
      'keyUsage=critical,keyCertSign,cRLSign',
    ],
    dir,
  );
  fs.writeFileSync(path.join(dir, 'server.ext'), 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n');
  fs.writeFileSync(path.join(dir, 'client.ext'), 'extendedKeyUsage=clientAuth\n');
  for (const [name, cn] of [
    ['server', 'localhost'],
    ['client', 'saslauthd-ts client'],
  ] as const) {
    openssl(['req', '-new', ...ec, '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', `/CN=${cn}`], dir);
    openssl(
      [
        'x509',
        '-req',
        '-in',
        `${name}.csr`,
        '-CA',
        'ca.pem',
        '-CAkey',
        'ca.key',
        '-CAcreateserial',
        '-out',
        `${name}.pem`,
        '-days',
        '2',
        '-extfile',
        `${name}.ext`,
      ],
      dir,
    );
  }
  fs.mkdirSync(path.join(dir, 'cadir'));
  fs.copyFileSync(path.join(dir, 'ca.pem'), path.join(dir, 'cadir', 'test-ca.pem'));
}

function entry(dn: string, attrs: Array<[string, string]>): string {
  return [
    `dn: ${dn}`,
    ...attrs.map(([k, v]) =>
      /^[\x20-\x7e]*$/.test(v) && !v.startsWith(' ') && !v.startsWith(':')
        ? `${k}: ${v}`
        : `${k}:: ${Buffer.from(v).toString('base64')}`,
    ),
  ].join('\n');
}

function person(u: DirUser, userPassword: string): string {
  return entry(u.dn, [
    ['objectClass', 'inetOrgPerson'],
    ['uid', u.uid],
    ['cn', u.uid],
    ['sn', u.uid],
    ['mail', `${u.uid}@example.org`],
    ['userPassword', userPassword],
  ]);
}

function orgData(ldapPort: number, bobCrypt: string): string {
  const U = USERS;
  return (
    [
      entry(BASE_DN, [
        ['objectClass', 'dcObject'],
        ['objectClass', 'organization'],
        ['o', 'Example'],
        ['dc', 'example'],
      ]),
      entry(PEOPLE, [
        ['objectClass', 'organizationalUnit'],
        ['ou', 'people'],
      ]),
      entry(`ou=staff,${BASE_DN}`, [
        ['objectClass', 'organizationalUnit'],
        ['ou', 'staff'],
      ]),
      entry(`ou=groups,${BASE_DN}`, [
        ['objectClass', 'organizationalUnit'],
        ['ou', 'groups'],
      ]),
      entry(SERVICE_DN, [
        ['objectClass', 'organizationalRole'],
        ['objectClass', 'simpleSecurityObject'],
        ['cn', 'svc'],
        ['userPassword', ssha(SERVICE_PASSWORD)],
      ]),
      person(U.alice, ssha(U.alice.password)),
      person(U.bob, `{CRYPT}${bobCrypt}`),
      person(U.carol, U.carol.password),
      person(U.dave, ssha(U.dave.password, 'sha512', 'SSHA512')),
      person(U.erin, md5(U.erin.password)),
      person(U.comma, ssha(U.comma.password)),
      person(U.dup, ssha(U.dup.password)),
      person({ ...U.dup, dn: `uid=dup,ou=staff,${BASE_DN}` }, ssha(DUP_STAFF_PASSWORD)),
      entry(GROUP_DN, [
        ['objectClass', 'groupOfUniqueNames'],
        ['cn', 'mailusers'],
        ...GROUP_MEMBERS.map((m): [string, string] => ['uniqueMember', U[m].dn]),
      ]),
      entry(REFERRAL_DN, [
        ['objectClass', 'referral'],
        ['objectClass', 'extensibleObject'],
        ['ou', 'partners'],
        ['ref', `ldap://127.0.0.1:${ldapPort}/ou=people,${REMOTE_BASE_DN}`],
      ]),
    ].join('\n\n') + '\n'
  );
}

function netData(): string {
  return (
    [
      entry(REMOTE_BASE_DN, [
        ['objectClass', 'dcObject'],
        ['objectClass', 'organization'],
        ['o', 'Remote'],
        ['dc', 'example'],
      ]),
      entry(`ou=people,${REMOTE_BASE_DN}`, [
        ['objectClass', 'organizationalUnit'],
        ['ou', 'people'],
      ]),
      person(USERS.remy, ssha(USERS.remy.password)),
    ].join('\n\n') + '\n'
  );
}

function slapdConf(dir: string, opts: SlapdOptions): string {
  const acl = [
    'access to attrs=userPassword',
    `  by dn.exact="${SERVICE_DN}" read`,
    '  by anonymous auth',
    '  by self write',
    '  by * none',
    'access to *',
    '  by * read',
  ].join('\n');
  return `include /etc/ldap/schema/core.schema
include /etc/ldap/schema/cosine.schema
include /etc/ldap/schema/inetorgperson.schema
include /etc/ldap/schema/nis.schema
modulepath /usr/lib/ldap
moduleload back_mdb
moduleload pw-sha2
pidfile ${dir}/slapd.pid
argsfile ${dir}/slapd.args
TLSCACertificateFile ${dir}/ca.pem
TLSCertificateFile ${dir}/server.pem
TLSCertificateKeyFile ${dir}/server.key
TLSVerifyClient ${opts.requireClientCert ? 'demand' : 'never'}

database mdb
suffix "${BASE_DN}"
rootdn "${ADMIN_DN}"
rootpw ${ADMIN_PASSWORD}
directory ${dir}/db-org
maxsize 16777216
${acl}

database mdb
suffix "${REMOTE_BASE_DN}"
rootdn "cn=admin,${REMOTE_BASE_DN}"
rootpw ${ADMIN_PASSWORD}
directory ${dir}/db-net
maxsize 16777216
${acl}
`;
}

const live = new Set<{ child: ChildProcess | undefined; dir: string }>();
function killAll(): void {
  for (const l of live) {
    try {
      l.child?.kill('SIGKILL');
    } catch {
      // already gone
    }
    fs.rmSync(l.dir, { recursive: true, force: true });
  }
  live.clear();
}
process.once('exit', killAll);
// A test process stopped by a signal runs no after() hooks and no exit
// handlers: clean up, then die of the same signal.
for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
  process.once(sig, () => {
    killAll();
    process.kill(process.pid, sig);
  });
}

async function waitUntilAnswering(url: string, child: ChildProcess, out: () => string, timeoutMs = 10_000): Promise<void> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    if (child.exitCode !== null || child.signalCode !== null) throw new Error(`slapd exited during startup:\n${out()}`);
    const client = new Client({ url, timeout: 1000, connectTimeout: 1000 });
    try {
      await client.bind('', '');
      await client.unbind();
      return;
    } catch {
      await client.unbind().catch(() => undefined);
    }
    if (Date.now() > until) throw new Error(`slapd not answering on ${url} within ${timeoutMs} ms:\n${out()}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

export async function startSlapd(opts: SlapdOptions = {}): Promise<Slapd> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sts-slapd-'));
  const handle: { child: ChildProcess | undefined; dir: string } = { child: undefined, dir };
  live.add(handle);
  startWatchdog(dir, { pidFiles: [path.join(dir, 'slapd.pid')], uniqueArg: path.join(dir, 'slapd.conf') });
  let out = '';
  try {
    const [ldapPort, ldapsPort] = (await freePorts(2)) as [number, number];
    makeCertificates(dir);
    const bobCrypt = execFileSync('openssl', ['passwd', '-6', USERS.bob.password], { encoding: 'utf8' }).trim();
    fs.mkdirSync(path.join(dir, 'db-org'));
    fs.mkdirSync(path.join(dir, 'db-net'));
    const conf = path.join(dir, 'slapd.conf');
    fs.writeFileSync(conf, slapdConf(dir, opts));
    fs.writeFileSync(path.join(dir, 'org.ldif'), orgData(ldapPort, bobCrypt));
    fs.writeFileSync(path.join(dir, 'net.ldif'), netData());
    await execFileP('slapadd', ['-q', '-f', conf, '-b', BASE_DN, '-l', path.join(dir, 'org.ldif')]);
    await execFileP('slapadd', ['-q', '-f', conf, '-b', REMOTE_BASE_DN, '-l', path.join(dir, 'net.ldif')]);

    const ldapiPath = path.join(dir, 'ldapi');
    const ldapUrl = `ldap://127.0.0.1:${ldapPort}/`;
    const ldapsUrl = `ldaps://127.0.0.1:${ldapsPort}/`;
    const ldapiUrl = `ldapi://${encodeURIComponent(ldapiPath)}/`;
    let exited: Promise<void> = Promise.resolve();

    const running = (): boolean =>
      handle.child !== undefined && handle.child.exitCode === null && handle.child.signalCode === null;
    const signalAndWait = async (sig: NodeJS.Signals): Promise<void> => {
      if (!running()) return;
      handle.child?.kill(sig);
      const timer = setTimeout(() => handle.child?.kill('SIGKILL'), 5000);
      await exited;
      clearTimeout(timer);
    };
    const start = async (): Promise<void> => {
      if (running()) return;
      const child = spawn(
        'slapd',
        ['-f', conf, '-h', `${ldapUrl} ${ldapsUrl} ${ldapiUrl}`, '-d', opts.logStats ? 'stats' : '0'],
        {
          stdio: ['ignore', 'pipe', 'pipe'],
        },
      );
      handle.child = child;
      exited = new Promise((resolve) => child.once('exit', () => resolve()));
      child.stdout?.on('data', (d: Buffer) => (out += d.toString()));
      child.stderr?.on('data', (d: Buffer) => (out += d.toString()));
      await waitUntilAnswering(ldapUrl, child, () => out);
    };
    const ldapTool = async (tool: string, args: string[], input?: string): Promise<void> => {
      await new Promise<void>((resolve, reject) => {
        const p = execFile(tool, ['-x', '-H', ldapUrl, '-D', ADMIN_DN, '-w', ADMIN_PASSWORD, ...args], (err, _stdout, stderr) =>
          err ? reject(new Error(`${tool} failed: ${stderr}`)) : resolve(),
        );
        if (input !== undefined) p.stdin?.end(input);
      });
    };

    await start();
    return {
      dir,
      ldapPort,
      ldapsPort,
      ldapUrl,
      ldapsUrl,
      ldapiUrl,
      caFile: path.join(dir, 'ca.pem'),
      caDir: path.join(dir, 'cadir'),
      otherCaFile: path.join(dir, 'other-ca.pem'),
      clientCertFile: path.join(dir, 'client.pem'),
      clientKeyFile: path.join(dir, 'client.key'),
      running,
      start,
      stop: () => signalAndWait('SIGTERM'),
      kill: () => signalAndWait('SIGKILL'),
      pause: () => void handle.child?.kill('SIGSTOP'),
      resume: () => void handle.child?.kill('SIGCONT'),
      modify: (ldif, o = {}) => ldapTool('ldapmodify', o.manageDsaIT === true ? ['-M'] : [], ldif),
      setPassword: (dn, password) => ldapTool('ldappasswd', ['-s', password, dn]),
      output: () => out,
      async cleanup() {
        if (running()) {
          handle.child?.kill('SIGCONT');
          await signalAndWait('SIGKILL');
        }
        fs.rmSync(dir, { recursive: true, force: true });
        live.delete(handle);
      },
    };
  } catch (err) {
    handle.child?.kill('SIGKILL');
    fs.rmSync(dir, { recursive: true, force: true });
    live.delete(handle);
    throw err;
  }
}
