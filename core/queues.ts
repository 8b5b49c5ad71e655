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
import { sqs } from './aws';
import { maxReceiveCount, queueKmsKeyId, queuePrefix } from './config';
import { QUEUE_RETENTION_SECONDS, QUEUE_VISIBILITY_TIMEOUT_SECONDS } from './limits';
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

/** The URL of a version's queue, or undefined when it does not exist. */
export async function findVersionQueueUrl(versionId: string): Promise<string | undefined> {
  try {
    const { QueueUrl } = await sqs().send(new GetQueueUrlCommand({ QueueName: queueName(versionId, queuePrefix()) }));
    return QueueUrl;
  } catch (error) {
    if (error instanceof QueueDoesNotExist || (error as Error).name === 'AWS.SimpleQueueService.NonExistentQueue') return undefined;
    throw error;
  }
}

/** Deletes a queue; a queue that is already gone is not an error. */
export async function deleteQueue(queueUrl: string): Promise<void> {
  try {
    await sqs().send(new DeleteQueueCommand({ QueueUrl: queueUrl }));
  } catch (error) {
    if (error instanceof QueueDoesNotExist || (error as Error).name === 'AWS.SimpleQueueService.NonExistentQueue') return;
    throw error;
  }
}
