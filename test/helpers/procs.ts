// Process lookups through /proc, for tests and the benchmark that need a
// daemon's worker processes (cluster workers, Cyrus's -n children).
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
