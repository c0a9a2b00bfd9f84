// saslauthd-ts: the daemon's entry point. Parses Cyrus-style flags, starts the
// mechanism, listens on <run dir>/mux, and either stays in the foreground
// (-d/-f, systemd) or detaches like Cyrus, exiting 0 only once the detached
// daemon is actually listening.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { parseArgs, type DaemonOptions } from '../config/options';
import { createLogger, type DaemonLogger } from '../log/logger';
import { BACKENDS, CYRUS_ONLY } from '../backends';
import type { Backend } from '../backends/backend';
import { Authenticator } from '../auth/authenticator';
import { CredentialCache } from '../auth/cache';
import { SaslauthdServer, SOCKET_NAME, StartupError } from '../server/server';
import { native } from '../native/binding';

const CHILD_ENV = 'SASLAUTHD_TS_DETACHED';
const STATUS_FD = 3;

class ExitError extends Error {
  constructor(
    message: string,
    readonly exitCode: number,
  ) {
    super(message);
  }
}

export async function main(argv: string[]): Promise<void> {
  const parsed = parseArgs(argv);
  if (parsed.kind === 'exit') {
    if (parsed.stdout) process.stdout.write(parsed.stdout);
    if (parsed.stderr) process.stderr.write(parsed.stderr);
    process.exitCode = parsed.code;
    return;
  }
  const opts = parsed.options;
  const detachedChild = process.env[CHILD_ENV] === '1';
  if (!opts.foreground && !detachedChild) {
    process.exitCode = await detach(argv);
    return;
  }
  const logger = createLogger({
    level: opts.verbose ? 'debug' : 'info',
    destination: detachedChild ? 'syslog' : 'stderr',
  });
  try {
    await runDaemon(opts, logger, detachedChild);
  } catch (err) {
    const e = err instanceof ExitError ? err : new ExitError((err as Error).message, 1);
    logger.log.fatal(e.message);
    logger.flush();
    if (detachedChild) reportStatus(`ERR ${e.exitCode} ${e.message}`);
    else process.stderr.write(`saslauthd-ts: ${e.message}\n`);
    process.exitCode = e.exitCode;
  }
}

async function createBackend(opts: DaemonOptions, logger: DaemonLogger): Promise<Backend> {
  const factory = BACKENDS[opts.mech];
  if (factory === undefined) {
    if (CYRUS_ONLY.includes(opts.mech)) {
      throw new ExitError(
        `authentication mechanism ${opts.mech} is a Cyrus mechanism that saslauthd-ts does not implement ` +
          `(available: ${Object.keys(BACKENDS).join(', ')})`,
        1,
      );
    }
    throw new ExitError(
      `unknown authentication mechanism: ${opts.mech} (available: ${Object.keys(BACKENDS).join(', ')})`,
      1,
    );
  }
  try {
    return await factory({ mechOption: opts.mechOption, log: logger.log.child({ mech: opts.mech }) });
  } catch (err) {
    throw new ExitError(`failed to initialize mechanism ${opts.mech}: ${(err as Error).message}`, 1);
  }
}

async function runDaemon(opts: DaemonOptions, logger: DaemonLogger, detachedChild: boolean): Promise<void> {
  const { log } = logger;
  const backend = await createBackend(opts, logger);
  const cache = opts.cache
    ? new CredentialCache({ ttlMs: opts.cacheTimeoutSec * 1000, sizeKb: opts.cacheSizeKb, mode: opts.cacheMode })
    : undefined;
  if (cache) {
    log.info(
      { entries: cache.maxEntries, ttlSec: opts.cacheTimeoutSec, mode: cache.mode },
      `credential cache: ${cache.maxEntries} entries, ${opts.cacheTimeoutSec} s, mode ${cache.mode}`,
    );
  }
  fs.mkdirSync(opts.runDir, { recursive: true, mode: 0o755 });
  const fdLimit = native.raiseFdLimit();
  log.debug({ fdLimit, runDir: opts.runDir, mech: opts.mech, mechOption: opts.mechOption }, 'starting');

  const auth = new Authenticator({
    backend,
    concatRealm: opts.concatRealm,
    timeoutMs: opts.authTimeoutMs,
    log,
    cache,
  });
  const server = new SaslauthdServer({
    socketPath: path.join(opts.runDir, SOCKET_NAME),
    readTimeoutMs: opts.readTimeoutMs,
    drainTimeoutMs: opts.drainTimeoutMs,
    handle: (req) => auth.handle(req),
    log,
  });
  try {
    await server.listen();
  } catch (err) {
    await backend.close?.();
    if (err instanceof StartupError) throw new ExitError(err.message, err.code === 'EADDRINUSE' ? 2 : 1);
    throw err;
  }

  const pidFile = path.join(opts.runDir, 'saslauthd.pid');
  if (detachedChild) {
    const old = process.umask(0o077);
    fs.writeFileSync(pidFile, `${process.pid}\n`);
    process.umask(old);
    reportStatus('OK');
  }
  log.info({ mech: opts.mech }, `master pid is: ${process.pid}`);

  let stopping = false;
  const stop = (signal: string): void => {
    if (stopping) return;
    stopping = true;
    log.info({ signal }, 'shutting down: no new connections, answering those in flight');
    void (async () => {
      await server.close(opts.authTimeoutMs);
      await backend.close?.();
      if (detachedChild) fs.rmSync(pidFile, { force: true });
      log.info(`master exited: ${process.pid}`);
      logger.flush();
      process.exit(0);
    })();
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
  process.on('SIGHUP', () => {
    // An admin who resets a password and sends SIGHUP expects the old one gone.
    cache?.clear();
    if (!backend.reload) {
      log.info(`SIGHUP: mechanism ${backend.name} has no configuration to re-read`);
      return;
    }
    backend.reload().then(
      () => log.info('SIGHUP: configuration re-read'),
      (err: Error) => log.error(`SIGHUP: configuration not re-read, keeping the old one: ${err.message}`),
    );
  });
}

/** In the detached child: tell the waiting parent how startup went. */
function reportStatus(line: string): void {
  try {
    fs.writeSync(STATUS_FD, `${line}\n`);
    fs.closeSync(STATUS_FD);
  } catch {
    // parent already gone
  }
}

/**
 * Cyrus's detach_tty: start the daemon in a new session with stdio on
 * /dev/null and exit with its startup status (0 listening, 1 error, 2
 * another daemon running), so init scripts can tell.
 */
function detach(argv: string[]): Promise<number> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [...process.execArgv, process.argv[1] ?? '', ...argv], {
      detached: true,
      stdio: ['ignore', 'ignore', 'ignore', 'pipe'],
      env: { ...process.env, [CHILD_ENV]: '1' },
    });
    let status = '';
    const pipe = child.stdio[STATUS_FD] as NodeJS.ReadableStream;
    pipe.setEncoding('utf8');
    pipe.on('data', (d: string) => (status += d));
    const finish = (): void => {
      const line = status.trim();
      if (line === 'OK') {
        child.unref();
        resolve(0);
        return;
      }
      const m = /^ERR (\d+) (.*)$/s.exec(line);
      process.stderr.write(`saslauthd-ts: ${m ? m[2] : 'daemon exited during startup'}\n`);
      resolve(m ? Number(m[1]) : 1);
    };
    pipe.on('end', finish);
    child.on('error', (err) => {
      process.stderr.write(`saslauthd-ts: cannot start daemon: ${err.message}\n`);
      resolve(1);
    });
  });
}
