/**
 * Rate limits of function versions, in NVCF's format (open-source NVCF's
 * RateLimitDto): `rateLimit` is a comma list of `<count>-<S|M|H|D>` windows
 * that each calling account gets per version; `perNcaIdRate` gives named
 * accounts a rate of their own instead; `exemptedNcaIds` are not limited
 * (unless they have a rate of their own).
 *
 * Enforced by the invocation service before a call is queued (HTTP pexec,
 * direct invocation, and once per gRPC session): one DynamoDB UpdateItem per
 * window of the caller's rate, an atomic ADD conditioned on the count staying
 * within the limit, on an item keyed by version, caller, rate and window
 * start, which expires by TTL. A version without a limit costs no request at
 * all: the limit travels on the version record the service already caches.
 */
import { ConditionalCheckFailedException } from '@aws-sdk/client-dynamodb';
import { UpdateCommand } from '@aws-sdk/lib-dynamodb';
import * as z from 'zod';
import { accountIdSchema } from './api-keys';
import { dynamo } from './aws';
import { tableName } from './config';
import { MAX_RATE_LIMIT_COUNT, RATE_LIMIT_COUNTER_GRACE_SECONDS } from './limits';
import type { FunctionVersionRecord } from './model';
import { Problem } from './problem';

/** Seconds of each window unit of NVCF's rate strings. */
export const RATE_WINDOW_SECONDS = { S: 1, M: 60, H: 3600, D: 86400 } as const;
export type RateWindowUnit = keyof typeof RATE_WINDOW_SECONDS;

/** One window of a rate: at most `count` calls per `unit`. */
export interface RateWindow {
  count: number;
  unit: RateWindowUnit;
}

/** A version's rate limit as stored on its record and shown in the Function JSON (NVCF's RateLimitDto fields). */
export interface RateLimitRecord {
  rateLimit?: string;
  exemptedNcaIds?: string[];
  perNcaIdRate?: Record<string, string>;
  /** Accepted as NVCF clients send it; every call is checked before it is queued either way. */
  syncCheck?: boolean;
}

const RATE_PART = /^(\d{1,10})-([SMHD])$/;

/**
 * The windows of a rate string such as `100-S` or `5-S,1000-M`; a message
 * saying what is wrong otherwise.
 */
export function parseRate(text: string): RateWindow[] | string {
  const parts = text.split(',').map((part) => part.trim());
  const windows: RateWindow[] = [];
  for (const part of parts) {
    const match = RATE_PART.exec(part);
    if (!match) return `"${part}" is not a rate: give <count>-<unit> with unit S, M, H or D (per second, minute, hour, day), e.g. 100-S or 5-S,1000-M`;
    const count = Number(match[1]);
    if (count < 1 || count > MAX_RATE_LIMIT_COUNT) return `"${part}": the count must be from 1 to ${MAX_RATE_LIMIT_COUNT}`;
    const unit = match[2] as RateWindowUnit;
    if (windows.some((window) => window.unit === unit)) return `"${text}" gives the ${unit} window twice; give each unit once`;
    windows.push({ count, unit });
  }
  return windows;
}

const rateString = z.string().superRefine((text, ctx) => {
  const parsed = parseRate(text);
  if (typeof parsed === 'string') ctx.addIssue({ code: 'custom', message: parsed });
});

/**
 * NVCF's RateLimitDto, as F1/F2 (`rateLimit`), F9 and the ratelimit routes
 * take it. `perUserRate` needs users beneath accounts, which this platform
 * does not have: refused rather than silently ignored.
 */
export const rateLimitSchema = z
  .object(
    {
      rateLimit: rateString.nullish(),
      exemptedNcaIds: z.array(accountIdSchema).max(1000, 'at most 1000 accounts').nullish(),
      perNcaIdRate: z
        .record(accountIdSchema, rateString)
        .refine((rates) => Object.keys(rates).length <= 1000, 'at most 1000 accounts')
        .nullish(),
      syncCheck: z.boolean({ error: 'must be true or false' }).nullish(),
      perUserRate: z.null({ error: 'is not supported: accounts here have no users beneath them; use perNcaIdRate for a rate per calling account' }).optional(),
    },
    // Only a body that is no object gets this message; unknown fields keep zod's, which names them.
    { error: (issue) => (issue.code === 'invalid_type' ? 'must be a JSON object such as {"rateLimit": "100-S"}' : undefined) },
  )
  .strict()
  .superRefine((dto, ctx) => {
    if (!dto.rateLimit && !Object.keys(dto.perNcaIdRate ?? {}).length) {
      ctx.addIssue({ code: 'custom', message: 'give rateLimit (e.g. "100-S") or perNcaIdRate (e.g. {"<ncaId>": "10-S"}); to remove a rate limit use DELETE /v2/nvcf/ratelimit/functions/{functionId}/versions/{functionVersionId}' });
    }
  })
  .transform((dto): RateLimitRecord => ({
    ...(dto.rateLimit ? { rateLimit: dto.rateLimit } : {}),
    ...(dto.exemptedNcaIds?.length ? { exemptedNcaIds: [...new Set(dto.exemptedNcaIds)] } : {}),
    ...(dto.perNcaIdRate && Object.keys(dto.perNcaIdRate).length ? { perNcaIdRate: dto.perNcaIdRate } : {}),
    ...(dto.syncCheck != null ? { syncCheck: dto.syncCheck } : {}),
  }));

