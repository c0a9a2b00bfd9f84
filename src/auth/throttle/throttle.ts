// The brute-force throttle: SMTP AUTH is the most guessed login on the
// Internet, and a guess costs this daemon a whole password hash. Three rules,
// for every mechanism:
//
// * Known-good first. Credentials that have succeeded before (32 bits of
//   their fingerprint, see store.ts) skip every queue's ordinary work and are
//   never delayed, refused or shed. A guesser colliding with one by chance
//   gains a place in the queue, not a login: the mechanism still decides.
// * Per-login penalty. Past a few distinct wrong passwords within a window,
//   each further refusal is held back by a delay that doubles up to a cap;
//   past more, attempts are refused without asking the mechanism for a
//   cool-off period (still after the delay: a tarpit, not a faster "no").
//   Repeating one wrong password (a phone with an old one) does not escalate.
//   With a client address, the same per address and per (login, address);
//   the login's own count then only delays, so a user can still get in from
//   a clean address while others attack the login.
// * Shedding. Ordinary work that has waited past a bound in a queue is
//   answered with the mechanism's wrong-password text, unrun (pool.h,
//   backends' gates).
//
// The throttle changes when a refusal is sent, never its bytes: a refusal
// without the mechanism carries the mechanism's own wrong-password text.
import type pino from 'pino';
import { shown } from '../../log/display';
import type { ThrottleStore, Tracked } from './store';

export interface ThrottleConfig {
  /** Failures are counted within this long of the last attempt. */
  windowMs: number;
  /** Failures answered without delay. */
  freeFailures: number;
  /** Failures past which attempts are refused without the mechanism. */
  refuseAfter: number;
  /** The first delay; doubles with each further failure. */
  delayMs: number;
  maxDelayMs: number;
  /** How long attempts are refused once refuseAfter is passed. */
  cooloffMs: number;
  /** Ordinary work queued longer than this is shed (0: never). */
  shedAfterMs: number;
  /** The delay before a shed attempt's refusal. */
  shedDelayMs: number;
}

export const DEFAULT_THROTTLE: ThrottleConfig = {
  windowMs: 600_000,
  freeFailures: 5,
  refuseAfter: 20,
  delayMs: 2_000,
  maxDelayMs: 15_000,
  cooloffMs: 900_000,
  shedAfterMs: 5_000,
  shedDelayMs: 1_000,
};

export interface Attempt {
  /** After the -r join; Latin-1. */
  login: string;
  realm: string;
  /** The client's address without its port, when the request carries one. */
  addr?: string;
  /** 32 bits of the credentials' fingerprint. */
  fp: number;
}

export type Admission =
  | {
      kind: 'run';
      knownGood: boolean;
      /** A refusal will be held back: the mechanism must not send it itself. */
      holdFailure: boolean;
      shedAfterMs: number;
      keys: Keys;
    }
  | { kind: 'refuse'; delayMs: number; reason: string };

interface Keys {
  all: string[];
  /** The keys whose count can refuse an attempt (not the login's own when an address is known). */
  refusing: string[];
}

/** The result of a checked attempt, as the throttle counts it. */
export type Settled = 'ok' | 'denied' | 'other';

type Subject = 'login' | 'address' | 'pair';

export class Throttle {
  private readonly inflight = new Map<string, number>();
  private sweeper: NodeJS.Timeout | undefined;
  /** Keys that entered a penalty or a cool-off since start (metrics: read, never reset). */
  readonly entered = { penalties: 0, cooloffs: 0 };

  constructor(
    readonly cfg: ThrottleConfig,
    private readonly store: ThrottleStore,
    private readonly log: pino.Logger,
    /** Queued ordinary work of these credentials can go first now (pool promotion). */
    private readonly onKnownGood: (fp: number) => void = () => undefined,
    private readonly now: () => number = Date.now,
  ) {}

  /** Expire state in the background and log the keys that leave a penalty that way. */
  start(): void {
    const every = Math.max(1_000, Math.min(60_000, Math.floor(this.cfg.windowMs / 4)));
    this.sweeper = setInterval(() => void this.sweep(), every);
    this.sweeper.unref();
  }

  stop(): void {
    clearInterval(this.sweeper);
  }

  /** Entries the store holds (metrics). */
  get size(): { knownGood: number; tracked: number } {
    return this.store.size;
  }

