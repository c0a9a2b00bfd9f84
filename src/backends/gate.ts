// A bound on the work a mechanism has in flight (LDAP and IMAP connections),
// with the throttle's queueing rules, the same as the native pools' (pool.h):
// known-good requests wait ahead of all others, and ordinary ones that have
// waited past the shedding bound leave the queue unrun.

export type GateResult = 'go' | 'shed' | 'aborted';

export interface GateTicket {
  high?: boolean | undefined;
  /** Ordinary work waiting longer than this is shed (0 or undefined: never). */
  shedAfterMs?: number | undefined;
}

interface Waiter {
  go(): void;
  since: number;
}

export class PriorityGate {
  private active = 0;
  private readonly high: Waiter[] = [];
  private readonly normal: Waiter[] = [];

  constructor(private readonly limit: number) {}

  get waiting(): number {
    return this.high.length + this.normal.length;
  }

  get running(): number {
    return this.active;
  }

  /** Resolves 'go' when the caller may start (it must then call leave()), 'shed' or 'aborted' otherwise. */
  enter(signal: AbortSignal, ticket: GateTicket = {}): Promise<GateResult> {
    if (signal.aborted) return Promise.resolve('aborted');
    if (this.active < this.limit && this.waiting === 0) {
      this.active++;
      return Promise.resolve('go');
    }
    const shedAfter = ticket.high ? 0 : (ticket.shedAfterMs ?? 0);
    const now = performance.now();
    const oldest = this.normal[0];
    if (shedAfter > 0 && oldest !== undefined && now - oldest.since > shedAfter) {
      return Promise.resolve('shed'); // ordinary work already waits past the bound: this would too
    }
    return new Promise<GateResult>((resolve) => {
      const queue = ticket.high ? this.high : this.normal;
      let timer: NodeJS.Timeout | undefined;
      const done = (r: GateResult): void => {
        clearTimeout(timer);
        signal.removeEventListener('abort', onAbort);
        const i = queue.indexOf(waiter);
        if (i >= 0) queue.splice(i, 1);
        resolve(r);
      };
      const waiter: Waiter = {
        since: now,
        go: () => {
          this.active++;
          done('go');
        },
      };
      const onAbort = (): void => done('aborted');
      signal.addEventListener('abort', onAbort, { once: true });
      if (shedAfter > 0) timer = setTimeout(() => done('shed'), shedAfter);
      queue.push(waiter);
    });
  }

  leave(): void {
    this.active--;
    (this.high[0] ?? this.normal[0])?.go();
  }
}
