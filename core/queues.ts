/**
 * Per-version SQS queues: `nvcf-<versionId>` carries invocations, with a
 * dead-letter queue beside it. Created on deploy, deleted on undeploy.
 */
import {
  CreateQueueCommand,
  DeleteQueueCommand,
  GetQueueAttributesCommand,
  GetQueueUrlCommand,
  QueueDoesNotExist,
} from '@aws-sdk/client-sqs';
import { GetCommand } from '@aws-sdk/lib-dynamodb';
import { dynamo, sqs } from './aws';
import { maxReceiveCount, queueKmsKeyId, queuePrefix, tableName } from './config';
import { QUEUE_POSITION_CAP, QUEUE_RETENTION_SECONDS, QUEUE_VISIBILITY_TIMEOUT_SECONDS } from './limits';
import type { InvocationStatus } from './model';
import { deadLetterQueueName, queueName } from './names';

export interface VersionQueues {
  queueUrl: string;
  deadLetterQueueUrl: string;
}

function encryptionAttributes(): Record<string, string> {
  const kmsKeyId = queueKmsKeyId();
  return kmsKeyId ? { KmsMasterKeyId: kmsKeyId } : { SqsManagedSseEnabled: 'true' };
}

/**
 * Creates (or finds, CreateQueue being idempotent for equal attributes) the
 * version's queue and dead-letter queue.
 */
export async function ensureVersionQueues(versionId: string, tags: Record<string, string> = {}): Promise<VersionQueues> {
  const prefix = queuePrefix();
  const { QueueUrl: deadLetterQueueUrl } = await sqs().send(
    new CreateQueueCommand({
      QueueName: deadLetterQueueName(versionId, prefix),
      Attributes: { MessageRetentionPeriod: String(QUEUE_RETENTION_SECONDS), ...encryptionAttributes() },
      tags,
    }),
  );
  const { Attributes } = await sqs().send(
    new GetQueueAttributesCommand({ QueueUrl: deadLetterQueueUrl, AttributeNames: ['QueueArn'] }),
  );
  const { QueueUrl: queueUrl } = await sqs().send(
    new CreateQueueCommand({
      QueueName: queueName(versionId, prefix),
      Attributes: {
        VisibilityTimeout: String(QUEUE_VISIBILITY_TIMEOUT_SECONDS),
        MessageRetentionPeriod: String(QUEUE_RETENTION_SECONDS),
        ReceiveMessageWaitTimeSeconds: '20',
        RedrivePolicy: JSON.stringify({ deadLetterTargetArn: Attributes?.QueueArn, maxReceiveCount: maxReceiveCount() }),
        ...encryptionAttributes(),
      },
      tags,
    }),
  );
  if (!queueUrl || !deadLetterQueueUrl) throw new Error(`SQS returned no queue URL for version ${versionId}`);
  return { queueUrl, deadLetterQueueUrl };
}

function isMissingQueue(error: unknown): boolean {
  return error instanceof QueueDoesNotExist || (error as Error).name === 'AWS.SimpleQueueService.NonExistentQueue';
}

async function findQueueUrl(name: string): Promise<string | undefined> {
  try {
    const { QueueUrl } = await sqs().send(new GetQueueUrlCommand({ QueueName: name }));
    return QueueUrl;
  } catch (error) {
    if (isMissingQueue(error)) return undefined;
    throw error;
  }
}

/** The URL of a version's queue, or undefined when it does not exist. */
export async function findVersionQueueUrl(versionId: string): Promise<string | undefined> {
  return findQueueUrl(queueName(versionId, queuePrefix()));
}

/** Whichever of a version's queue and dead-letter queue still exist. */
export async function findVersionQueues(versionId: string): Promise<Partial<VersionQueues>> {
  const prefix = queuePrefix();
  const [queueUrl, deadLetterQueueUrl] = await Promise.all([
    findQueueUrl(queueName(versionId, prefix)),
    findQueueUrl(deadLetterQueueName(versionId, prefix)),
  ]);
  return { queueUrl, deadLetterQueueUrl };
}

export interface QueueCounts {
  /** Messages waiting to be received (ApproximateNumberOfMessages). */
  waiting: number;
  /** Messages received and not yet deleted, i.e. being worked on (ApproximateNumberOfMessagesNotVisible). */
  inFlight: number;
}

/** SQS's approximate message counts of a queue, or undefined when the queue does not exist. */
export async function queueCounts(queueUrl: string): Promise<QueueCounts | undefined> {
  try {
    const { Attributes } = await sqs().send(
      new GetQueueAttributesCommand({ QueueUrl: queueUrl, AttributeNames: ['ApproximateNumberOfMessages', 'ApproximateNumberOfMessagesNotVisible'] }),
    );
    return {
      waiting: Number(Attributes?.ApproximateNumberOfMessages ?? 0),
      inFlight: Number(Attributes?.ApproximateNumberOfMessagesNotVisible ?? 0),
    };
  } catch (error) {
    if (isMissingQueue(error)) return undefined;
    throw error;
  }
}

/** Deletes a queue; a queue that is already gone is not an error. */
export async function deleteQueue(queueUrl: string): Promise<void> {
  try {
    await sqs().send(new DeleteQueueCommand({ QueueUrl: queueUrl }));
  } catch (error) {
    if (isMissingQueue(error)) return;
    throw error;
  }
}

export interface QueuePosition {
  functionId: string;
  functionVersionId: string;
  positionInQueue: number;
}

/**
 * Where an account's request stands, or undefined when the request is unknown
 * or another account's. SQS does not reveal order, so a queued request's
 * position is estimated as the number of messages waiting in its version's
 * queue (the worst case: it is last), capped at QUEUE_POSITION_CAP; a request
 * that has started or finished is at 0.
 */
export async function queuePosition(accountId: string, requestId: string): Promise<QueuePosition | undefined> {
  const { Item } = await dynamo().send(
    new GetCommand({
      TableName: tableName('invocations'),
      Key: { requestId },
      ProjectionExpression: 'accountId, functionId, versionId, #status, expiresAt',
      ExpressionAttributeNames: { '#status': 'status' },
      ConsistentRead: true,
    }),
  );
  const invocation = Item as { accountId: string; functionId: string; versionId: string; status: InvocationStatus; expiresAt?: number } | undefined;
  // DynamoDB deletes expired items only eventually; an expired request is gone for the API.
  if (!invocation || invocation.accountId !== accountId || (invocation.expiresAt ?? Infinity) * 1000 < Date.now()) return undefined;
  let positionInQueue = 0;
  if (invocation.status === 'QUEUED') {
    const queueUrl = await findVersionQueueUrl(invocation.versionId);
    const counts = queueUrl ? await queueCounts(queueUrl) : undefined;
    positionInQueue = Math.min(counts?.waiting ?? 0, QUEUE_POSITION_CAP);
  }
  return { functionId: invocation.functionId, functionVersionId: invocation.versionId, positionInQueue };
}
