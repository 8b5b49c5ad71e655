/**
 * Function logs (our extension, `GET /v2/nvcf/logs/functions/{fid}/versions/{vid}`):
 * the stdout/stderr lines of a version's instances, the function's container
 * and the platform's worker beside it, with the instance id and a timestamp.
 * Two stores, one answer:
 * - locally, the files the process runtime writes (one per instance and
 *   process, below `NVCF_LOCAL_LOGS_DIR`);
 * - on EKS, the installation's CloudWatch log group, which Fluent Bit fills
 *   with one stream per pod and container, `<functionId>/<versionId>/<pod>/<container>`,
 *   so one version's lines are one stream prefix (lib/function-logs.ts).
 * A `cursor` follows by polling: each answer carries the one to send next,
 * which returns only lines after the ones already answered.
 */
import { createReadStream } from 'node:fs';
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { CloudWatchLogsClient, FilterLogEventsCommand } from '@aws-sdk/client-cloudwatch-logs';
import * as z from 'zod';
import { ENV } from './names';
import { badRequest } from './problem';

export type LogSource = 'container' | 'worker';
export type LogStream = 'stdout' | 'stderr';

export interface LogLine {
  instanceId: string;
  /** ISO 8601, milliseconds. */
  timestamp: string;
  stream: LogStream;
  /** `worker`: the platform's own lines (the gpu-agent worker beside the container). */
  source: LogSource;
  message: string;
}

export interface LogsPage {
  lines: LogLine[];
  /** Send it back as `cursor` for the lines after these (also when none came). */
  cursor: string;
}

export const LOG_LIMITS = { defaultLines: 100, maxLines: 1000 } as const;

/**
 * How far behind now a CloudWatch cursor stays: a line reaches CloudWatch a
 * few seconds after it was written (Fluent Bit flushes every 5 s), and
 * FilterLogEvents finds lines by their timestamp, so a cursor that moved past
 * a line still on its way would skip it. Lines younger than this are answered
 * on a later poll.
 */
export const CLOUDWATCH_SETTLE_MS = 15_000;

export interface LogsQuery {
  /** Epoch ms: lines at or after it. */
  since?: number;
  limit: number;
  instanceId?: string;
  cursor?: Cursor;
}

/** Where the previous answer stopped: lines read per local file, or the last CloudWatch timestamp and the event ids answered at it. */
type Cursor = { files: Record<string, number> } | { at: number; ids: string[] };

const cursorSchema = z.union([
  z.object({ files: z.record(z.string(), z.number().int().nonnegative()) }).strict(),
  z.object({ at: z.number().int().nonnegative(), ids: z.array(z.string()) }).strict(),
]);

function encodeCursor(cursor: Cursor): string {
  return Buffer.from(JSON.stringify(cursor)).toString('base64url');
}

function decodeCursor(raw: string): Cursor {
  try {
    return cursorSchema.parse(JSON.parse(Buffer.from(raw, 'base64url').toString('utf8')));
  } catch {
    throw badRequest('query parameter cursor is not one this endpoint answered; send the cursor of the previous answer as it came, or leave it out to start over');
  }
}

/** `since`: an ISO 8601 time or epoch milliseconds. */
function parseSince(raw: string): number {
  const at = /^\d+$/.test(raw) ? Number(raw) : Date.parse(raw);
  if (!Number.isSafeInteger(at) || at < 0) {
    throw badRequest(`query parameter since must be an ISO 8601 time (2026-01-31T12:00:00Z) or epoch milliseconds, got "${raw}"`);
  }
  return at;
}

/**
 * The parameters of a logs request as they travel (strings), for the OpenAPI
 * document and the first check; parseLogsQuery then reads each one.
 */
export const logsQueryParametersSchema = z.object({
  since: z.string().optional().meta({ description: 'lines at or after this time: ISO 8601 (2026-01-31T12:00:00Z) or epoch milliseconds' }),
  limit: z.string().optional().meta({ description: `lines in one page, 1 to ${LOG_LIMITS.maxLines} (default ${LOG_LIMITS.defaultLines})` }),
  instanceId: z.string().optional().meta({ description: "one instance's lines, by its id as the deployment reports it" }),
  cursor: z.string().optional().meta({ description: 'where the previous page stopped: the `cursor` it carried' }),
});

