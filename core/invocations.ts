/**
 * The Invocations table: one item per request, QUEUED → IN_PROGRESS →
 * FULFILLED | ERRORED. Every transition is a conditional write, so a
 * redelivered message, a second worker or a retried Lambda can never move a
 * terminal invocation or produce a second result.
 *
 * Ownership of a running invocation is a lease: each claim draws an owner
 * token and sets `leaseUntil`, which the owner keeps pushing forward together
 * with its message's visibility. Another delivery (a duplicate message, or the
 * same message after its visibility lapsed) may take an IN_PROGRESS invocation
 * over only once the lease has expired. Progress, lease renewals, the outcome
 * and a hand-back are accepted only from the current owner, and an owner's
 * result objects carry its token in their keys, so a delivery that lost the
 * invocation can neither overwrite the winner's result nor its record.
 */
import { randomUUID } from 'node:crypto';
import { GetCommand, PutCommand, UpdateCommand } from '@aws-sdk/lib-dynamodb';
import { conditionalWrite, dynamo } from './aws';
import { tableName } from './config';
import { MAX_PROBLEM_DETAIL_BYTES, MAX_RESPONSE_BYTES } from './limits';
import { isTerminal, type InvocationStatus } from './model';
import { outputObjectPrefix } from './names';
import { kebabReason, reasonPhrase } from './problem';

/** Why an invocation errored, rendered as problem+json by the API. */
export interface InvocationError {
  status: number;
  detail: string;
  /** Problem type URN; the API derives one from the status when absent. */
  type?: string;
  title?: string;
}

/** A fulfilled invocation's answer: the container's status and headers, and where its body is. */
export interface InvocationResult {
  status: number;
  headers: Record<string, string>;
  /** The body, when small enough for the item (stored as a DynamoDB binary). */
  body?: Uint8Array;
  /** The body's S3 key, when too large for the item but returned directly. */
  bodyKey?: string;
  /** S3 key of the result zip ({requestId}.response + output files), answered with 302. */
  zipKey?: string;
}

export interface InvocationRecord {
  requestId: string;
  accountId: string;
  functionId: string;
  versionId: string;
  status: InvocationStatus;
  createdAt: string;
  updatedAt: string;
  /** Epoch seconds; the table's TTL attribute. */
  expiresAt: number;
  /** The versionId while QUEUED, absent otherwise: the key of the QUEUED_INDEX that gives queue positions. */
  queuedVersion?: string;
  /** ApproximateReceiveCount of the delivery that claimed the invocation last. */
  attempt?: number;
  /** Instance whose worker claimed it last. */
  instanceId?: string;
  /** Token of the claim that owns the running invocation. */
  owner?: string;
  /** Epoch milliseconds until which the owner's claim holds (kept fresh while it runs). */
  leaseUntil?: number;
  /** SQS MessageId of the owner's message; another message for the same request is a duplicate. */
  messageId?: string;
  percentComplete?: number;
  /** JSON text of the latest progress file's partialResponse. */
  partialResponse?: string;
  /** Counts progress updates, so a poll can tell a new one from the one it saw. */
  progressVersion?: number;
  result?: InvocationResult;
  error?: InvocationError;
}

/** A fresh owner token for a claim. */
export function newOwnerToken(): string {
  return randomUUID();
}

/** S3 key of a result zip written by the claim `owner`. */
export function resultZipKey(requestId: string, owner: string): string {
  return `${outputObjectPrefix(requestId)}${owner}/result.zip`;
}

/** S3 key of a result body too large for the item, written by the claim `owner`. */
export function resultBodyKey(requestId: string, owner: string): string {
  return `${outputObjectPrefix(requestId)}${owner}/response`;
}

/**
 * Whether an S3 error says the object is not there. Without s3:ListBucket, S3
 * answers a missing key with 403 AccessDenied rather than 404 NoSuchKey; both
 * mean the same to the invocation path.
 */
export function isMissingObjectError(error: unknown): boolean {
  const { name, $metadata } = (error ?? {}) as { name?: string; $metadata?: { httpStatusCode?: number } };
  if (name === 'NoSuchKey' || name === 'NotFound' || name === 'AccessDenied' || name === 'Forbidden') return true;
  return $metadata?.httpStatusCode === 404 || $metadata?.httpStatusCode === 403;
}

