// Throwaway PAM services for integration tests: /etc/pam.d/<unique name>
// files, a pam_exec script that records PAM_RHOST, and the conversation probe
// module (test/fixtures/pam_convprobe.c) compiled into a temp dir. Everything
// is registered and removed by cleanupPam(), which tests call from after().
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ROOT } from './daemon';

const PAM_DIR = '/etc/pam.d';
const services = new Set<string>();
const tempDirs = new Set<string>();
// Backstop for a test process that dies before its after() hooks run.
process.once('exit', () => cleanupPam());

/** A unique, lower-case PAM service name (Linux-PAM folds case). */
export function serviceName(tag: string): string {
  return `saslts-${tag}-${process.pid.toString(36)}${Math.floor(Math.random() * 46656).toString(36)}`.toLowerCase();
}

/** Writes /etc/pam.d/<name> and returns the name. */
export function installService(name: string, lines: string[]): string {
  const file = path.join(PAM_DIR, name);
  if (fs.existsSync(file)) throw new Error(`${file} already exists; refusing to overwrite it`);
  services.add(name);
  fs.writeFileSync(file, `# saslauthd-ts test service, removed after the test\n${lines.join('\n')}\n`, { mode: 0o644 });
  return name;
}

export function removeService(name: string): void {
  fs.rmSync(path.join(PAM_DIR, name), { force: true });
  services.delete(name);
}

export function tempDir(tag: string): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), `saslts-pam-${tag}-`));
  tempDirs.add(dir);
  return dir;
}

/** The stack of Debian's /etc/pam.d/other (common-auth + common-account). */
export const COMMON_STACK = ['@include common-auth', '@include common-account'];

/**
 * A pam_exec script recording "$PAM_RHOST|$PAM_USER|$PAM_SERVICE" per call;
 * returns the pam.d line that runs it and the file it appends to.
 */
export function rhostRecorder(): { line: string; outFile: string } {
  const dir = tempDir('rhost');
  const outFile = path.join(dir, 'seen');
  const script = path.join(dir, 'record.sh');
  fs.writeFileSync(script, `#!/bin/sh\nprintf '%s|%s|%s\\n' "$PAM_RHOST" "$PAM_USER" "$PAM_SERVICE" >> '${outFile}'\n`, {
    mode: 0o755,
  });
  return { line: `auth optional pam_exec.so quiet ${script}`, outFile };
}

/** Compiles the conversation probe module; returns the .so path. */
export function buildConvProbe(): string {
  const dir = tempDir('probe');
  const so = path.join(dir, 'pam_convprobe.so');
  execFileSync('cc', ['-shared', '-fPIC', '-Wall', '-o', so, path.join(ROOT, 'test', 'fixtures', 'pam_convprobe.c'), '-lpam'], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  return so;
}

export function cleanupPam(): void {
  for (const name of [...services]) removeService(name);
  for (const dir of [...tempDirs]) {
    fs.rmSync(dir, { recursive: true, force: true });
    tempDirs.delete(dir);
  }
}
