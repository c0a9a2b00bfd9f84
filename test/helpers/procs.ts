// Process lookups through /proc, for tests and the benchmark that need a
// daemon's worker processes (cluster workers, Cyrus's -n children), its
// memory, or the connections it holds open.
import fs from 'node:fs';

function statFields(pid: string): string[] | undefined {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Fields after "pid (comm) ": state, ppid, pgrp, ...
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  } catch {
    return undefined; // gone
  }
}

function pidsWhere(field: number, value: number): number[] {
  return fs
    .readdirSync('/proc')
    .filter((d) => /^\d+$/.test(d) && Number(statFields(d)?.[field]) === value)
    .map(Number);
}

/** Direct children of parent. */
export const childPids = (parent: number): number[] => pidsWhere(1, parent);

/** Every process in process group pgid. */
export const groupPids = (pgid: number): number[] => pidsWhere(2, pgid);

/** Resident set size of pid in bytes (VmRSS), from /proc/<pid>/status. */
export function rssBytes(pid: number): number {
  const m = /^VmRSS:\s+(\d+) kB$/m.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
  if (!m) throw new Error(`no VmRSS for pid ${pid}`);
  return Number(m[1]) * 1024;
}

/**
 * Client connections pid holds open on the UNIX socket at socketPath. An
 * accepted socket carries the listener's path in /proc/net/unix; the
 * listening socket itself is the one flagged __SO_ACCEPTCON (0x10000). The
 * daemon's own count is not on the wire, so this is how a test sees it.
 */
export function openConnections(pid: number, socketPath: string): number {
  const accepted = new Set<string>();
  for (const line of fs.readFileSync('/proc/net/unix', 'utf8').split('\n').slice(1)) {
    // Num RefCount Protocol Flags Type St Inode Path
    const f = line.trim().split(/\s+/);
    if (f[7] !== socketPath) continue;
    if ((parseInt(f[3] ?? '0', 16) & 0x10000) !== 0) continue; // listening
    accepted.add(f[6] ?? '');
  }
  let n = 0;
  for (const fd of fs.readdirSync(`/proc/${pid}/fd`)) {
    let target: string;
    try {
      target = fs.readlinkSync(`/proc/${pid}/fd/${fd}`);
    } catch {
      continue; // closed meanwhile
    }
    const m = /^socket:\[(\d+)\]$/.exec(target);
    if (m && accepted.has(m[1]!)) n++;
  }
  return n;
}

/** The daemon's connections on its socket (the name some tests use for openConnections). */
export const connectionsHeld = openConnections;
