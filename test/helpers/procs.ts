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

/**
 * Connections process pid holds open on the UNIX socket at socketPath: its
 * descriptors for connected sockets carrying that path (accepted connections
 * inherit the listening socket's address; the listening socket itself is
 * not counted). Connections still waiting in the backlog are not counted.
 */
export function connectionsHeld(pid: number, socketPath: string): number {
  const connected = new Set<string>();
  for (const line of fs.readFileSync('/proc/net/unix', 'utf8').split('\n').slice(1)) {
    // Num RefCount Protocol Flags Type St Inode Path
    const f = line.trim().split(/\s+/);
    if (f[7] === socketPath && f[5] === '03') connected.add(f[6]!);
  }
  let n = 0;
  for (const fd of fs.readdirSync(`/proc/${pid}/fd`)) {
    try {
      const m = /^socket:\[(\d+)\]$/.exec(fs.readlinkSync(`/proc/${pid}/fd/${fd}`));
      if (m !== null && connected.has(m[1]!)) n++;
    } catch {
      // closed meanwhile
    }
  }
  return n;
}
