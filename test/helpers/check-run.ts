// Running --check in-process and keeping what it prints, for the unit tests.
import { runCheck } from '../../src/config/check';

export interface CheckRun {
  code: number;
  out: string;
  err: string;
}

function capture(): { write(s: string): boolean; text: () => string } {
  let buf = '';
  return {
    write(s: string) {
      buf += s;
      return true;
    },
    text: () => buf,
  };
}

/** saslauthd-ts --check ARGV: its exit status, standard output and standard error. */
export function checkRun(argv: string[], files?: Parameters<typeof runCheck>[3]): CheckRun {
  const out = capture();
  const err = capture();
  const code = runCheck(['--check', ...argv], out, err, files);
  return { code, out: out.text(), err: err.text() };
}
