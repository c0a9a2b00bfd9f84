// The throttle's state shared by the worker processes of one daemon
// (--workers): each change made here is also sent, as an operation, to the
// other workers (through the primary, see server/cluster.ts), which apply it
// to their own store. A guesser whose connections land on different workers
// is counted once, and credentials known-good on one are known-good on all.
// Refusals only keep a key's window open and are not sent: one message per
// refused guess would cost more than the window they extend.
import type { AdmissionState, MemoryState, MemoryStore, ThrottleStore, Tracked } from './store';

export type ThrottleOp =
  | { op: 'good'; fp: number; now: number }
  | { op: 'ungood'; fp: number }
  | { op: 'fail'; key: string; fp: number; now: number }
  | { op: 'cooloff'; key: string; until: number; failures?: number }
  | { op: 'clear'; keys: string[] };

export class ReplicatedStore implements ThrottleStore {
  constructor(
    private readonly inner: MemoryStore,
    private readonly send: (op: ThrottleOp) => void,
  ) {}

  /** The whole state, for a worker the primary restarts after a crash. */
  exportState(): MemoryState {
    return this.inner.exportState();
  }

  /** A live worker's state, taken over whole (false if its tables differ in size). */
  importState(st: MemoryState): boolean {
    return this.inner.importState(st);
  }

  get size(): { knownGood: number; tracked: number } {
    return this.inner.size;
  }

  /** An operation another worker made. */
  async apply(o: ThrottleOp): Promise<void> {
    switch (o.op) {
      case 'good':
        await this.inner.addKnownGood(o.fp, o.now);
        return;
      case 'ungood':
        await this.inner.removeKnownGood(o.fp);
        return;
      case 'fail':
        await this.inner.fail(o.key, o.fp, o.now);
        return;
      case 'cooloff':
        await this.inner.setCooloff(o.key, o.until, o.failures);
        return;
      case 'clear':
        await this.inner.clear(o.keys);
        return;
    }
  }

  admission(fp: number, keys: readonly string[], now: number): Promise<AdmissionState> {
    return this.inner.admission(fp, keys, now);
  }

  isKnownGood(fp: number, now: number): Promise<boolean> {
    return this.inner.isKnownGood(fp, now);
  }

  async addKnownGood(fp: number, now: number): Promise<boolean> {
    this.send({ op: 'good', fp, now });
    return this.inner.addKnownGood(fp, now);
  }

  async removeKnownGood(fp: number): Promise<void> {
    this.send({ op: 'ungood', fp });
    return this.inner.removeKnownGood(fp);
  }

  load(keys: readonly string[], now: number): Promise<Array<Tracked | undefined>> {
    return this.inner.load(keys, now);
  }

  async fail(key: string, fp: number, now: number): Promise<{ before: number; after: Tracked }> {
    this.send({ op: 'fail', key, fp, now });
    return this.inner.fail(key, fp, now);
  }

  touch(key: string, now: number): Promise<void> {
    return this.inner.touch(key, now);
  }

  async setCooloff(key: string, until: number, failures?: number): Promise<void> {
    this.send({ op: 'cooloff', key, until, ...(failures !== undefined ? { failures } : {}) });
    return this.inner.setCooloff(key, until, failures);
  }

  async clear(keys: readonly string[]): Promise<Array<Tracked | undefined>> {
    this.send({ op: 'clear', keys: [...keys] });
    return this.inner.clear(keys);
  }

  sweep(now: number): Promise<Array<{ key: string; state: Tracked }>> {
    return this.inner.sweep(now);
  }
}
