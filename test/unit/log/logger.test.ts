// The logger's destinations: the syslog socket (datagrams, never blocking)
// and the text form of a line.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createLogger, severity, textOf } from '../../../src/log/logger';

let dir: string;
before(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'logger-'));
});
after(() => fs.rmSync(dir, { recursive: true, force: true }));

/** A syslog daemon stand-in: a datagram socket that prints what it gets, or (stalled) never reads. */
function receiver(socket: string, stalled: boolean): Promise<{ proc: ChildProcess; lines: () => string[] }> {
  const script = [
    'import socket, sys, time',
    `s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM); s.bind(${JSON.stringify(socket)})`,
    'print("ready", flush=True)',
    stalled ? 'time.sleep(600)' : 'while True: print(s.recv(65536).decode(), flush=True)',
  ].join('\n');
  const proc = spawn('python3', ['-c', script], { stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  return new Promise((resolve) => {
    proc.stdout.on('data', (d: Buffer) => {
      out += d.toString();
      if (out.startsWith('ready\n'))
        resolve({
          proc,
          lines: () =>
            out
              .split('\n')
              .slice(1)
              .filter((l) => l !== ''),
        });
    });
  });
}

test('text lines to syslog carry the auth facility and the line’s severity', async () => {
  const socket = path.join(dir, 'log-ok');
  const r = await receiver(socket, false);
  try {
    const logger = createLogger({ level: 'info', destination: 'syslog', format: 'text', syslogPath: socket });
    logger.resultLog.info(
      { user: 'bob' },
      'auth failure: [user=bob] [service=smtp] [realm=] [mech=shadow] [reason=Incorrect password]',
    );
    logger.log.warn('ldap server ldap://x/ failed');
    for (let i = 0; i < 50 && r.lines().length < 2; i++) await new Promise((res) => setTimeout(res, 20));
    const [a, b] = r.lines();
    assert.match(
      a ?? '',
      /^<38>[A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d saslauthd-ts\[\d+\]: auth failure: \[user=bob\] \[service=smtp\] \[realm=\] \[mech=shadow\] \[reason=Incorrect password\]$/,
    );
    assert.match(b ?? '', /^<36>.* saslauthd-ts\[\d+\]: ldap server ldap:\/\/x\/ failed$/);
  } finally {
    r.proc.kill();
  }
});

test('a stalled syslog daemon never blocks logging: lines are dropped and counted', async () => {
  const socket = path.join(dir, 'log-stalled');
  const r = await receiver(socket, true);
  try {
    const logger = createLogger({ level: 'info', destination: 'syslog', format: 'text', syslogPath: socket });
    // Far more than a datagram socket's queue holds: a blocking send would hang here.
    for (let i = 0; i < 20_000; i++) logger.log.info(`line ${i} ${'x'.repeat(200)}`);
    assert.ok(logger.dropped > 0, 'some lines were dropped');
    assert.ok(logger.dropped < 20_000, 'the queue took some');
  } finally {
    r.proc.kill();
  }
});

test('json lines to syslog are the pino objects', async () => {
  const socket = path.join(dir, 'log-json');
  const r = await receiver(socket, false);
  try {
    const logger = createLogger({ level: 'info', destination: 'syslog', format: 'json', syslogPath: socket });
    logger.log.error({ code: 'X' }, 'boom');
    for (let i = 0; i < 50 && r.lines().length < 1; i++) await new Promise((res) => setTimeout(res, 20));
    const m = /^<35>.* saslauthd-ts\[\d+\]: (\{.*\})$/.exec(r.lines()[0] ?? '');
    assert.ok(m, r.lines()[0]);
    assert.equal((JSON.parse(m[1]!) as { msg: string; code: string }).code, 'X');
  } finally {
    r.proc.kill();
  }
});

test('pino levels map to syslog severities', () => {
  assert.deepEqual([60, 50, 40, 30, 20, 10].map(severity), [2, 3, 4, 6, 7, 7]);
});

test('the text of a line is its message on one line, with an error’s message when it lacks it', () => {
  assert.deepEqual(textOf('{"level":50,"err":{"message":"EACCES"},"msg":"cannot open"}'), {
    severity: 3,
    text: 'cannot open: EACCES',
  });
  assert.deepEqual(textOf('{"level":30,"msg":"a\\nb"}'), { severity: 6, text: 'a b' });
});
