// testsaslauthd-ts: the stock testsaslauthd's flags, output and exit codes
// (0 if the last try succeeded, 255 on failure, 1 on usage), plus --json
// for scripts that want the daemon's reason text, -p - to read the password
// from standard input (never in `ps`), and --ping, a health probe that needs
// no credentials.
import path from 'node:path';
import { Command, CommanderError, Option } from 'commander';
import { DEFAULT_RUN_DIR } from '../config/options';
import { SOCKET_NAME } from '../server/server';
import { ClientError, sendRequest } from '../client/request';

const USAGE =
  'testsaslauthd: usage: testsaslauthd -u username -p password\n' +
  '              [-r realm] [-s servicename]\n' +
  '              [-f socket path] [-R repeatnum]\n' +
  '       testsaslauthd-ts --ping [-f socket path] [--timeout seconds]\n';

/** Every saslauthd answers an empty login so, before any mechanism runs (Cyrus's do_request). */
export const PING_REPLY = 'NO NULL login received';

const DEFAULT_TIMEOUT_S = 30;
const PING_TIMEOUT_S = 5;
/** How long -p - waits for the password on standard input. */
const STDIN_TIMEOUT_MS = 60_000;

class UsageError extends Error {}

interface Opts {
  u?: string;
  p?: string;
  r: string;
  s: string;
  f: string;
  R: string;
  a?: string;
  json?: boolean;
  ping?: boolean;
  timeout?: string;
}

export async function main(argv: string[]): Promise<void> {
  const cmd = new Command('testsaslauthd-ts')
    .description('Ask a saslauthd (Cyrus or saslauthd-ts) to check a login, as testsaslauthd does')
    .helpOption('-h, --help', 'show this help and exit')
    .addOption(new Option('-u <username>', 'login name (required, except with --ping)'))
    .addOption(
      new Option(
        '-p <password>',
        "password (required, except with --ping); '-' reads it from standard input (its first line), so it never shows in ps",
      ),
    )
    .addOption(new Option('-r <realm>', 'realm').default(''))
    .addOption(new Option('-s <servicename>', 'service name').default('imap'))
    .addOption(new Option('-f <socket>', 'socket path').default(path.join(DEFAULT_RUN_DIR, SOCKET_NAME)))
    .addOption(new Option('-R <repeat>', 'number of tries').default('1'))
    .addOption(new Option('-a <clientaddr>', 'client address, sent as the 5th field (upstream master)'))
    .addOption(new Option('--json', "print one JSON object per try, with the daemon's full reply"))
    .addOption(
      new Option(
        '--ping',
        `health check without credentials: send an empty login and expect "${PING_REPLY}"; prints one line, exits 0 if that answer came, 1 otherwise`,
      ),
    )
    .addOption(
      new Option(
        '--timeout <seconds>',
        `give up waiting for the daemon's answer after this long (default ${DEFAULT_TIMEOUT_S}; ${PING_TIMEOUT_S} with --ping)`,
      ),
    )
    .exitOverride()
    .configureOutput({ writeOut: (s) => process.stdout.write(s), writeErr: () => undefined });
  try {
    cmd.parse(argv, { from: 'user' });
  } catch (err) {
    if (err instanceof CommanderError && err.exitCode === 0) return;
    process.stderr.write(USAGE);
    process.exitCode = 1;
    return;
  }
  const o = cmd.opts<Opts>();
  try {
    const timeoutMs = parseTimeout(o.timeout, o.ping ? PING_TIMEOUT_S : DEFAULT_TIMEOUT_S);
    process.exitCode = o.ping ? await ping(o, timeoutMs) : await check(o, timeoutMs);
  } catch (err) {
    if (!(err instanceof UsageError)) throw err;
    process.stderr.write(err.message === '' ? USAGE : `testsaslauthd-ts: ${err.message}\n`);
    process.exitCode = 1;
  }
}

function parseTimeout(value: string | undefined, fallback: number): number {
  if (value === undefined) return fallback * 1000;
  if (!/^\d+(\.\d+)?$/.test(value) || Number(value) <= 0)
    throw new UsageError(`--timeout: '${value}' is not a number of seconds above 0`);
  return Number(value) * 1000;
}

/** --ping: does something that speaks saslauthd's protocol answer on the socket? */
async function ping(o: Opts, timeoutMs: number): Promise<number> {
  const extra = [
    o.u !== undefined && '-u',
    o.p !== undefined && '-p',
    o.R !== '1' && '-R',
    o.json && '--json',
    o.a !== undefined && '-a',
  ].filter((x): x is string => typeof x === 'string');
  if (extra.length > 0) throw new UsageError(`--ping sends no credentials: leave out ${extra.join(', ')}`);
  const started = performance.now();
  try {
    const reply = await sendRequest(o.f, { login: '', password: '', service: o.s, realm: '' }, timeoutMs);
    const ms = Math.round(performance.now() - started);
    if (reply === PING_REPLY) {
      process.stdout.write(`OK: saslauthd answers on ${o.f} ("${reply}", ${ms} ms)\n`);
      return 0;
    }
    process.stdout.write(
      `FAILED: ${o.f} answered ${JSON.stringify(reply)}, not "${PING_REPLY}": is a saslauthd listening there?\n`,
    );
    return 1;
  } catch (err) {
    const msg =
      err instanceof ClientError && err.code === 'timeout' ? `no answer within ${timeoutMs / 1000} s` : (err as Error).message;
    process.stdout.write(`FAILED: ${o.f}: ${msg}\n`);
    return 1;
  }
}

