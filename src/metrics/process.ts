// Process metrics under the names Prometheus's client libraries use
// (process_cpu_seconds_total, process_resident_memory_bytes, ...), read at
// scrape time; plus the event loop's delay, the figure that says whether
// anything is stalling answers. With --workers the primary and every worker
// report, and the sums (CPU, memory, descriptors) are the whole daemon's.
import fs from 'node:fs';
import type { Registry } from './registry';

/** The soft limit on open files, from /proc/self/limits; undefined if unreadable. */
async function maxFds(): Promise<number | undefined> {
  try {
    const limits = await fs.promises.readFile('/proc/self/limits', 'utf8');
    const m = /^Max open files\s+(\d+)/m.exec(limits);
    return m ? Number(m[1]) : undefined;
  } catch {
    return undefined;
  }
}

async function openFds(): Promise<number | undefined> {
  try {
    // readdir's own descriptor is among them.
    return (await fs.promises.readdir('/proc/self/fd')).length - 1;
  } catch {
    return undefined;
  }
}

export interface ProcessMetrics {
  /** Stop the event loop delay sampler. */
  stop(): void;
}

/** How often the event loop's delay is sampled. */
const LAG_SAMPLE_MS = 100;

/**
 * The longest lateness of a timer since the last read: a loop blocked for
 * 300 ms fires a 100 ms timer 300 ms late. Ten timer callbacks a second are
 * off the request path, whatever the load; perf_hooks' monitorEventLoopDelay
 * would give percentiles too, but its sampling runs with the loop's turns,
 * one per request for cached logins, and its cost there did not measure
 * clearly below the bench's noise.
 */
class LagSampler {
  private max = 0;
  private expected = 0;
  private timer: NodeJS.Timeout | undefined;

  start(): void {
    this.expected = performance.now() + LAG_SAMPLE_MS;
    this.timer = setTimeout(() => this.tick(), LAG_SAMPLE_MS);
    this.timer.unref();
  }

  private tick(): void {
    const now = performance.now();
    this.max = Math.max(this.max, now - this.expected);
    this.expected = now + LAG_SAMPLE_MS;
    this.timer = setTimeout(() => this.tick(), LAG_SAMPLE_MS);
    this.timer.unref();
  }

  /** The longest delay (ms) since the previous call. */
  takeMax(): number {
    const m = this.max;
    this.max = 0;
    return m;
  }

  stop(): void {
    clearTimeout(this.timer);
  }
}

export function registerProcessMetrics(r: Registry): ProcessMetrics {
  const user = r.counter('process_cpu_user_seconds_total', 'User CPU time spent, in seconds.').child();
  const system = r.counter('process_cpu_system_seconds_total', 'System CPU time spent, in seconds.').child();
  const cpu = r.counter('process_cpu_seconds_total', 'User and system CPU time spent, in seconds.').child();
  const rss = r.gauge('process_resident_memory_bytes', 'Resident memory size, in bytes.').child();
  const heap = r.gauge('nodejs_heap_used_bytes', "V8's heap in use, in bytes.").child();
  const fds = r.gauge('process_open_fds', 'Open file descriptors (client connections among them).').child();
  const fdLimit = r.gauge('process_max_fds', 'The limit on open file descriptors.', 'max').child();
  const start = r.gauge('process_start_time_seconds', 'When the process started, in seconds since the epoch.', 'min').child();
  const procs = r.gauge('saslauthd_processes', 'Processes of the daemon (1, or the primary plus the --workers).').child();
  const lagMax = r
    .gauge(
      'nodejs_eventloop_lag_max_seconds',
      'The longest event loop delay since the previous scrape (sampled every 100 ms).',
      'max',
    )
    .child();
  start.set(Math.floor((Date.now() - performance.now()) / 1000));
  procs.set(1);
  const lag = new LagSampler();
  lag.start();
  r.onCollect(async () => {
    const u = process.cpuUsage();
    user.value = u.user / 1e6;
    system.value = u.system / 1e6;
    cpu.value = (u.user + u.system) / 1e6;
    rss.set(process.memoryUsage.rss());
    heap.set(process.memoryUsage().heapUsed);
    const [open, max] = await Promise.all([openFds(), maxFds()]);
    if (open !== undefined) fds.set(open);
    if (max !== undefined) fdLimit.set(max);
    lagMax.set(Math.max(0, lag.takeMax()) / 1000);
  }, 'process');
  return { stop: () => lag.stop() };
}