  async sweep(): Promise<void> {
    for (const { key } of await this.store.sweep(this.now())) {
      this.log.info(
        { throttle: 'leave', ...this.fields(key) },
        `throttle: ${this.describe(key)} leaves its penalty: no attempt for ${this.secs(this.cfg.windowMs)}`,
      );
    }
  }

  /** The penalty delay after `failures` distinct wrong passwords. */
  delayFor(failures: number): number {
    if (failures <= this.cfg.freeFailures) return 0;
    return Math.min(this.cfg.maxDelayMs, this.cfg.delayMs * 2 ** Math.min(30, failures - this.cfg.freeFailures - 1));
  }

  private keys(a: Attempt): Keys {
    const login = `u:${a.login}\0${a.realm}`;
    if (a.addr === undefined) return { all: [login], refusing: [login] };
    const addr = `a:${a.addr}`;
    const pair = `p:${a.addr}\0${a.login}\0${a.realm}`;
    return { all: [login, addr, pair], refusing: [addr, pair] };
  }

  /** Before the mechanism: run it (how), or refuse the attempt. */
  async admit(a: Attempt): Promise<Admission> {
    const keys = this.keys(a);
    const now = this.now();
    const { knownGood, states } = await this.store.admission(a.fp, keys.all, now);
    if (knownGood) {
      return { kind: 'run', knownGood: true, holdFailure: false, shedAfterMs: 0, keys };
    }
    let count = 0;
    let refusal: string | undefined;
    // A key refused on its count with no cool-off running (see below).
    let uncooled: { key: string; st: Tracked } | undefined;
    for (const [i, key] of keys.all.entries()) {
      let st = states[i];
      if (st !== undefined && st.cooloffUntil !== 0 && st.cooloffUntil <= now) {
        // Cooled off: one more wrong password starts the next cool-off.
        await this.store.setCooloff(key, 0, this.cfg.refuseAfter - 1);
        st = { ...st, cooloffUntil: 0, failures: this.cfg.refuseAfter - 1 };
        this.log.info(
          { throttle: 'leave-cooloff', ...this.fields(key) },
          `throttle: ${this.describe(key)} leaves its cool-off: attempts reach the mechanism again`,
        );
      }
      // Attempts still being checked only predict the delay: refusing on them
      // would turn concurrent logins of a busy account into refusals.
      count = Math.max(count, (st?.failures ?? 0) + (this.inflight.get(key) ?? 0));
      if (!keys.refusing.includes(key) || refusal !== undefined || st === undefined) continue;
      if (st.cooloffUntil > now) refusal = `${this.describe(key)} is cooling off`;
      else if (st.failures >= this.cfg.refuseAfter) {
        refusal = `${this.describe(key)} has ${st.failures} wrong passwords`;
        uncooled = { key, st };
      }
    }
    // Enough failures and no cool-off: they were counted elsewhere and each
    // place saw fewer (--workers: two workers each counting 3 of 4 before
    // they hear of the other's), so no failure here started the cool-off.
    // This refusal starts it, with its line, as the failure would have.
    if (uncooled !== undefined) await this.transitions(uncooled.key, uncooled.st.failures, uncooled.st, now);
    if (refusal !== undefined) {
      for (const key of keys.all) await this.store.touch(key, now);
      return { kind: 'refuse', delayMs: this.delayFor(Math.max(count + 1, this.cfg.refuseAfter + 1)), reason: refusal };
    }
    for (const key of keys.all) this.inflight.set(key, (this.inflight.get(key) ?? 0) + 1);
    return {
      kind: 'run',
      knownGood: false,
      holdFailure: this.delayFor(count + 1) > 0,
      shedAfterMs: this.cfg.shedAfterMs,
      keys,
    };
  }

  /**
   * After the mechanism: count the result. Returns how long the answer must
   * still be held back, counted from startedAt.
   */
  async settle(a: Attempt, adm: Admission & { kind: 'run' }, result: Settled, startedAt: number): Promise<number> {
    try {
      return await this.count(a, adm, result, startedAt);
    } finally {
      // Only once the result is counted: an attempt is always either still
      // in flight or among the failures (or both, for a moment, which only
      // errs towards the longer delay), never neither. Checks finish in any
      // order (a hashing thread can be preempted between answering its client
      // and reporting), so a later guess must never find the count one short.
      if (!adm.knownGood) {
        for (const key of adm.keys.all) {
          const n = (this.inflight.get(key) ?? 1) - 1;
          if (n > 0) this.inflight.set(key, n);
          else this.inflight.delete(key);
        }
      }
    }
  }

