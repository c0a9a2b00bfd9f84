// Scraping the daemon's /metrics (TCP or UNIX socket) and reading samples,
// and a stand-in for systemd's notification socket that records what
// systemd-notify sends.
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';

export type Endpoint = { socketPath: string } | { port: number; host?: string };

export interface Scrape {
  status: number;
  headers: http.IncomingHttpHeaders;
  text: string;
  /** 'name{labels}' (as written) -> value. */
  samples: Map<string, number>;
}

export function parseSamples(text: string): Map<string, number> {
  const samples = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const i = line.lastIndexOf(' ');
    samples.set(line.slice(0, i), Number(line.slice(i + 1)));
  }
  return samples;
}

export function scrape(at: Endpoint, urlPath = '/metrics', method = 'GET', timeoutMs = 10_000): Promise<Scrape> {
  return new Promise((resolve, reject) => {
    const target = 'socketPath' in at ? { socketPath: at.socketPath } : { host: at.host ?? '127.0.0.1', port: at.port };
    const req = http.request({ ...target, path: urlPath, method, timeout: timeoutMs }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (text += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, text, samples: parseSamples(text) }));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error(`no answer from /metrics within ${timeoutMs} ms`)));
    req.on('error', reject);
    req.end();
  });
}

/** The value of one sample; fails loudly when it is not there. */
export function sample(s: Scrape, key: string): number {
  const v = s.samples.get(key);
  if (v === undefined) throw new Error(`no sample ${key} in:\n${s.text}`);
  return v;
}

export interface NotifyReceiver {
  socket: string;
  /** Each datagram received, newlines shown as spaces. */
  messages(): string[];
  /** When each message came (ms, monotonic clock), in the same order. */
  times(): number[];
  /** Waits until a message matches (or throws after timeoutMs). */
  waitFor(re: RegExp, timeoutMs?: number): Promise<string>;
  close(): void;
}

/**
 * A datagram socket where systemd's would be (Node cannot bind one: python3
 * does). systemd-notify waits for the manager to have read its message
 * (BARRIER=1 with a descriptor to close): receiving closes that descriptor.
 */
export function notifyReceiver(socket: string): Promise<NotifyReceiver> {
  const script = [
    'import socket, sys, os, array, time',
    `s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM); s.bind(${JSON.stringify(socket)})`,
    'print("ready", flush=True)',
    'while True:',
    '    data, anc, _f, _a = s.recvmsg(65536, socket.CMSG_SPACE(16 * 4))',
    '    for level, kind, payload in anc:',
    '        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:',
    '            fds = array.array("i"); fds.frombytes(payload[:len(payload) - len(payload) % 4])',
    '            for fd in fds: os.close(fd)',
    // systemd-notify's own BARRIER=1 message is protocol, not what the daemon said.
    '    if data.strip() == b"BARRIER=1": continue',
    '    print("%d %s" % (time.monotonic() * 1000, data.decode(errors="replace").replace("\\n", " ").strip()), flush=True)',
  ].join('\n');
  const proc: ChildProcess = spawn('python3', ['-c', script], { stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  const received = (): string[] =>
    out
      .split('\n')
      .slice(1)
      .filter((l) => l !== '');
  const lines = (): string[] => received().map((l) => l.slice(l.indexOf(' ') + 1));
  return new Promise((resolve, reject) => {
    proc.once('error', reject);
    proc.stdout!.on('data', (d: Buffer) => {
      const was = out;
      out += d.toString();
      if (!was.startsWith('ready\n') && out.startsWith('ready\n')) {
        resolve({
          socket,
          messages: lines,
          times: () => received().map((l) => Number(l.slice(0, l.indexOf(' ')))),
          async waitFor(re, timeoutMs = 10_000) {
            const until = Date.now() + timeoutMs;
            for (;;) {
              const hit = lines().find((l) => re.test(l));
              if (hit !== undefined) return hit;
              if (Date.now() > until)
                throw new Error(`no notification matching ${re} within ${timeoutMs} ms; got:\n${lines().join('\n')}`);
              await new Promise((r) => setTimeout(r, 50));
            }
          },
          close() {
            proc.kill('SIGKILL');
            fs.rmSync(socket, { force: true });
          },
        });
      }
    });
  });
}
