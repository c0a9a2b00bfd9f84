// The one line `systemctl status` shows under "Status:": authentication
// requests answered, how many failed (anything but OK) and how many of those
// because the mechanism could not decide (unavailable or timed out), and each LDAP or IMAP server's state, e.g.
//   serving: 1234 requests, 56 failed, 2 unavailable; ldap ldap://a/ up, ldap://b/ down
// Built from the same counters as /metrics, sent through systemd-notify at
// most once a second and only when it changed (an idle daemon sends nothing).
import { labelValue, type Snapshot } from './registry';
import type { NotifyResult } from '../server/systemd';

export const STATUS_INTERVAL_MS = 1000;

/** The status line for a (merged) service snapshot. */
export function statusLine(mech: string, snap: Snapshot): string {
  let total = 0;
  let failed = 0;
  let unavailable = 0;
  for (const s of snap.find((f) => f.name === 'saslauthd_requests_total')?.series ?? []) {
    if (!('value' in s)) continue;
    const result = labelValue(s.labels, 'result');
    // Frames that never were requests (health probes' empty logins among them) are not counted here.
    if (result === 'protocol_error') continue;
    total += s.value;
    if (result !== 'ok') failed += s.value;
    if (result === 'unavailable' || result === 'timeout') unavailable += s.value;
  }
  const servers = (snap.find((f) => f.name === 'saslauthd_backend_up')?.series ?? []).flatMap((s) =>
    'value' in s ? [`${labelValue(s.labels, 'server') ?? '?'} ${s.value === 1 ? 'up' : 'down'}`] : [],
  );
  const plural = (n: number, one: string, many: string): string => `${n} ${n === 1 ? one : many}`;
  const figures = `serving: ${plural(total, 'request', 'requests')}, ${failed} failed, ${unavailable} unavailable`;
  return `${figures}; ${servers.length > 0 ? `${mech} ${servers.join(', ')}` : `mechanism ${mech}`}`;
}

export interface StatusOptions {
  mech: string;
  /** The service counters (no scrape-only collectors: this runs every second). */
  read(): Promise<Snapshot>;
  send(line: string): Promise<NotifyResult>;
  onError?(detail: string): void;
  intervalMs?: number;
}

/** Sends the status line when it changes, at most once per interval, one send at a time. */
export class StatusLine {
  private timer: NodeJS.Timeout | undefined;
  private busy: Promise<void> | undefined;
  private last: string | undefined;
  private warned = false;

  constructor(private readonly opts: StatusOptions) {}

  start(): void {
    this.timer = setInterval(() => this.tick(), this.opts.intervalMs ?? STATUS_INTERVAL_MS);
    this.timer.unref();
  }

  private tick(): void {
    // A slow systemd-notify (a busy manager) delays the next line; it never stacks them.
    if (this.busy !== undefined) return;
    this.busy = (async () => {
      const line = statusLine(this.opts.mech, await this.opts.read());
      if (line === this.last) return;
      const r = await this.opts.send(line);
      if (r.sent) this.last = line;
      else if (r.reason === 'failed' && !this.warned) {
        this.warned = true; // once: the journal need not hear it every second
        this.opts.onError?.(r.detail ?? 'systemd-notify failed');
      }
    })()
      .catch((err: unknown) => this.opts.onError?.((err as Error).message))
      .finally(() => (this.busy = undefined));
  }

  /** No more lines; resolves once one being sent has gone (so STOPPING=1 comes after it). */
  async stop(): Promise<void> {
    clearInterval(this.timer);
    this.timer = undefined;
    await this.busy;
  }
}