  private async count(a: Attempt, adm: Admission & { kind: 'run' }, result: Settled, startedAt: number): Promise<number> {
    const now = this.now();
    if (result === 'ok') {
      if (await this.store.addKnownGood(a.fp, now)) this.onKnownGood(a.fp);
      // A success clears the count of what it speaks for. Credentials that
      // were already known-good prove nothing about whoever else is guessing
      // this login (and clearing on them would hand a guesser a fresh set of
      // tries with every routine login of the owner); they still clear their
      // own address.
      const cleared = adm.knownGood ? adm.keys.all.filter((k) => !k.startsWith('u:')) : adm.keys.all;
      const was = await this.store.clear(cleared);
      cleared.forEach((key, i) => {
        const st = was[i];
        if (st !== undefined && (st.failures > this.cfg.freeFailures || st.cooloffUntil > now)) {
          this.log.info(
            { throttle: 'leave', ...this.fields(key) },
            `throttle: ${this.describe(key)} leaves its penalty: successful login`,
          );
        }
      });
      return 0;
    }
    if (result !== 'denied') return 0; // an outage or a timeout says nothing about the password
    if (adm.knownGood) {
      // The password was changed or the account locked: these credentials are not good any more.
      await this.store.removeKnownGood(a.fp);
      return 0;
    }
    let worst = 0;
    for (const key of adm.keys.all) {
      const { before, after } = await this.store.fail(key, a.fp, now);
      await this.transitions(key, before, after, now);
      // The other attempts of this key still being checked count too, as they
      // did when this one was admitted.
      worst = Math.max(worst, after.failures + (this.inflight.get(key) ?? 1) - 1);
    }
    return Math.max(0, this.delayFor(worst) - (now - startedAt));
  }

  /** One line when a key enters a penalty or a cool-off, not one per attempt. */
  private async transitions(key: string, was: number, st: Tracked, now: number): Promise<void> {
    if (was <= this.cfg.freeFailures && st.failures > this.cfg.freeFailures) {
      this.entered.penalties++;
      this.log.info(
        { throttle: 'penalty', failures: st.failures, ...this.fields(key) },
        `throttle: ${this.describe(key)} enters a penalty: ${st.failures} wrong passwords within ${this.secs(this.cfg.windowMs)}; ` +
          `refusals are delayed from ${this.secs(this.delayFor(st.failures))} up to ${this.secs(this.cfg.maxDelayMs)}`,
      );
    }
    if (st.failures >= this.cfg.refuseAfter && st.cooloffUntil <= now) {
      await this.store.setCooloff(key, now + this.cfg.cooloffMs);
      this.entered.cooloffs++;
      this.log.warn(
        { throttle: 'cooloff', failures: st.failures, ...this.fields(key) },
        `throttle: ${this.describe(key)} enters a cool-off: ${st.failures} wrong passwords; ` +
          `attempts are refused without asking the mechanism for ${this.secs(this.cfg.cooloffMs)}`,
      );
    }
  }

  private subject(key: string): { kind: Subject; user?: string; realm?: string; remote?: string } {
    const body = key.slice(2);
    if (key.startsWith('a:')) return { kind: 'address', remote: body };
    if (key.startsWith('p:')) {
      const [remote, user, realm] = body.split('\0');
      return { kind: 'pair', user: user ?? '', realm: realm ?? '', remote: remote ?? '' };
    }
    const [user, realm] = body.split('\0');
    return { kind: 'login', user: user ?? '', realm: realm ?? '' };
  }

  private fields(key: string): Record<string, string> {
    const s = this.subject(key);
    const out: Record<string, string> = { subject: s.kind };
    if (s.user !== undefined) out.user = shown(s.user);
    if (s.realm !== undefined) out.realm = shown(s.realm);
    if (s.remote !== undefined) out.remote = shown(s.remote);
    return out;
  }

  /** "login [user=bob] [realm=]", "address [remote=192.0.2.7]", "[user=bob] [realm=] from [remote=...]". */
  private describe(key: string): string {
    const s = this.subject(key);
    const who = s.user !== undefined ? `[user=${shown(s.user)}] [realm=${shown(s.realm ?? '')}]` : '';
    if (s.kind === 'address') return `address [remote=${shown(s.remote ?? '')}]`;
    if (s.kind === 'pair') return `login ${who} from [remote=${shown(s.remote ?? '')}]`;
    return `login ${who}`;
  }

  private secs(ms: number): string {
    return ms % 1000 === 0 ? `${ms / 1000} s` : `${ms} ms`;
  }
}
