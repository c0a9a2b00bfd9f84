// Caps how many hashes run at once. crypt(3) is CPU-bound (and yescrypt
// takes 16 MiB per call): more in flight than there are cores only adds
// context switches and memory, while the thread pool stays free for the
// rest (fs, DNS, PAM). Waiters are served first come, first served.
import os from 'node:os';

export class Limiter {
  private active = 0;
  private readonly waiting: Array<() => void> = [];

  constructor(readonly max: number) {}

  /** Runs fn when a slot is free; skips it (rejects) if signal aborted while waiting. */
  async run<T>(fn: () => Promise<T>, signal?: AbortSignal): Promise<T> {
    if (this.active >= this.max) {
      await new Promise<void>((resolve) => this.waiting.push(resolve));
      if (signal?.aborted) {
        this.release();
        throw new Error('aborted while waiting for a hashing slot');
      }
    }
    this.active++;
    try {
      return await fn();
    } finally {
      this.active--;
      this.release();
    }
  }

  private release(): void {
    if (this.active < this.max) this.waiting.shift()?.();
  }
}

/** Two slots per core (one hashing, one ready as it ends), shared by every mechanism that hashes here. */
export const hashing = new Limiter(2 * os.availableParallelism());
