// A budget for lines that a flood can repeat by the thousand (a client that
// drips and is cut at the read deadline, one that connects and closes, a
// frame with an oversized field): each kind gets a few lines an interval,
// and the rest are counted and summarised once the interval is over.
//   warning: 7912 more "request not received within the read timeout" in the last 60 s, not logged one by one
import type pino from 'pino';

interface Kind {
  logged: number;
  suppressed: number;
  level: pino.Level;
}

export class LineBudget {
  private kinds = new Map<string, Kind>();
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly log: pino.Logger,
    private readonly perInterval = 20,
    private readonly intervalMs = 60_000,
  ) {}

  start(): void {
    this.timer = setInterval(() => this.flush(), this.intervalMs);
    this.timer.unref();
  }

  stop(): void {
    clearInterval(this.timer);
    this.flush();
  }

  /** Write the line, or count it once this kind's budget for the interval is spent. */
  line(level: pino.Level, kind: string, fields: Record<string, unknown>, message: string): void {
    let k = this.kinds.get(kind);
    if (k === undefined) {
      k = { logged: 0, suppressed: 0, level };
      this.kinds.set(kind, k);
    }
    if (k.logged >= this.perInterval) {
      k.suppressed++;
      return;
    }
    k.logged++;
    this.log[level](fields, message);
  }

  flush(): void {
    const secs = Math.round(this.intervalMs / 1000);
    for (const [kind, k] of this.kinds) {
      if (k.suppressed > 0) {
        this.log[k.level](
          { suppressed: k.suppressed },
          `${k.suppressed} more "${kind}" in the last ${secs} s, not logged one by one`,
        );
      }
    }
    this.kinds = new Map();
  }
}
