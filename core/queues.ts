/**
 * The SQS queues of deployments: `<prefix><versionId>-<generation>` carries
 * invocations, with a dead-letter queue beside it (core/names.ts). Created on
 * deploy; deleted by the sweeper (core/sweeper.ts) once no deployment refers to
 * them and they are drained.
 */
import {
  CreateQueueCommand,
  DeleteQueueCommand,
  GetQueueAttributesCommand,
  ListQueuesCommand,
  ListQueueTagsCommand,
  QueueDoesNotExist,
  TagQueueCommand,
} from '@aws-sdk/client-sqs';
import { GetCommand, paginateQuery } from '@aws-sdk/lib-dynamodb';
import { dynamo, sqs } from './aws';
import { maxReceiveCount, queueKmsKeyId, queuePrefix, tableName } from './config';
import { QUEUE_POSITION_CAP, QUEUE_RETENTION_SECONDS, QUEUE_VISIBILITY_TIMEOUT_SECONDS } from './limits';
import type { InvocationStatus } from './model';
import { deploymentQueueNames, type DeploymentQueueNames } from './names';
import { QUEUED_INDEX } from './tables';

export interface VersionQueues {
  queueUrl: string;
  deadLetterQueueUrl: string;
}

function encryptionAttributes(): Record<string, string> {
  const kmsKeyId = queueKmsKeyId();
  return kmsKeyId ? { KmsMasterKeyId: kmsKeyId } : { SqsManagedSseEnabled: 'true' };
}

/** The queue names of a new deployment of `versionId`, under the configured prefix. */
export function newDeploymentQueueNames(versionId: string, generation: string): DeploymentQueueNames {
  return deploymentQueueNames(versionId, generation, queuePrefix());
}

/**
 * Creates (or finds, CreateQueue being idempotent for equal attributes) a
 * deployment's queue and dead-letter queue.
 */