/** `text` cut to at most `maxBytes` of UTF-8 (on a character boundary), marked with an ellipsis when cut. */
export function truncateUtf8(text: string, maxBytes: number): string {
  if (Buffer.byteLength(text) <= maxBytes) return text;
  const marker = '…';
  let cut = Buffer.from(text).subarray(0, maxBytes - Buffer.byteLength(marker)).toString('utf8');
  // A multi-byte character split by the cut decodes as U+FFFD at the end.
  if (cut.endsWith('\uFFFD')) cut = cut.slice(0, -1);
  return cut + marker;
}

/** Stores a new QUEUED (or, for a call already running, IN_PROGRESS) invocation; throws if the request id is taken. */
export async function createQueuedInvocation(record: InvocationRecord, options: { abortSignal?: AbortSignal } = {}): Promise<void> {
  const item = record.status === 'QUEUED' ? { ...record, queuedVersion: record.versionId } : record;
  await dynamo().send(
    new PutCommand({ TableName: tableName('invocations'), Item: item, ConditionExpression: 'attribute_not_exists(requestId)' }),
    options,
  );
}

/** An invocation as stored (strongly consistent), whoever owns it. */
export async function getInvocation(requestId: string, options: { abortSignal?: AbortSignal } = {}): Promise<InvocationRecord | undefined> {
  const { Item } = await dynamo().send(new GetCommand({ TableName: tableName('invocations'), Key: { requestId }, ConsistentRead: true }), options);
  return Item as InvocationRecord | undefined;
}

/** Whether the record is past its expiry; DynamoDB's TTL deletes expired items only eventually. */
export function isExpired(record: Pick<InvocationRecord, 'expiresAt'>, now = Date.now()): boolean {
  return record.expiresAt * 1000 <= now;
}

/** An account's live invocation; another account's or an expired one is indistinguishable from a missing one. */
export async function getOwnedInvocation(accountId: string, requestId: string): Promise<InvocationRecord | undefined> {
  const record = await getInvocation(requestId);
  return record && record.accountId === accountId && !isExpired(record) ? record : undefined;
}

export type Claim =
  /** This delivery owns the invocation now, until `leaseUntil` unless renewed: run it. */
  | { kind: 'claimed'; leaseUntil: number }
  /** The invocation already has its outcome: drop the message. */
  | { kind: 'finished' }
  /** Another claim holds a live lease (until `leaseUntil`), made with message `messageId`. */
  | { kind: 'held'; leaseUntil?: number; messageId?: string }
  /** No such invocation (never written, or expired and deleted). */
  | { kind: 'missing' };

export interface ClaimRequest {
  /** Token of this claim (newOwnerToken()). */
  owner: string;
  /** ApproximateReceiveCount of the delivery. */
  attempt: number;
  instanceId: string;
  /** SQS MessageId of the delivery. */
  messageId?: string;
  /** How long the claim holds unless renewed. */
  leaseMs: number;
}

/**
 * Claims an invocation for one delivery: QUEUED, or IN_PROGRESS under a lease
 * that expired (its worker died or lost its message), becomes IN_PROGRESS
 * under this claim. A live lease is never taken over.
 */
export async function claimInvocation(requestId: string, claim: ClaimRequest): Promise<Claim> {
  const now = Date.now();
  const leaseUntil = now + claim.leaseMs;
  const claimed = await conditionalWrite(() =>
    dynamo().send(
      new UpdateCommand({
        TableName: tableName('invocations'),
        Key: { requestId },
        UpdateExpression:
          'SET #status = :inProgress, #owner = :owner, leaseUntil = :leaseUntil, attempt = :attempt, instanceId = :instanceId, updatedAt = :updatedAt' +
          (claim.messageId ? ', messageId = :messageId REMOVE queuedVersion' : ' REMOVE messageId, queuedVersion'),
        ConditionExpression:
          'attribute_exists(requestId) AND (#status = :queued OR (#status = :inProgress AND (attribute_not_exists(leaseUntil) OR leaseUntil < :now)))',
        ExpressionAttributeNames: { '#status': 'status', '#owner': 'owner' },
        ExpressionAttributeValues: {
          ':queued': 'QUEUED',
          ':inProgress': 'IN_PROGRESS',
          ':owner': claim.owner,
          ':leaseUntil': leaseUntil,
          ':now': now,
          ':attempt': claim.attempt,
          ':instanceId': claim.instanceId,
          ':updatedAt': new Date(now).toISOString(),
          ...(claim.messageId ? { ':messageId': claim.messageId } : {}),
        },
      }),
    ),
  );
  if (claimed) return { kind: 'claimed', leaseUntil };
  const current = await getInvocation(requestId);
  if (!current) return { kind: 'missing' };
  // Our own write, whose answer was lost and whose retry then failed the condition.
  if (current.status === 'IN_PROGRESS' && current.owner === claim.owner) return { kind: 'claimed', leaseUntil: current.leaseUntil ?? leaseUntil };
  if (isTerminal(current.status)) return { kind: 'finished' };
  // QUEUED again here means it was handed back between our write and this read: the caller may try again.
  return { kind: 'held', leaseUntil: current.status === 'IN_PROGRESS' ? current.leaseUntil : undefined, messageId: current.messageId };
}

