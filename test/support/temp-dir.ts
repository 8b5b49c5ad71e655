/**
 * vitest global setup: the whole run's temporary files (emulator data,
 * stacks, instance directories, CDK outdirs) go to one directory made for
 * the run, removed when it ends, so that `npm test` leaves nothing in the
 * system's temp directory even when a test kills a stack with SIGKILL.
 * Test workers and the processes they start inherit TMPDIR.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export default function setup(): () => void {
  const previous = process.env.TMPDIR;
  const dir = mkdtempSync(join(tmpdir(), 'nvcf-test-run-'));
  process.env.TMPDIR = dir;
  return () => {
    rmSync(dir, { recursive: true, force: true });
    if (previous === undefined) delete process.env.TMPDIR;
    else process.env.TMPDIR = previous;
  };
}