/** Reads the query of a logs request; a bad value is a 400 naming the parameter and what it takes. */
export function parseLogsQuery(query: Record<string, string | undefined>): LogsQuery {
  const parsed: LogsQuery = { limit: LOG_LIMITS.defaultLines };
  if (query.limit !== undefined) {
    const limit = Number(query.limit);
    if (!/^\d+$/.test(query.limit) || limit < 1 || limit > LOG_LIMITS.maxLines) {
      throw badRequest(`query parameter limit must be a whole number from 1 to ${LOG_LIMITS.maxLines}, got "${query.limit}"`);
    }
    parsed.limit = limit;
  }
  if (query.since !== undefined) parsed.since = parseSince(query.since);
  if (query.instanceId !== undefined) {
    // Instance ids are pod names (EKS) or local-xxxxxxxx: DNS labels, which also keeps them out of path tricks.
    if (!/^[a-z0-9]([-a-z0-9]{0,251}[a-z0-9])?$/.test(query.instanceId)) {
      throw badRequest(`query parameter instanceId must be an instance id as the deployment reports it (lower-case letters, digits and '-'), got "${query.instanceId}"`);
    }
    parsed.instanceId = query.instanceId;
  }
  if (query.cursor !== undefined) parsed.cursor = decodeCursor(query.cursor);
  return parsed;
}

// ---------------------------------------------------------------------------
// Local files

/**
 * Directory of one instance's log files: `<root>/<functionId>/<versionId>/<instanceId>/`,
 * holding `container.log` and `worker.log`.
 */
export function localInstanceLogDir(root: string, functionId: string, versionId: string, instanceId: string): string {
  return join(root, functionId, versionId, instanceId);
}

export function localLogFileName(source: LogSource): string {
  return `${source}.log`;
}

/**
 * One line of a local log file: JSON with the time it was read from the
 * process (`t`, ISO 8601), the stream and the line as printed, e.g.
 * `{"t":"2026-01-31T12:00:00.000Z","stream":"stdout","message":"listening on 8000"}`.
 * JSON keeps a line whole whatever it holds; the file name says whose it is.
 */
export function formatLocalLogLine(stream: LogStream, message: string, at: Date = new Date()): string {
  return `${JSON.stringify({ t: at.toISOString(), stream, message })}\n`;
}

const localLineSchema = z.object({ t: z.string(), stream: z.enum(['stdout', 'stderr']), message: z.string() });

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

async function listDir(path: string): Promise<string[]> {
  return readdir(path).catch((error: NodeJS.ErrnoException) => {
    if (error.code === 'ENOENT') return [];
    throw error;
  });
}

/** The complete lines of a file from line `skip` on; a last line still being written is left for the next read. */
async function readLines(path: string, skip: number): Promise<string[]> {
  const lines: string[] = [];
  const input = createReadStream(path, { encoding: 'utf8' });
  let index = 0;
  let pending = '';
  for await (const chunk of input as AsyncIterable<string>) {
    const parts = (pending + chunk).split('\n');
    pending = parts.pop()!;
    for (const part of parts) if (index++ >= skip) lines.push(part);
  }
  return lines;
}

/**
 * Reads a version's lines from the local files. Each file is append-only and
 * in time order, so the cursor is the number of lines answered per file: a
 * poll returns each line once, and none is skipped whenever it was written.
 */
export async function readLocalLogs(root: string, functionId: string, versionId: string, query: LogsQuery): Promise<LogsPage> {
  if (query.cursor && !('files' in query.cursor)) throw badRequest('query parameter cursor is not one this endpoint answered; leave it out to start over');
  const offsets = { ...(query.cursor?.files ?? {}) };
  const versionDir = join(root, functionId, versionId);
  const instances = query.instanceId ? [query.instanceId] : await listDir(versionDir);
  const files: { key: string; instanceId: string; source: LogSource; lines: { line: LogLine; at: number }[] }[] = [];
  for (const instanceId of instances) {
    for (const source of ['container', 'worker'] as const) {
      const key = `${instanceId}/${source}`;
      const path = join(versionDir, instanceId, localLogFileName(source));
      const raw = await readLines(path, offsets[key] ?? 0).catch((error: NodeJS.ErrnoException) => {
        if (error.code === 'ENOENT') return [];
        throw error;
      });
      const lines = raw.map((text) => {
        const parsed = localLineSchema.safeParse(parseJson(text));
        // A line not in the format (an older file, an edit by hand) is still shown, as stdout at no known time.
        const entry = parsed.success ? parsed.data : { t: new Date(0).toISOString(), stream: 'stdout' as const, message: text };
        return { at: Date.parse(entry.t), line: { instanceId, timestamp: entry.t, stream: entry.stream, source, message: entry.message } };
      });
      files.push({ key, instanceId, source, lines });
    }
  }
  // Oldest first across files; a file's lines are answered in order, so its count stays a prefix.
  const merged = files
    .flatMap((file) => file.lines.map((entry, i) => ({ ...entry, file, i })))
    .sort((a, b) => a.at - b.at || a.file.key.localeCompare(b.file.key) || a.i - b.i);
  const lines: LogLine[] = [];
  for (const entry of merged) {
    const key = entry.file.key;
    offsets[key] = (offsets[key] ?? 0) + 1;
    if (query.since !== undefined && entry.at < query.since) continue;
    lines.push(entry.line);
    if (lines.length === query.limit) break;
  }
  // Lines skipped for `since` are passed by the cursor too; with the limit reached, a file's lines after the last one answered stay unread.
  return { lines, cursor: encodeCursor({ files: offsets }) };
}

