/**
 * The Invocations table: one item per request, QUEUED → IN_PROGRESS →
 * FULFILLED | ERRORED. Every transition is a conditional write, so a
 * redelivered message, a second worker or a retried Lambda can never move a
 * terminal invocation or produce a second result.
 *
 * Ownership of a running invocation goes with the SQS delivery: `attempt` is
 * the message's ApproximateReceiveCount when it was claimed. A later delivery
 * (higher count) of a message whose worker died takes the invocation over;
 * progress is only accepted from the current owner.
 */
import { ConditionalCheckFailedException } from '@aws-sdk/client-dynamodb';
import { GetCommand, PutCommand, UpdateCommand } from '@aws-sdk/lib-dynamodb';
import { dynamo } from './aws';
import { tableName } from './config';
import { isTerminal, type InvocationStatus } from './model';
import { outputObjectPrefix } from './names';

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
  /** ApproximateReceiveCount of the delivery that owns the invocation. */
  attempt?: number;
  /** Instance whose worker owns it. */
  instanceId?: string;
  percentComplete?: number;
  /** JSON text of the latest progress file's partialResponse. */
  partialResponse?: string;
  /** Counts progress updates, so a poll can tell a new one from the one it saw. */
  progressVersion?: number;
  result?: InvocationResult;
  error?: InvocationError;
}

/** S3 key of a result zip. */
export function resultZipKey(requestId: string): string {
  return `${outputObjectPrefix(requestId)}result.zip`;
}

/** S3 key of a result body too large for the item. */
export function resultBodyKey(requestId: string): string {
  return `${outputObjectPrefix(requestId)}response`;
}

function isConditionFailure(error: unknown): boolean {
  return error instanceof ConditionalCheckFailedException;
}

/** Stores a new QUEUED invocation; throws if the request id is taken. */
export async function createQueuedInvocation(record: InvocationRecord): Promise<void> {
  await dynamo().send(
    new PutCommand({ TableName: tableName('invocations'), Item: record, ConditionExpression: 'attribute_not_exists(requestId)' }),
  );
}

/** An invocation as stored (strongly consistent), whoever owns it. */
export async function getInvocation(requestId: string): Promise<InvocationRecord | undefined> {
  const { Item } = await dynamo().send(new GetCommand({ TableName: tableName('invocations'), Key: { requestId }, ConsistentRead: true }));
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
  /** This delivery owns the invocation now: run it. */
  | 'claimed'
  /** The invocation already has its result: drop the message. */
  | 'finished'
  /** Another delivery at least as recent owns it. */
  | 'held'
  /** No such invocation (never written, or expired and deleted). */
  | 'missing';

/**
 * Claims an invocation for the delivery numbered `attempt`: QUEUED, or
 * IN_PROGRESS under an older delivery (its worker died or lost the message),
 * becomes IN_PROGRESS under this one.
 */
export async function claimInvocation(requestId: string, attempt: number, instanceId: string): Promise<Claim> {
  try {
    await dynamo().send(
      new UpdateCommand({
        TableName: tableName('invocations'),
        Key: { requestId },
        UpdateExpression: 'SET #status = :inProgress, attempt = :attempt, instanceId = :instanceId, updatedAt = :now',
        ConditionExpression:
          'attribute_exists(requestId) AND (#status = :queued OR (#status = :inProgress AND (attribute_not_exists(attempt) OR attempt < :attempt)))',
        ExpressionAttributeNames: { '#status': 'status' },
        ExpressionAttributeValues: {
          ':queued': 'QUEUED',
          ':inProgress': 'IN_PROGRESS',
          ':attempt': attempt,
          ':instanceId': instanceId,
          ':now': new Date().toISOString(),
        },
      }),
    );
    return 'claimed';
  } catch (error) {
    if (!isConditionFailure(error)) throw error;
  }
  const current = await getInvocation(requestId);
  if (!current) return 'missing';
  return isTerminal(current.status) ? 'finished' : 'held';
}

/** Mirrors a progress file into the invocation; ignored unless `attempt` still owns it. */
export async function recordProgress(requestId: string, attempt: number, percentComplete: number, partialResponse: string | undefined): Promise<boolean> {
  try {
    await dynamo().send(
      new UpdateCommand({
        TableName: tableName('invocations'),
        Key: { requestId },
        // A progress file without partialResponse clears the previous one rather than repeating it.
        UpdateExpression:
          partialResponse === undefined
            ? 'SET percentComplete = :percent, updatedAt = :now ADD progressVersion :one REMOVE partialResponse'
            : 'SET percentComplete = :percent, updatedAt = :now, partialResponse = :partial ADD progressVersion :one',
        ConditionExpression: '#status = :inProgress AND attempt = :attempt',
        ExpressionAttributeNames: { '#status': 'status' },
        ExpressionAttributeValues: {
          ':inProgress': 'IN_PROGRESS',
          ':attempt': attempt,
          ':percent': percentComplete,
          ':now': new Date().toISOString(),
          ':one': 1,
          ...(partialResponse === undefined ? {} : { ':partial': partialResponse }),
        },
      }),
    );
    return true;
  } catch (error) {
    if (isConditionFailure(error)) return false;
    throw error;
  }
}

export type Outcome = { result: InvocationResult } | { error: InvocationError };

/**
 * Gives a QUEUED or IN_PROGRESS invocation its one and only outcome. False
 * when it already had one (or is missing): the caller's outcome is discarded.
 */
export async function finishInvocation(requestId: string, outcome: Outcome): Promise<boolean> {
  const fulfilled = 'result' in outcome;
  try {
    await dynamo().send(
      new UpdateCommand({
        TableName: tableName('invocations'),
        Key: { requestId },
        UpdateExpression: `SET #status = :to, #outcome = :outcome, updatedAt = :now REMOVE partialResponse`,
        ConditionExpression: 'attribute_exists(requestId) AND #status IN (:queued, :inProgress)',
        ExpressionAttributeNames: { '#status': 'status', '#outcome': fulfilled ? 'result' : 'error' },
        ExpressionAttributeValues: {
          ':to': fulfilled ? 'FULFILLED' : 'ERRORED',
          ':outcome': fulfilled ? outcome.result : outcome.error,
          ':queued': 'QUEUED',
          ':inProgress': 'IN_PROGRESS',
          ':now': new Date().toISOString(),
        },
      }),
    );
    return true;
  } catch (error) {
    if (isConditionFailure(error)) return false;
    throw error;
  }
}
