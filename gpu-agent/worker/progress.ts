/**
 * Mirrors a job's `progress` file (nvcf-api.md §4.4) to where the job's
 * caller learns of it: the invocation service of a live call, or the
 * invocation item of a durable one.
 * The file is polled rather than watched with fs.watch, which misses events on
 * some volume types; a changed file is written at most once per interval, the
 * latest content winning. Files with another request's id, a progress outside
 * 0–100 or unparseable JSON are ignored.
 */
import { readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { logger } from './config';

/** Where progress goes; it may change while the job runs (a live call that becomes durable). */
export type ProgressSink = (percentComplete: number, partialResponse: string | undefined) => Promise<unknown>;

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

/** Starts mirroring `<outputDir>/progress` of request `requestId` to what `sink()` is at each update. */
export function mirrorProgress(requestId: string, outputDir: string, intervalMs: number, sink: () => ProgressSink): ProgressMirror {
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
      await sink()(next.progress, next.partial);
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