export async function ensureDeploymentQueues(names: DeploymentQueueNames, tags: Record<string, string> = {}): Promise<VersionQueues> {
  const { QueueUrl: deadLetterQueueUrl } = await sqs().send(
    new CreateQueueCommand({
      QueueName: names.deadLetterQueueName,
      Attributes: { MessageRetentionPeriod: String(QUEUE_RETENTION_SECONDS), ...encryptionAttributes() },
      tags,
    }),
  );
  const { Attributes } = await sqs().send(
    new GetQueueAttributesCommand({ QueueUrl: deadLetterQueueUrl, AttributeNames: ['QueueArn'] }),
  );
  const { QueueUrl: queueUrl } = await sqs().send(
    new CreateQueueCommand({
      QueueName: names.queueName,
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
  if (!queueUrl || !deadLetterQueueUrl) throw new Error(`SQS returned no queue URL for ${names.queueName}`);
  return { queueUrl, deadLetterQueueUrl };
}

function isMissingQueue(error: unknown): boolean {
  return error instanceof QueueDoesNotExist || (error as Error).name === 'AWS.SimpleQueueService.NonExistentQueue';
}

/** URLs of every queue of this installation (its name prefix), dead-letter queues included. */
export async function listPlatformQueues(): Promise<string[]> {
  const urls: string[] = [];
  let NextToken: string | undefined;
  do {
    const page = await sqs().send(new ListQueuesCommand({ QueueNamePrefix: queuePrefix(), MaxResults: 1000, NextToken }));
    urls.push(...(page.QueueUrls ?? []));
    NextToken = page.NextToken;
  } while (NextToken);
  return urls;
}

/** A queue's tags, or undefined when the queue does not exist. */
export async function queueTags(queueUrl: string): Promise<Record<string, string> | undefined> {
  try {
    return (await sqs().send(new ListQueueTagsCommand({ QueueUrl: queueUrl }))).Tags ?? {};
  } catch (error) {
    if (isMissingQueue(error)) return undefined;
    throw error;
  }
}

/** Tag of a deployment's queues once no deployment uses them: when that happened, epoch milliseconds. */
export const UNDEPLOYED_AT_TAG = 'nvcf:undeployed-at';

export async function tagQueue(queueUrl: string, tags: Record<string, string>): Promise<void> {
  await sqs().send(new TagQueueCommand({ QueueUrl: queueUrl, Tags: tags }));
}

export interface QueueCounts {
  /** Messages waiting to be received (ApproximateNumberOfMessages). */
  waiting: number;
  /** Messages received and not yet deleted, i.e. being worked on (ApproximateNumberOfMessagesNotVisible). */
  inFlight: number;
  /** Messages sent with a delay that has not passed yet (ApproximateNumberOfMessagesDelayed). */
  delayed: number;
  /** When the queue was created, epoch milliseconds. */
  createdAt: number;
}

/** SQS's approximate message counts of a queue, or undefined when the queue does not exist. */
export async function queueCounts(queueUrl: string): Promise<QueueCounts | undefined> {
  try {
    const { Attributes } = await sqs().send(
      new GetQueueAttributesCommand({
        QueueUrl: queueUrl,
        AttributeNames: ['ApproximateNumberOfMessages', 'ApproximateNumberOfMessagesNotVisible', 'ApproximateNumberOfMessagesDelayed', 'CreatedTimestamp'],
      }),
    );
    return {
      waiting: Number(Attributes?.ApproximateNumberOfMessages ?? 0),
      inFlight: Number(Attributes?.ApproximateNumberOfMessagesNotVisible ?? 0),
      delayed: Number(Attributes?.ApproximateNumberOfMessagesDelayed ?? 0),
      createdAt: Number(Attributes?.CreatedTimestamp ?? 0) * 1000,
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
 * or another account's. A queued request is at 1 + the number of requests
 * queued for its version before it (QUEUED_INDEX, oldest first), counted up to
 * QUEUE_POSITION_CAP; a request that has started or finished is at 0. Only
 * stored requests are counted: a synchronous call still held by its caller's
 * connection is stored once it turns durable (at its poll timeout).
 */
export async function queuePosition(accountId: string, requestId: string): Promise<QueuePosition | undefined> {
  const { Item } = await dynamo().send(
    new GetCommand({
      TableName: tableName('invocations'),
      Key: { requestId },
      ProjectionExpression: 'accountId, functionId, versionId, #status, createdAt, expiresAt',
      ExpressionAttributeNames: { '#status': 'status' },
      ConsistentRead: true,
    }),
  );
  const invocation = Item as { accountId: string; functionId: string; versionId: string; status: InvocationStatus; createdAt: string; expiresAt?: number } | undefined;
  // DynamoDB deletes expired items only eventually; an expired request is gone for the API.
  if (!invocation || invocation.accountId !== accountId || (invocation.expiresAt ?? Infinity) * 1000 < Date.now()) return undefined;
  const positionInQueue = invocation.status === 'QUEUED' ? Math.min(1 + (await countQueuedBefore(invocation.versionId, invocation.createdAt)), QUEUE_POSITION_CAP) : 0;
  return { functionId: invocation.functionId, functionVersionId: invocation.versionId, positionInQueue };
}

/** Requests queued for `versionId` before `createdAt`, counted up to QUEUE_POSITION_CAP (a count reads keys only). */
async function countQueuedBefore(versionId: string, createdAt: string): Promise<number> {
  let count = 0;
  const pages = paginateQuery(
    { client: dynamo(), pageSize: QUEUE_POSITION_CAP },
    {
      TableName: tableName('invocations'),
      IndexName: QUEUED_INDEX,
      KeyConditionExpression: 'queuedVersion = :versionId AND createdAt < :createdAt',
      ExpressionAttributeValues: { ':versionId': versionId, ':createdAt': createdAt },
      Select: 'COUNT',
    },
  );
  for await (const page of pages) {
    count += page.Count ?? 0;
    if (count >= QUEUE_POSITION_CAP) break;
  }
  return count;
}