/**
 * Renews the owner's lease. False when `owner` no longer owns a running
 * invocation (taken over, finished, or errored by someone else): the owner
 * must stop working on it.
 */
export async function renewLease(requestId: string, owner: string, leaseMs: number): Promise<boolean> {
  return conditionalWrite(() =>
    dynamo().send(
      new UpdateCommand({
        TableName: tableName('invocations'),
        Key: { requestId },
        UpdateExpression: 'SET leaseUntil = :leaseUntil',
        ConditionExpression: '#status = :inProgress AND #owner = :owner',
        ExpressionAttributeNames: { '#status': 'status', '#owner': 'owner' },
        ExpressionAttributeValues: { ':inProgress': 'IN_PROGRESS', ':owner': owner, ':leaseUntil': Date.now() + leaseMs },
      }),
    ),
  );
}

/**
 * Hands a running invocation back: IN_PROGRESS under `owner` becomes QUEUED,
 * its lease and progress cleared, so the next delivery claims it at once.
 * `messageId` names the message that now carries it, when a new copy was sent.
 * False when `owner` did not own it any more.
 */
export async function releaseInvocation(requestId: string, owner: string, messageId?: string): Promise<boolean> {
  return conditionalWrite(() =>
    dynamo().send(
      new UpdateCommand({
        TableName: tableName('invocations'),
        Key: { requestId },
        UpdateExpression:
          'SET #status = :queued, queuedVersion = versionId, updatedAt = :now' +
          (messageId ? ', messageId = :messageId' : '') +
          ' REMOVE #owner, leaseUntil, percentComplete, partialResponse',
        ConditionExpression: '#status = :inProgress AND #owner = :owner',
        ExpressionAttributeNames: { '#status': 'status', '#owner': 'owner' },
        ExpressionAttributeValues: {
          ':queued': 'QUEUED',
          ':inProgress': 'IN_PROGRESS',
          ':owner': owner,
          ':now': new Date().toISOString(),
          ...(messageId ? { ':messageId': messageId } : {}),
        },
      }),
    ),
  );
}

/** Mirrors a progress file into the invocation; ignored unless `owner` still owns it. */
export async function recordProgress(requestId: string, owner: string, percentComplete: number, partialResponse: string | undefined): Promise<boolean> {
  return conditionalWrite(() =>
    dynamo().send(
      new UpdateCommand({
        TableName: tableName('invocations'),
        Key: { requestId },
        // A progress file without partialResponse clears the previous one rather than repeating it.
        UpdateExpression:
          partialResponse === undefined
            ? 'SET percentComplete = :percent, updatedAt = :now ADD progressVersion :one REMOVE partialResponse'
            : 'SET percentComplete = :percent, updatedAt = :now, partialResponse = :partial ADD progressVersion :one',
        ConditionExpression: '#status = :inProgress AND #owner = :owner',
        ExpressionAttributeNames: { '#status': 'status', '#owner': 'owner' },
        ExpressionAttributeValues: {
          ':inProgress': 'IN_PROGRESS',
          ':owner': owner,
          ':percent': percentComplete,
          ':now': new Date().toISOString(),
          ':one': 1,
          ...(partialResponse === undefined ? {} : { ':partial': partialResponse }),
        },
      }),
    ),
  );
}

export type Outcome = { result: InvocationResult } | { error: InvocationError };

/**
 * Gives an invocation its one and only outcome: with `owner`, only while that
 * claim owns it (IN_PROGRESS); without, while it is QUEUED or IN_PROGRESS (the
 * API erroring a request it could not queue). False when the outcome was not
 * taken: the invocation is terminal already, missing, or someone else's.
 * An error's detail is cut to MAX_PROBLEM_DETAIL_BYTES.
 */
