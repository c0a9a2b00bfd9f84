// --metrics ADDR: where the Prometheus endpoint listens. A port alone means
// loopback (127.0.0.1), never every interface, which is what a bare port
// means to listen(2) and to most exporters; any other host must be written
// out, as an IP address, so nobody exposes the daemon's traffic figures to
// the network by accident (and no name is resolved at startup). An absolute
// path is a UNIX socket.
import net from 'node:net';

export type MetricsAddress = { kind: 'tcp'; host: string; port: number; loopback: boolean } | { kind: 'unix'; path: string };

/** How the address is shown in logs, errors and --check: 127.0.0.1:9464, [::1]:9464, /run/x.sock. */
export function describeAddress(a: MetricsAddress): string {
  if (a.kind === 'unix') return a.path;
  return `${net.isIPv6(a.host) ? `[${a.host}]` : a.host}:${a.port}`;
}

function isLoopbackIp(host: string): boolean {
  if (net.isIPv4(host)) return host.startsWith('127.');
  return host === '::1' || /^::ffff:127\./i.test(host);
}

/** The address, or why not (the caller names the flag). */
export function parseMetricsAddress(value: string): MetricsAddress | string {
  const v = value.trim();
  if (v === '') return 'is empty; give a port (9464), host:port (127.0.0.1:9464) or an absolute socket path';
  if (v.startsWith('/')) {
    if (v.endsWith('/')) return 'names a directory; give the socket file, e.g. /run/saslauthd-ts/metrics.sock';
    // sockaddr_un.sun_path holds 108 bytes, NUL included.
    if (Buffer.byteLength(v) > 107) return 'is longer than a UNIX socket path may be (107 bytes)';
    return { kind: 'unix', path: v };
  }
  let host = '127.0.0.1';
  let portText = v;
  const m = /^(?:\[([^\]]+)\]|([^:[\]]+)):(\d+)$/.exec(v);
  if (m !== null) {
    host = m[1] ?? m[2] ?? '';
    portText = m[3] ?? '';
    if (host === 'localhost') host = '127.0.0.1';
    else if (m[1] !== undefined ? !net.isIPv6(host) : !net.isIPv4(host)) {
      return m[1] !== undefined
        ? `has '${host}' between brackets, which is not an IPv6 address`
        : `has host '${host}', which is not an IP address; give an address (127.0.0.1, [::1], 0.0.0.0) or localhost`;
    }
  } else if (!/^\d+$/.test(v)) {
    if (v.includes('/')) return 'is a relative path; a UNIX socket path must be absolute';
    return 'is not a port, host:port or absolute socket path (e.g. 9464, 127.0.0.1:9464, [::1]:9464, /run/saslauthd-ts/metrics.sock)';
  }
  const port = Number(portText);
  if (!Number.isInteger(port) || port < 1 || port > 65535) return `has port ${portText}, outside 1-65535`;
  return { kind: 'tcp', host, port, loopback: isLoopbackIp(host) };
}
