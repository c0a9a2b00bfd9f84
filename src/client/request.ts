// A minimal saslauthd client: one connection, one request, one reply. Used by
// testsaslauthd-ts and the tests.
import net from 'node:net';
import { decodeReply, encodeRequest, type RequestFields } from '../protocol/encoder';

export class ClientError extends Error {
  constructor(
    message: string,
    readonly code: 'connect' | 'write' | 'size read' | 'bad response' | 'read' | 'timeout',
  ) {
    super(message);
  }
}

export function sendRequest(socketPath: string, fields: RequestFields, timeoutMs = 30_000): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = net.connect(socketPath);
    let buf = Buffer.alloc(0);
    let connected = false;
    let settled = false;
    const done = (err: ClientError | undefined, text?: string): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      s.destroy();
      if (err) reject(err);
      else resolve(text ?? '');
    };
    const timer = setTimeout(() => done(new ClientError(`no reply within ${timeoutMs} ms`, 'timeout')), timeoutMs);
    s.on('connect', () => {
      connected = true;
      s.write(encodeRequest(fields));
    });
    s.on('data', (chunk: Buffer) => {
      buf = Buffer.concat([buf, chunk]);
      const r = decodeReply(buf);
      if (r) done(undefined, r.text);
    });
    s.on('end', () => {
      if (buf.length < 2) done(new ClientError('size read failed', 'size read'));
      else done(new ClientError('read failed', 'read'));
    });
    s.on('error', (err: NodeJS.ErrnoException) => {
      if (!connected) done(new ClientError(`connect() : ${describeErrno(err)}`, 'connect'));
      else done(new ClientError(`write failed: ${err.message}`, 'write'));
    });
  });
}

function describeErrno(err: NodeJS.ErrnoException): string {
  switch (err.code) {
    case 'ENOENT':
      return 'No such file or directory';
    case 'EACCES':
      return 'Permission denied';
    case 'ECONNREFUSED':
      return 'Connection refused';
    default:
      return err.message;
  }
}
