import { GetQueueAttributesCommand } from '@aws-sdk/client-sqs';
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sqs } from '../../core/aws';
import { deleteQueue, ensureVersionQueues, findVersionQueueUrl } from '../../core/queues';
import { startTestStack, type TestStack } from '../support/stack';

describe('version queues', () => {
  let stack: TestStack;
  beforeAll(async () => {
    stack = await startTestStack();
  });
  afterAll(async () => stack.stop());

  it('creates a queue with a redrive policy to its dead-letter queue, idempotently', async () => {
    const versionId = randomUUID();
    const first = await ensureVersionQueues(versionId);
    const again = await ensureVersionQueues(versionId);
    expect(again).toEqual(first);
    expect(await findVersionQueueUrl(versionId)).toBe(first.queueUrl);

    const { Attributes } = await sqs().send(new GetQueueAttributesCommand({ QueueUrl: first.queueUrl, AttributeNames: ['All'] }));
    const redrive = JSON.parse(Attributes!.RedrivePolicy!);
    expect(redrive.deadLetterTargetArn).toContain(`nvcf-${versionId}-dlq`);
    expect(redrive.maxReceiveCount).toBe(3);
  });

  it('treats deleting a missing queue as done', async () => {
    const versionId = randomUUID();
    const { queueUrl } = await ensureVersionQueues(versionId);
    await deleteQueue(queueUrl);
    await deleteQueue(queueUrl);
    expect(await findVersionQueueUrl(versionId)).toBeUndefined();
  });
});
