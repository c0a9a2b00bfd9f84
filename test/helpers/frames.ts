// Frame builders and a raw socket client for protocol-level tests: control
// over every byte and every write, which the real clients do not give.
import net from 'node:net';
import { countedString, encodeRequest, type RequestFields } from '../../src/protocol/encoder';

export { countedString, encodeRequest };

export function field(value: string | Buffer): Buffer {
  return countedString(value);
}

/** A length prefix claiming n bytes, without the bytes. */
export function lengthOnly(n: number): Buffer {
  const b = Buffer.alloc(2);
  b.writeUInt16BE(n, 0);
  return b;
}

export interface RawResult {
  /** All bytes the daemon sent before closing (or before the timeout). */
  bytes: Buffer;
  /** True if the daemon closed its side; false if we gave up waiting. */
  closedByServer: boolean;
  /** Milliseconds from connect to the daemon's EOF (or the timeout). */
  elapsedMs: number;
}

/**
 * Connect, send each chunk as a separate write (with delayMs between), then
 * read until the server sends EOF or timeoutMs passes. With closeAfterSend the
 * client ends its side after the last chunk.
 */
export function rawExchange(
  socketPath: string,
  chunks: Buffer[],
  opts: { delayMs?: number; timeoutMs?: number; closeAfterSend?: boolean; destroyAfterSend?: boolean } = {},
): Promise<RawResult> {
  return new Promise((resolve, reject) => {
    const started = Date.now();
    const s = net.connect(socketPath);
    const got: Buffer[] = [];
    let finished = false;
    const finish = (closedByServer: boolean): void => {
      if (finished) return;
      finished = true;
      clearTimeout(timer);
      s.destroy();
      resolve({ bytes: Buffer.concat(got), closedByServer, elapsedMs: Date.now() - started });
    };
    const timer = setTimeout(() => finish(false), opts.timeoutMs ?? 5000);
    s.on('data', (d: Buffer) => got.push(d));
    s.on('end', () => finish(true));
    s.on('close', () => finish(true));
    s.on('error', (err: NodeJS.ErrnoException) => {
      if (err.code === 'EPIPE' || err.code === 'ECONNRESET') finish(true);
      else if (!finished) {
        finished = true;
        clearTimeout(timer);
        reject(err);
      }
    });
    s.on('connect', () => void send());
    const send = async (): Promise<void> => {
      for (const [i, c] of chunks.entries()) {
        if (i > 0 && opts.delayMs) await new Promise((r) => setTimeout(r, opts.delayMs));
        if (s.destroyed) return;
        s.write(c);
      }
      if (opts.destroyAfterSend) {
        s.destroy();
        finish(false);
      } else if (opts.closeAfterSend) s.end();
    };
  });
}

export function reply(text: string): Buffer {
  return countedString(text);
}

export function request(f: RequestFields): Buffer {
  return encodeRequest(f);
}
