/**
 * Mirrors a job's `progress` file (nvcf-api.md §4.4) into its invocation.
 * The file is polled rather than watched with fs.watch, which misses events on
 * some volume types; a changed file is written at most once per interval, the
 * latest content winning. Files with another request's id, a progress outside
 * 0–100 or unparseable JSON are ignored.
 */
import { readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { recordProgress } from '../../core/invocations';
import { logger } from './config';

/** How often the file is looked at. */
const POLL_MS = 100;
/** partialResponse larger than this is not mirrored (NVCF asks containers to keep it under 250 KB). */
const MAX_PARTIAL_RESPONSE_BYTES = 250_000;

export interface ProgressMirror {
  /** Stops polling and waits for a write in progress. */
  stop(): Promise<void>;
}

interface ProgressFile {
  id?: unknown;
  progress?: unknown;
  partialResponse?: unknown;
}

/** Starts mirroring `<outputDir>/progress` of the job held by the claim `owner`. */
export function mirrorProgress(requestId: string, owner: string, outputDir: string, intervalMs: number): ProgressMirror {
  const file = join(outputDir, 'progress');
  let seen = '';
  let written = '';
  let lastWrite = 0;
  let pending: { progress: number; partial: string | undefined } | undefined;
  let busy: Promise<void> | undefined;

  const tick = async () => {
    const info = await stat(file).catch(() => undefined);
    if (!info) return;
    const signature = `${info.mtimeMs}:${info.size}`;
    if (signature !== seen) {
      seen = signature;
      const text = await readFile(file, 'utf8').catch(() => '');
      let parsed: ProgressFile;
      try {
        parsed = JSON.parse(text) as ProgressFile;
      } catch {
        return;
      }
      const { progress } = parsed;
      if (parsed.id !== requestId || typeof progress !== 'number' || !Number.isInteger(progress) || progress < 0 || progress > 100) return;
      let partial = parsed.partialResponse === undefined ? undefined : JSON.stringify(parsed.partialResponse);
      if (partial !== undefined && Buffer.byteLength(partial) > MAX_PARTIAL_RESPONSE_BYTES) {
        logger.warn('partialResponse too large, mirroring the percentage only', { requestId, bytes: Buffer.byteLength(partial) });
        partial = undefined;
      }
      pending = { progress, partial };
    }
    if (pending && Date.now() - lastWrite >= intervalMs) {
      const next = pending;
      pending = undefined;
      const key = `${next.progress}:${next.partial}`;
      if (key === written) return;
      lastWrite = Date.now();
      written = key;
      await recordProgress(requestId, owner, next.progress, next.partial);
    }
  };

  const timer = setInterval(() => {
    // A slow tick (DynamoDB) is not stacked upon; the next one catches up.
    busy ??= tick()
      .catch((error: Error) => logger.warn('progress mirroring failed', { requestId, error }))
      .finally(() => (busy = undefined));
  }, POLL_MS);

  return {
    async stop() {
      clearInterval(timer);
      await busy;
    },
  };
}
