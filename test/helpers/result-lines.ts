// Reading the daemon's JSON result lines (--log-format json, the tests' default).
import type { RunningDaemon } from './daemon';

/** The JSON result lines the daemon logged for this user, oldest first. */
export function resultLines(d: RunningDaemon, user: string): Array<Record<string, unknown>> {
  return d
    .output()
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as Record<string, unknown>)
    .filter((o) => o.user === user && typeof o.result === 'string');
}

/** The last result line for this user with this result, waiting for it (the line may follow the answer). */
export async function lastResult(d: RunningDaemon, user: string, result: string): Promise<Record<string, unknown> | undefined> {
  await d.waitForLog(new RegExp(`"user":"${user}".*"result":"${result}"`));
  return resultLines(d, user)
    .filter((o) => o.result === result)
    .at(-1);
}