// ---------------------------------------------------------------------------
// CloudWatch Logs (EKS)

/** Prefix of the log streams of one version (and one instance: its pod). */
export function logStreamPrefix(functionId: string, versionId: string, instanceId?: string): string {
  return `${functionId}/${versionId}/${instanceId ? `${instanceId}/` : ''}`;
}

/** The pod (instance) and container of a stream `<functionId>/<versionId>/<pod>/<container>`. */
export function parseLogStreamName(name: string): { instanceId: string; source: LogSource } | undefined {
  const parts = name.split('/');
  if (parts.length !== 4 || parts.some((part) => part === '')) return undefined;
  // The pod's `worker` container is the platform's gpu-agent (gpu-agent/controller/k8s/objects.ts); every other one is the function's.
  return { instanceId: parts[2]!, source: parts[3] === 'worker' ? 'worker' : 'container' };
}

const fluentBitRecordSchema = z.object({ log: z.string(), stream: z.enum(['stdout', 'stderr']).optional() });

/** A Fluent Bit record as shipped (`{"log": "...", "stream": "stdout"}`, lib/function-logs.ts) as a log line. */
export function lineOfEvent(event: { logStreamName?: string; timestamp?: number; message?: string }): LogLine | undefined {
  const stream = parseLogStreamName(event.logStreamName ?? '');
  if (!stream || event.timestamp === undefined) return undefined;
  const parsed = fluentBitRecordSchema.safeParse(parseJson(event.message ?? ''));
  const record = parsed.success ? parsed.data : undefined;
  return {
    instanceId: stream.instanceId,
    timestamp: new Date(event.timestamp).toISOString(),
    stream: record?.stream ?? 'stdout',
    source: stream.source,
    message: (record?.log ?? event.message ?? '').replace(/\n$/, ''),
  };
}

let logsClient: CloudWatchLogsClient | undefined;

/**
 * Reads a version's lines from the log group: FilterLogEvents on the
 * version's (or the instance's) stream prefix, so no other version's streams
 * are read. Only lines at least CLOUDWATCH_SETTLE_MS old are answered; the
 * cursor holds the time read up to and the events answered at that time.
 */
export async function readCloudWatchLogs(
  logGroupName: string,
  functionId: string,
  versionId: string,
  query: LogsQuery,
  { now = Date.now(), client = (logsClient ??= new CloudWatchLogsClient({})) }: { now?: number; client?: Pick<CloudWatchLogsClient, 'send'> } = {},
): Promise<LogsPage> {
  if (query.cursor && !('at' in query.cursor)) throw badRequest('query parameter cursor is not one this endpoint answered; leave it out to start over');
  const startTime = Math.max(query.cursor?.at ?? 0, query.since ?? 0);
  const endTime = now - CLOUDWATCH_SETTLE_MS;
  const seen = new Set(query.cursor?.ids ?? []);
  if (endTime < startTime) return { lines: [], cursor: encodeCursor(query.cursor ?? { at: startTime, ids: [] }) };

  const lines: LogLine[] = [];
  let last = startTime;
  let idsAtLast = startTime === query.cursor?.at ? [...seen] : [];
  let nextToken: string | undefined;
  let full = false;
  do {
    const page = await client.send(
      new FilterLogEventsCommand({
        logGroupName,
        logStreamNamePrefix: logStreamPrefix(functionId, versionId, query.instanceId),
        startTime,
        endTime,
        limit: query.limit,
        nextToken,
      }),
    );
    for (const event of page.events ?? []) {
      if (!event.eventId || event.timestamp === undefined || seen.has(event.eventId)) continue;
      const line = lineOfEvent(event);
      if (!line) continue;
      lines.push(line);
      if (event.timestamp > last) [last, idsAtLast] = [event.timestamp, []];
      idsAtLast.push(event.eventId);
      full = lines.length === query.limit;
      if (full) break;
    }
    nextToken = full ? undefined : page.nextToken;
  } while (nextToken);
  // All read up to endTime: the next poll starts there (the events answered at endTime itself are not answered again).
  if (!full && endTime > last) [last, idsAtLast] = [endTime, []];
  return { lines, cursor: encodeCursor({ at: last, ids: idsAtLast }) };
}

/** Reads a version's lines from where this installation keeps them: the log group on AWS, the local files otherwise. */
export function readFunctionLogs(functionId: string, versionId: string, query: LogsQuery): Promise<LogsPage> {
  const logGroup = process.env[ENV.functionLogGroup];
  if (logGroup) return readCloudWatchLogs(logGroup, functionId, versionId, query);
  const root = process.env[ENV.localLogsDir];
  if (root) return readLocalLogs(root, functionId, versionId, query);
  return Promise.resolve({ lines: [], cursor: encodeCursor({ files: {} }) });
}