/** The stock testsaslauthd: -R tries of one login. */
async function check(o: Opts, timeoutMs: number): Promise<number> {
  const repeat = Number.parseInt(o.R, 10);
  if (o.u === undefined || o.p === undefined || !Number.isFinite(repeat) || repeat < 1) throw new UsageError('');
  const password = o.p === '-' ? await readPassword(STDIN_TIMEOUT_MS) : o.p;
  let last = -1;
  try {
    for (let i = 0; i < repeat; i++) {
      const fields = { login: o.u, password, service: o.s, realm: o.r, ...(o.a !== undefined ? { clientAddr: o.a } : {}) };
      if (!o.json) process.stdout.write(`${i}: `);
      try {
        const reply = await sendRequest(o.f, fields, timeoutMs);
        const ok = reply.startsWith('OK');
        if (o.json) process.stdout.write(`${JSON.stringify({ try: i, ok, reply })}\n`);
        else process.stdout.write(ok ? 'OK "Success."\n' : 'NO "authentication failed"\n');
        last = ok ? 0 : -1;
      } catch (err) {
        const msg = err instanceof ClientError ? err.message : (err as Error).message;
        if (o.json) process.stdout.write(`${JSON.stringify({ try: i, ok: false, error: msg })}\n`);
        else process.stderr.write(`${msg}\n`);
        last = -1;
      }
    }
  } finally {
    if (Buffer.isBuffer(password)) password.fill(0);
  }
  return last === 0 ? 0 : 255;
}

/**
 * -p -: the password from standard input, as bytes: its first line without
 * the line ending (or all of it when it has none). A terminal gets a prompt
 * and no echo.
 */
function readPassword(timeoutMs: number): Promise<Buffer> {
  const stdin = process.stdin;
  const tty = stdin.isTTY === true;
  if (tty) process.stderr.write('Password: ');
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let length = 0;
    const finish = (err?: Error): void => {
      clearTimeout(timer);
      stdin.off('data', onData);
      stdin.off('end', onEnd);
      stdin.off('error', onError);
      if (tty) {
        stdin.setRawMode(false);
        process.stderr.write('\n');
      }
      stdin.pause();
      stdin.destroy();
      const all = Buffer.concat(chunks, length);
      for (const c of chunks) c.fill(0);
      if (err !== undefined) {
        all.fill(0);
        reject(err);
        return;
      }
      let end = all.indexOf(0x0a);
      if (end < 0) end = all.length;
      if (end > 0 && all[end - 1] === 0x0d) end--;
      const password = Buffer.from(all.subarray(0, end));
      all.fill(0);
      if (password.length === 0) reject(new UsageError('-p -: no password on standard input'));
      else resolve(password);
    };
    const onData = (d: Buffer): void => {
      if (tty) {
        for (const byte of d) {
          if (byte === 0x03) return finish(new UsageError('-p -: interrupted'));
          if (byte === 0x0d || byte === 0x0a || byte === 0x04) return finish();
          if (byte === 0x7f || byte === 0x08) {
            // Drop one whole UTF-8 character: its continuation bytes, then its first.
            const line = Buffer.concat(chunks, length);
            let cut = line.length;
            while (cut > 0 && ((line[cut - 1] ?? 0) & 0xc0) === 0x80) cut--;
            if (cut > 0) cut--;
            for (const c of chunks) c.fill(0);
            chunks.length = 0;
            chunks.push(Buffer.from(line.subarray(0, cut)));
            line.fill(0);
            length = cut;
            continue;
          }
          chunks.push(Buffer.from([byte]));
          length++;
        }
        d.fill(0);
        return undefined;
      }
      chunks.push(Buffer.from(d));
      length += d.length;
      d.fill(0);
      if (chunks[chunks.length - 1]?.includes(0x0a)) finish();
      return undefined;
    };
    const onEnd = (): void => finish();
    const onError = (err: Error): void => finish(new UsageError(`-p -: cannot read standard input: ${err.message}`));
    const timer = setTimeout(
      () => finish(new UsageError(`-p -: no password on standard input within ${timeoutMs / 1000} s`)),
      timeoutMs,
    );
    if (tty) stdin.setRawMode(true);
    stdin.on('data', onData);
    stdin.on('end', onEnd);
    stdin.on('error', onError);
  });
}