export async function finishInvocation(requestId: string, outcome: Outcome, owner?: string, options: { abortSignal?: AbortSignal } = {}): Promise<boolean> {
  const fulfilled = 'result' in outcome;
  const to: InvocationStatus = fulfilled ? 'FULFILLED' : 'ERRORED';
  const stored = fulfilled ? outcome.result : { ...outcome.error, detail: truncateUtf8(outcome.error.detail, MAX_PROBLEM_DETAIL_BYTES) };
  const written = await conditionalWrite(() =>
    dynamo().send(
      new UpdateCommand({
        TableName: tableName('invocations'),
        Key: { requestId },
        UpdateExpression: 'SET #status = :to, #outcome = :outcome, updatedAt = :now REMOVE partialResponse, leaseUntil, queuedVersion',
        ConditionExpression:
          owner === undefined ? 'attribute_exists(requestId) AND #status IN (:queued, :inProgress)' : '#status = :inProgress AND #owner = :owner',
        ExpressionAttributeNames: { '#status': 'status', '#outcome': fulfilled ? 'result' : 'error', ...(owner === undefined ? {} : { '#owner': 'owner' }) },
        ExpressionAttributeValues: {
          ':to': to,
          ':outcome': stored,
          ':inProgress': 'IN_PROGRESS',
          ':now': new Date().toISOString(),
          ...(owner === undefined ? { ':queued': 'QUEUED' } : { ':owner': owner }),
        },
      }),
      options,
    ),
  );
  if (written || owner === undefined) return written;
  // A write whose answer was lost is retried by the SDK and then fails its own condition: the owner (kept on
  // the item) and the status tell that it was ours after all.
  const current = await getInvocation(requestId);
  return current?.owner === owner && current.status === to;
}

/** Bytes of a container's error body read to build the problem's detail (what the worker keeps in memory of a body). */
export const MAX_CONTAINER_ERROR_BODY_BYTES = MAX_RESPONSE_BYTES;

/**
 * The problem a container's ≥ 400 answer becomes on pexec (nvcf-api.md §3.2,
 * §7): NVCF's type and title for the status, and as detail what the container
 * said — its JSON `error` string, else its `detail` (a FastAPI validation
 * list as JSON text), else its text body (not JSON) — cut to
 * MAX_PROBLEM_DETAIL_BYTES; "Inference error" when it said nothing readable.
 */
export function containerProblem(status: number, body: Buffer | undefined): InvocationError {
  const text = body && body.length > 0 ? body.subarray(0, MAX_CONTAINER_ERROR_BODY_BYTES).toString('utf8') : '';
  let detail = 'Inference error';
  try {
    const parsed = JSON.parse(text) as { error?: unknown; detail?: unknown } | null;
    const said = typeof parsed?.error === 'string' && parsed.error ? parsed.error : parsed?.detail;
    if (typeof said === 'string' && said) detail = said;
    else if (said !== undefined && said !== null && typeof said !== 'string') detail = JSON.stringify(said);
  } catch {
    if (text.trim() && !text.includes('\uFFFD')) detail = text.trim();
  }
  return {
    status,
    type: `urn:inference-service:problem-details:${kebabReason(status)}`,
    title: reasonPhrase(status),
    detail: truncateUtf8(detail, MAX_PROBLEM_DETAIL_BYTES),
  };
}

/**
 * Cancels a durable invocation of `accountId` (QUEUED or IN_PROGRESS → CANCELED).
 * `missing` for an unknown, expired or another account's request; `terminal` with the status when it is over already.
 */
export async function cancelInvocation(accountId: string, requestId: string): Promise<{ kind: 'canceled' } | { kind: 'missing' } | { kind: 'terminal'; status: InvocationStatus }> {
  const canceled = await conditionalWrite(() =>
    dynamo().send(
      new UpdateCommand({
        TableName: tableName('invocations'),
        Key: { requestId },
        UpdateExpression: 'SET #status = :canceled, updatedAt = :now REMOVE partialResponse, leaseUntil, queuedVersion',
        ConditionExpression: 'accountId = :accountId AND expiresAt > :nowSeconds AND #status IN (:queued, :inProgress)',
        ExpressionAttributeNames: { '#status': 'status' },
        ExpressionAttributeValues: {
          ':canceled': 'CANCELED',
          ':accountId': accountId,
          ':queued': 'QUEUED',
          ':inProgress': 'IN_PROGRESS',
          ':now': new Date().toISOString(),
          ':nowSeconds': Math.floor(Date.now() / 1000),
        },
      }),
    ),
  );
  if (canceled) return { kind: 'canceled' };
  const current = await getOwnedInvocation(accountId, requestId);
  return current ? { kind: 'terminal', status: current.status } : { kind: 'missing' };
}
