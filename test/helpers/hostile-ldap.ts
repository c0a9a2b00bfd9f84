// A hostile LDAP server for the tests where slapd cannot misbehave: it answers
// every bind with success and every other request by streaming bytes until
// the client goes away (or a safety cap is reached): either one search entry
// whose BER length promises 2 GiB, or plain garbage. Writes honour
// back-pressure, so it sends only as fast as the client reads.
import net from 'node:net';

export type Stream = 'endless-entry' | 'garbage';

export interface HostileLdapServer {
  port: number;
  /** Connections accepted so far. */
  accepted(): number;
  /** Bytes written to each connection, in order of arrival. */
  written(): number[];
  /** Connections the client has closed. */
  closedByClient(): number;
  close(): Promise<void>;
}

/** Never write more than this to one connection, whatever the client does. */
export const SAFETY_CAP_BYTES = 64 * 1024 * 1024;
const CHUNK = Buffer.alloc(64 * 1024, 0x41);

/** BER length octets. */
function berLength(n: number): Buffer {
  if (n < 0x80) return Buffer.from([n]);
  const bytes: number[] = [];
  for (let v = n; v > 0; v = Math.floor(v / 256)) bytes.unshift(v & 0xff);
  return Buffer.from([0x80 | bytes.length, ...bytes]);
}

function tlv(tag: number, content: Buffer): Buffer {
  return Buffer.concat([Buffer.from([tag]), berLength(content.length), content]);
}

function integer(n: number): Buffer {
  const bytes: number[] = [];
  let v = n;
  do {
    bytes.unshift(v & 0xff);
    v = Math.floor(v / 256);
  } while (v > 0);
  if ((bytes[0] ?? 0) & 0x80) bytes.unshift(0);
  return tlv(0x02, Buffer.from(bytes));
}

/** LDAPMessage { id, BindResponse { success, "", "" } }. */
function bindSuccess(messageId: number): Buffer {
  const result = Buffer.concat([tlv(0x0a, Buffer.from([0])), tlv(0x04, Buffer.alloc(0)), tlv(0x04, Buffer.alloc(0))]);
  return tlv(0x30, Buffer.concat([integer(messageId), tlv(0x61, result)]));
}

/** The head of LDAPMessage { id, SearchResultEntry ... } claiming 2 GiB that never come. */
function endlessEntryHead(messageId: number): Buffer {
  const id = integer(messageId);
  return Buffer.concat([
    Buffer.from([0x30, 0x84, 0x7f, 0xff, 0xff, 0xff]),
    id,
    Buffer.from([0x64, 0x84, 0x7f, 0xff, 0xff, 0x00]),
  ]);
}

interface Request {
  messageId: number;
  op: number;
}

/** Reads whole LDAPMessages off buf; returns them and the bytes consumed. */
function readRequests(buf: Buffer): { requests: Request[]; used: number } {
  const requests: Request[] = [];
  let at = 0;
  for (;;) {
    if (buf.length < at + 2) break;
    let len = buf[at + 1] ?? 0;
    let head = 2;
    if (len & 0x80) {
      const n = len & 0x7f;
      if (buf.length < at + 2 + n) break;
      len = 0;
      for (let i = 0; i < n; i++) len = len * 256 + (buf[at + 2 + i] ?? 0);
      head += n;
    }
    if (buf.length < at + head + len) break;
    const body = buf.subarray(at + head, at + head + len);
    // body: INTEGER messageId, then the operation's tag.
    const idLen = body[1] ?? 0;
    let messageId = 0;
    for (let i = 0; i < idLen; i++) messageId = messageId * 256 + (body[2 + i] ?? 0);
    requests.push({ messageId, op: body[2 + idLen] ?? 0 });
    at += head + len;
  }
  return { requests, used: at };
}

export async function startHostileLdapServer(stream: Stream): Promise<HostileLdapServer> {
  const sockets = new Set<net.Socket>();
  const written: number[] = [];
  let closedByClient = 0;
  const server = net.createServer((sock) => {
    sockets.add(sock);
    const index = written.push(0) - 1;
    let buf = Buffer.alloc(0);
    let streaming = false;
    let stopped = false;
    sock.on('error', () => undefined);
    sock.on('close', () => {
      sockets.delete(sock);
      if (!stopped) closedByClient++;
    });
    const send = (b: Buffer): boolean => {
      written[index] = (written[index] ?? 0) + b.length;
      return sock.write(b);
    };
    const pump = (): void => {
      while (!sock.destroyed) {
        if ((written[index] ?? 0) >= SAFETY_CAP_BYTES) {
          stopped = true;
          return;
        }
        if (!send(CHUNK)) {
          sock.once('drain', pump);
          return;
        }
      }
    };
    sock.on('data', (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      const { requests, used } = readRequests(buf);
      buf = buf.subarray(used);
      for (const r of requests) {
        if (r.op === 0x60) {
          send(bindSuccess(r.messageId));
        } else if (r.op !== 0x42 && !streaming) {
          // Anything but a bind or an unbind: the endless answer.
          streaming = true;
          if (stream === 'endless-entry') send(endlessEntryHead(r.messageId));
          pump();
        }
      }
    });
  });
  const port = await new Promise<number>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve((server.address() as net.AddressInfo).port));
  });
  return {
    port,
    accepted: () => written.length,
    written: () => written.slice(),
    closedByClient: () => closedByClient,
    close: () => {
      for (const s of sockets) s.destroy();
      return new Promise((resolve) => server.close(() => resolve()));
    },
  };
}
