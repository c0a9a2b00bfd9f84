// Readiness for systemd's Type=notify: once the socket is listening, tell the
// service manager through $NOTIFY_SOCKET, so units ordered After= us (Postfix)
// never start against a socket that is not there yet.
//
// Node has no AF_UNIX datagram sockets, so the message is sent by
// systemd-notify(1), which waits until systemd has processed it (no
// --no-block): the sender is still alive when systemd looks up its cgroup.
// Because the sender is our child, not the main PID, the unit needs
// NotifyAccess=all. Without $NOTIFY_SOCKET (not under systemd) this is a no-op.
import { execFile } from 'node:child_process';

export const SYSTEMD_NOTIFY = 'systemd-notify';

export type NotifyResult = { sent: true } | { sent: false; reason: 'no-notify-socket' | 'failed'; detail?: string };

export interface NotifyOptions {
  env?: NodeJS.ProcessEnv;
  /** Give up on systemd-notify after this long. */
  timeoutMs?: number;
  /**
   * Do not wait for the service manager to process the message. Racy: if
   * systemd-notify has exited by then, systemd cannot tell which unit sent it.
   */
  noBlock?: boolean;
  /** Path or name of the systemd-notify binary (tests). */
  command?: string;
}

/** Send sd_notify(3) assignments such as READY=1 or STATUS=... */
export function sdNotify(assignments: string[], opts: NotifyOptions = {}): Promise<NotifyResult> {
  const env = opts.env ?? process.env;
  const socket = env.NOTIFY_SOCKET;
  if (socket === undefined || socket === '') return Promise.resolve({ sent: false, reason: 'no-notify-socket' });
  const args = [...(opts.noBlock ? ['--no-block'] : []), ...assignments];
  return new Promise((resolve) => {
    execFile(
      opts.command ?? SYSTEMD_NOTIFY,
      args,
      { env, timeout: opts.timeoutMs ?? 10_000, encoding: 'utf8' },
      (err, _stdout, stderr) => {
        if (err) {
          const detail = (stderr.trim() || err.message).split('\n')[0] ?? err.message;
          resolve({ sent: false, reason: 'failed', detail });
        } else resolve({ sent: true });
      },
    );
  });
}

/** READY=1 plus a status line for `systemctl status`. */
export function notifyReady(status: string, opts: NotifyOptions = {}): Promise<NotifyResult> {
  return sdNotify(['READY=1', `STATUS=${status}`], opts);
}

/** STOPPING=1: systemd shows "deactivating" while in-flight requests drain. */
export function notifyStopping(status: string, opts: NotifyOptions = {}): Promise<NotifyResult> {
  return sdNotify(['STOPPING=1', `STATUS=${status}`], opts);
}

/** A STATUS= line only (e.g. after a SIGHUP reload). */
export function notifyStatus(status: string, opts: NotifyOptions = {}): Promise<NotifyResult> {
  return sdNotify([`STATUS=${status}`], opts);
}
