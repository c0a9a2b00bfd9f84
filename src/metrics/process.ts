// Process metrics under the names Prometheus's client libraries use
// (process_cpu_seconds_total, process_resident_memory_bytes, ...), read at
// scrape time; plus the event loop's delay, the figure that says whether
// anything is stalling answers. With --workers the primary and every worker
// report, and the sums (CPU, memory, descriptors) are the whole daemon's.
import fs from 'node:fs';
import { monitorEventLoopDelay, type IntervalHistogram } from 'node:perf_hooks';
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
    .gauge('nodejs_eventloop_lag_max_seconds', 'The longest event loop delay since the previous scrape.', 'max')
    .child();
  const lagP99 = r
    .gauge('nodejs_eventloop_lag_p99_seconds', 'The 99th percentile of event loop delays since the previous scrape.', 'max')
    .child();
  start.set(Math.floor((Date.now() - performance.now()) / 1000));
  procs.set(1);
  // Sampled every 20 ms by a libuv timer: no cost on the request path.
  const delay: IntervalHistogram = monitorEventLoopDelay({ resolution: 20 });
  delay.enable();
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
    // The delay histogram counts the resolution itself; take it off.
    const sampled = delay.count > 0;
    lagMax.set(sampled ? Math.max(0, delay.max / 1e9 - 0.02) : 0);
    lagP99.set(sampled ? Math.max(0, delay.percentile(99) / 1e9 - 0.02) : 0);
    delay.reset();
  }, 'process');
  return { stop: () => delay.disable() };
}