/** The rate string that applies to a caller: its own, else the version's unless exempted; undefined when unlimited. */
export function rateFor(limit: RateLimitRecord | undefined, callerAccountId: string): string | undefined {
  if (!limit) return undefined;
  const own = limit.perNcaIdRate?.[callerAccountId];
  if (own) return own;
  if (limit.exemptedNcaIds?.includes(callerAccountId)) return undefined;
  return limit.rateLimit;
}

/** The fixed window of `unit` that holds `nowMs`: its start and end in epoch seconds. */
export function windowAt(unit: RateWindowUnit, nowMs: number): { start: number; end: number } {
  const seconds = RATE_WINDOW_SECONDS[unit];
  const start = Math.floor(nowMs / 1000 / seconds) * seconds;
  return { start, end: start + seconds };
}

/** What one window answered: the calls counted in it (this one included), or that it was full. */
type WindowOutcome = { window: RateWindow; end: number; counted: number } | { window: RateWindow; end: number; full: true };

async function countInWindow(versionId: string, callerAccountId: string, window: RateWindow, nowMs: number): Promise<WindowOutcome> {
  const { start, end } = windowAt(window.unit, nowMs);
  try {
    const { Attributes } = await dynamo().send(
      new UpdateCommand({
        TableName: tableName('counters'),
        Key: { counterKey: `rate#${versionId}#${callerAccountId}#${window.count}-${window.unit}#${start}` },
        UpdateExpression: 'SET expiresAt = :expiresAt ADD #calls :one',
        ConditionExpression: 'attribute_not_exists(#calls) OR #calls < :limit',
        ExpressionAttributeNames: { '#calls': 'calls' },
        ExpressionAttributeValues: { ':one': 1, ':limit': window.count, ':expiresAt': end + RATE_LIMIT_COUNTER_GRACE_SECONDS },
        ReturnValues: 'UPDATED_NEW',
      }),
    );
    return { window, end, counted: Number(Attributes?.calls ?? 1) };
  } catch (error) {
    if (error instanceof ConditionalCheckFailedException) return { window, end, full: true };
    throw error;
  }
}

/** What a call admitted under a rate limit may tell its caller (RateLimit-* headers of the tightest window). */
export interface RateLimitAdmission {
  limit: number;
  remaining: number;
  resetSeconds: number;
}

/**
 * Counts a call of `callerAccountId` to `version` against the version's rate
 * limit (the owner's limit, whoever calls), before anything is queued: the
 * invocation service calls it for every pexec and direct call and once per
 * gRPC session. Resolves with the tightest window's standing, or undefined
 * without a request when no rate applies; throws a 429 Problem with
 * Retry-After and RateLimit-Limit/Remaining/Reset when a window is full.
 * Each window of a rate string costs one UpdateItem, sent together.
 */
export async function admitCall(version: Pick<FunctionVersionRecord, 'functionId' | 'versionId' | 'rateLimit'>, callerAccountId: string, nowMs = Date.now()): Promise<RateLimitAdmission | undefined> {
  const rate = rateFor(version.rateLimit, callerAccountId);
  if (!rate) return undefined;
  const windows = parseRate(rate);
  // Stored limits were validated on the way in; one that does not parse limits nothing rather than refusing every call.
  if (typeof windows === 'string') return undefined;
  const outcomes = await Promise.all(windows.map((window) => countInWindow(version.versionId, callerAccountId, window, nowMs)));
  const secondsTo = (end: number) => Math.max(1, Math.ceil(end - nowMs / 1000));
  const full = outcomes.filter((outcome): outcome is Extract<WindowOutcome, { full: true }> => 'full' in outcome);
  if (full.length > 0) {
    // The caller may retry once every full window has ended.
    const last = full.reduce((a, b) => (b.end > a.end ? b : a));
    const retryAfter = secondsTo(last.end);
    throw new Problem(
      429,
      `Function id '${version.functionId}', version '${version.versionId}': rate limit ${rate} reached for account '${callerAccountId}' (${last.window.count} calls per ${unitName(last.window.unit)}); retry in ${retryAfter} s`,
      {
        headers: {
          'retry-after': String(retryAfter),
          'ratelimit-limit': String(last.window.count),
          'ratelimit-remaining': '0',
          'ratelimit-reset': String(retryAfter),
        },
      },
    );
  }
  const counted = outcomes as Extract<WindowOutcome, { counted: number }>[];
  const tightest = counted.reduce((a, b) => (b.window.count - b.counted < a.window.count - a.counted ? b : a));
  return { limit: tightest.window.count, remaining: tightest.window.count - tightest.counted, resetSeconds: secondsTo(tightest.end) };
}

function unitName(unit: RateWindowUnit): string {
  return { S: 'second', M: 'minute', H: 'hour', D: 'day' }[unit];
}
