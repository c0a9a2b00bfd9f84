// testsaslauthd-ts: the stock testsaslauthd's flags, output and exit codes
// (0 if the last try succeeded, 255 on failure, 1 on usage), plus --json
// for scripts that want the daemon's reason text.
import path from 'node:path';
import { Command, CommanderError, Option } from 'commander';
import { DEFAULT_RUN_DIR } from '../config/options';
import { SOCKET_NAME } from '../server/server';
import { ClientError, sendRequest } from '../client/request';

const USAGE =
  'testsaslauthd: usage: testsaslauthd -u username -p password\n' +
  '              [-r realm] [-s servicename]\n' +
  '              [-f socket path] [-R repeatnum]\n';

export async function main(argv: string[]): Promise<void> {
  const cmd = new Command('testsaslauthd-ts')
    .description('Ask a saslauthd (Cyrus or saslauthd-ts) to check a login, as testsaslauthd does')
    .helpOption('-h, --help', 'show this help and exit')
    .addOption(new Option('-u <username>', 'login name (required)'))
    .addOption(new Option('-p <password>', 'password (required)'))
    .addOption(new Option('-r <realm>', 'realm').default(''))
    .addOption(new Option('-s <servicename>', 'service name').default('imap'))
    .addOption(new Option('-f <socket>', 'socket path').default(path.join(DEFAULT_RUN_DIR, SOCKET_NAME)))
    .addOption(new Option('-R <repeat>', 'number of tries').default('1'))
    .addOption(new Option('-a <clientaddr>', 'client address, sent as the 5th field (upstream master)'))
    .addOption(new Option('--json', "print one JSON object per try, with the daemon's full reply"))
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
  const o = cmd.opts<{ u?: string; p?: string; r: string; s: string; f: string; R: string; a?: string; json?: boolean }>();
  const repeat = Number.parseInt(o.R, 10);
  if (o.u === undefined || o.p === undefined || !Number.isFinite(repeat) || repeat < 1) {
    process.stderr.write(USAGE);
    process.exitCode = 1;
    return;
  }
  let last = -1;
  for (let i = 0; i < repeat; i++) {
    const fields = { login: o.u, password: o.p, service: o.s, realm: o.r, ...(o.a !== undefined ? { clientAddr: o.a } : {}) };
    if (!o.json) process.stdout.write(`${i}: `);
    try {
      const reply = await sendRequest(o.f, fields);
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
  process.exitCode = last === 0 ? 0 : 255;
}
