// Bounded failure logging. Cyrus logs one line per failed attempt; under a
// guessing flood that is thousands of lines a second, which buries the lines
// that matter and can stall the log daemon. Here each login gets its first
// few failure lines within an interval, the whole daemon a budget of lines
// per second, and the rest are counted and summarised once per interval:
//   auth failures: [user=bob] [service=smtp] [realm=] [mech=shadow]: 412 more in the last 60 s, not logged one by one
//   auth failures: 9120 more in the last 60 s from 8544 logins, not logged one by one (over 50 lines/s)
import type pino from 'pino';

export interface FailureLineOptions {
  /** Lines per login and interval before it is only counted. */
  perLogin: number;
  /** Lines per second for the whole daemon before failures are only counted. */
  perSecond: number;
  intervalMs: number;
  /** Logins remembered per interval (bounds memory under a spray of distinct logins). */
  maxLogins: number;
}

export const DEFAULT_FAILURE_LINES: FailureLineOptions = {
  perLogin: 5,
  perSecond: 50,
  intervalMs: 60_000,
  maxLogins: 10_000,
};

interface PerLogin {
  logged: number;
  suppressed: number;
  /** The summary line's subject ("[user=bob] [service=smtp] [realm=] [mech=shadow]"). */
  where: string;
}

export class FailureLines {
  private logins = new Map<string, PerLogin>();
  private tokens: number;
  private lastRefill: number;
  /** Suppressed by the daemon-wide budget, and the logins they came from. */
  private overBudget = 0;
  private overBudgetLogins = new Set<string>();
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly log: pino.Logger,
    private readonly opts: FailureLineOptions = DEFAULT_FAILURE_LINES,
    private readonly now: () => number = Date.now,
  ) {
    this.tokens = opts.perSecond;
    this.lastRefill = now();
  }

  start(): void {
    this.timer = setInterval(() => this.flush(), this.opts.intervalMs);
    this.timer.unref();
  }

  stop(): void {
    clearInterval(this.timer);
    this.flush();
  }

  /** Should this failure get its own line? If not, it is counted for the summary. */
  admit(loginKey: string, where: string): boolean {
    let e = this.logins.get(loginKey);
    if (e === undefined) {
      if (this.logins.size >= this.opts.maxLogins) return this.budget(loginKey);
      e = { logged: 0, suppressed: 0, where };
      this.logins.set(loginKey, e);
    }
    if (e.logged >= this.opts.perLogin) {
      e.suppressed++;
      return false;
    }
    if (!this.budget(loginKey)) return false;
    e.logged++;
    return true;
  }

  private budget(loginKey: string): boolean {
    const now = this.now();
    this.tokens = Math.min(this.opts.perSecond, this.tokens + ((now - this.lastRefill) * this.opts.perSecond) / 1000);
    this.lastRefill = now;
    if (this.tokens >= 1) {
      this.tokens--;
      return true;
    }
    this.overBudget++;
    if (this.overBudgetLogins.size < this.opts.maxLogins) this.overBudgetLogins.add(loginKey);
    return false;
  }

  /** Write the summaries of the interval and start a new one. */
  flush(): void {
    const secs = Math.round(this.opts.intervalMs / 1000);
    for (const e of this.logins.values()) {
      if (e.suppressed === 0) continue;
      this.log.info(
        { suppressed: e.suppressed },
        `auth failures: ${e.where}: ${e.suppressed} more in the last ${secs} s, not logged one by one`,
      );
    }
    if (this.overBudget > 0) {
      this.log.info(
        { suppressed: this.overBudget, logins: this.overBudgetLogins.size },
        `auth failures: ${this.overBudget} more in the last ${secs} s from ${this.overBudgetLogins.size}` +
          `${this.overBudgetLogins.size >= this.opts.maxLogins ? ' or more' : ''} logins, not logged one by one (over ${this.opts.perSecond} lines/s)`,
      );
    }
    this.logins = new Map();
    this.overBudget = 0;
    this.overBudgetLogins = new Set();
  }
}
