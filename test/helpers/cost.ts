// What a hash costs on this machine, measured at run time. Tests that need a
// backlog (checks still queued at a deadline, a queue that must build up)
// size it from this instead of assuming a CPU's speed or its core count.
import { native } from '../../src/native/binding';

/** Median wall-clock milliseconds of one verification of hash on the hashing pool, one at a time. */
export async function hashCostMs(hash: string, password: string, samples = 7): Promise<number> {
  const pw = Buffer.from(password);
  const times: number[] = [];
  for (let i = 0; i < samples; i++) {
    const t = performance.now();
    await native.cryptVerify(pw, hash);
    times.push(performance.now() - t);
  }
  times.sort((a, b) => a - b);
  return times[Math.floor(times.length / 2)] ?? 0;
}

/**
 * How many checks of costMs keep every hashing thread busy for at least
 * busyMs: a load that is still queued after busyMs on any machine.
 */
export function backlogFor(costMs: number, busyMs: number): number {
  return native.hashThreads * Math.ceil(busyMs / Math.max(costMs, 0.01));
}
