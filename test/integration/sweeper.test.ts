/**
 * The queues of deployments over their life: created per deployment with a
 * dead-letter queue, and swept (core/sweeper.ts) once they fail work or no
 * deployment uses them. Real SQS calls against fauxqs, real DynamoDB writes.
 */
import { randomUUID } from 'node:crypto';
import { GetQueueAttributesCommand, ReceiveMessageCommand, SendMessageCommand } from '@aws-sdk/client-sqs';
import { GetCommand, PutCommand, UpdateCommand } from '@aws-sdk/lib-dynamodb';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { dynamo, sqs } from '../../core/aws';
import { tableName } from '../../core/config';
import type { InvocationStatus } from '../../core/model';
import { deploymentQueueNames } from '../../core/names';
import { UNDEPLOYED_AT_TAG, deleteQueue, ensureDeploymentQueues, listPlatformQueues, newDeploymentQueueNames, queueTags } from '../../core/queues';
import { SWEEPER, sweepQueues } from '../../core/sweeper';
import { deployVersion, putVersion } from '../support/function-versions';
import { startTestStack, type TestStack } from '../support/stack';

let stack: TestStack;
beforeAll(async () => {
  stack = await startTestStack();
});
afterAll(async () => stack.stop());

async function putInvocation(status: InvocationStatus): Promise<string> {
  const requestId = randomUUID();
  const now = new Date().toISOString();
  await dynamo().send(
    new PutCommand({
      TableName: tableName('invocations'),
      Item: { requestId, accountId: 'acct', functionId: randomUUID(), versionId: randomUUID(), status, createdAt: now, updatedAt: now, expiresAt: Math.floor(Date.now() / 1000) + 3600 },
    }),
  );
  return requestId;
}

async function invocation(requestId: string): Promise<Record<string, any>> {
  return (await dynamo().send(new GetCommand({ TableName: tableName('invocations'), Key: { requestId } }))).Item!;
}

async function send(queueUrl: string, requestId: string): Promise<void> {
  await sqs().send(new SendMessageCommand({ QueueUrl: queueUrl, MessageBody: JSON.stringify({ requestId }) }));
}

/** Receives the message like a worker that then dies: it stays in flight for `seconds`. */
async function receive(queueUrl: string, seconds: number): Promise<void> {
  const { Messages = [] } = await sqs().send(new ReceiveMessageCommand({ QueueUrl: queueUrl, VisibilityTimeout: seconds, WaitTimeSeconds: 1 }));
  expect(Messages).toHaveLength(1);
}

const exists = async (queueUrl: string) => (await listPlatformQueues()).includes(queueUrl);
/** A pass as it runs `ms` from now. */
const sweepIn = (ms: number) => sweepQueues({ now: Date.now() + ms });

describe('deployment queues', () => {
  it('are named after the version and the deployment, with a redrive policy to the dead-letter queue, created idempotently', async () => {
    const versionId = randomUUID();
    const names = deploymentQueueNames(versionId, 'a1b2c3d4');
    expect(names).toEqual({ queueName: `nvcf-${versionId}-a1b2c3d4`, deadLetterQueueName: `nvcf-${versionId}-a1b2c3d4-dlq` });
    const first = await ensureDeploymentQueues(newDeploymentQueueNames(versionId, 'a1b2c3d4'));
    expect(await ensureDeploymentQueues(newDeploymentQueueNames(versionId, 'a1b2c3d4'))).toEqual(first);

    const { Attributes } = await sqs().send(new GetQueueAttributesCommand({ QueueUrl: first.queueUrl, AttributeNames: ['All'] }));
    const redrive = JSON.parse(Attributes!.RedrivePolicy!);
    expect(redrive.deadLetterTargetArn).toMatch(/a1b2c3d4-dlq$/);
    expect(redrive.maxReceiveCount).toBe(3);
    await Promise.all([deleteQueue(first.queueUrl), deleteQueue(first.deadLetterQueueUrl)]);
    await deleteQueue(first.queueUrl);
    expect(await exists(first.queueUrl)).toBe(false);
  });
});

describe('the sweeper', () => {
  it('errors the invocations whose messages went to a deployed version’s dead-letter queue, and keeps the messages there', async () => {
    const version = await deployVersion(await putVersion('acct'), { status: 'ACTIVE' });
    const { deadLetterQueueUrl } = version.deployment!;
    const [dead, done] = [await putInvocation('IN_PROGRESS'), await putInvocation('FULFILLED')];
    await send(deadLetterQueueUrl, dead);
    await send(deadLetterQueueUrl, done);

    const report = await sweepQueues();

    expect(report.errored).toBe(1);
    expect(await invocation(dead)).toMatchObject({ status: 'ERRORED', error: { status: 500, detail: expect.stringContaining('delivered 3 times and never completed') } });
    expect((await invocation(done)).status).toBe('FULFILLED');
    const { Attributes } = await sqs().send(new GetQueueAttributesCommand({ QueueUrl: deadLetterQueueUrl, AttributeNames: ['ApproximateNumberOfMessagesNotVisible'] }));
    expect(Attributes!.ApproximateNumberOfMessagesNotVisible).toBe('2');
    expect((await sweepQueues()).errored).toBe(0);
  });

  it('does not end a job that another message carries now (a fresh copy sent by a worker on its last delivery)', async () => {
    const version = await deployVersion(await putVersion('acct'), { status: 'ACTIVE' });
    const carried = await putInvocation('IN_PROGRESS');
    await dynamo().send(new UpdateCommand({ TableName: tableName('invocations'), Key: { requestId: carried }, UpdateExpression: 'SET messageId = :copy', ExpressionAttributeValues: { ':copy': 'the-fresh-copy' } }));
    await send(version.deployment!.deadLetterQueueUrl, carried);

    expect((await sweepQueues()).errored).toBe(0);
    expect((await invocation(carried)).status).toBe('IN_PROGRESS');
  });

  it('leaves the queues of a deploy still writing its record alone, and retires them once older than the grace period', async () => {
    const queues = await ensureDeploymentQueues(newDeploymentQueueNames(randomUUID(), 'feedc0de'));
    const waiting = await putInvocation('QUEUED');
    await send(queues.queueUrl, waiting);

    await sweepQueues();
    expect(await queueTags(queues.queueUrl)).toEqual({});
    expect((await invocation(waiting)).status).toBe('QUEUED');

    const retiredAt = Date.now() + SWEEPER.deployGraceMs;
    await sweepQueues({ now: retiredAt });
    expect(Number((await queueTags(queues.queueUrl))![UNDEPLOYED_AT_TAG])).toBe(retiredAt);
    expect(await invocation(waiting)).toMatchObject({ status: 'ERRORED', error: { status: 503 } });
    expect(await exists(queues.queueUrl)).toBe(true);

    await sweepQueues({ now: retiredAt + SWEEPER.quietMs });
    expect(await exists(queues.queueUrl)).toBe(false);
    expect(await exists(queues.deadLetterQueueUrl)).toBe(false);
  });

  it('errors a message sent to a retired queue during its quiet period (an invocation racing the undeploy)', async () => {
    const version = await deployVersion(await putVersion('acct'), { status: 'ACTIVE' });
    const { queueUrl } = version.deployment!;
    const racing = await putInvocation('QUEUED');
    await stackUndeploy(version.functionId, version.versionId);
    await send(queueUrl, racing);

    await sweepIn(SWEEPER.quietMs);

    expect(await invocation(racing)).toMatchObject({ status: 'ERRORED', error: { status: 503 } });
    expect(await exists(queueUrl)).toBe(false);
  });

  it('keeps a retired queue while a message is in flight, and errors it once its worker hands it back', async () => {
    const version = await deployVersion(await putVersion('acct'), { status: 'ACTIVE' });
    const { queueUrl, deadLetterQueueUrl } = version.deployment!;
    const running = await putInvocation('IN_PROGRESS');
    await send(queueUrl, running);
    const handedBackAt = Date.now() + 5000;
    await receive(queueUrl, 5);
    await stackUndeploy(version.functionId, version.versionId);

    await sweepIn(SWEEPER.quietMs);
    expect(await exists(queueUrl)).toBe(true);
    expect(await exists(deadLetterQueueUrl)).toBe(true);
    expect((await invocation(running)).status).toBe('IN_PROGRESS');

    await new Promise((resolve) => setTimeout(resolve, handedBackAt + 100 - Date.now()));
    await sweepIn(SWEEPER.quietMs);
    expect(await invocation(running)).toMatchObject({ status: 'ERRORED', error: { status: 503 } });
    expect(await exists(queueUrl)).toBe(false);
    expect(await exists(deadLetterQueueUrl)).toBe(false);
  });

  it('starts no work once its deadline has passed, leaving it to the next pass', async () => {
    const queues = await ensureDeploymentQueues(newDeploymentQueueNames(randomUUID(), 'deadbeef'));
    await sweepQueues({ now: Date.now() + SWEEPER.deployGraceMs, deadline: Date.now() });
    expect(await queueTags(queues.queueUrl)).toEqual({});
    await sweepQueues({ now: Date.now() + SWEEPER.deployGraceMs });
    expect(await queueTags(queues.queueUrl)).toHaveProperty(UNDEPLOYED_AT_TAG);
  });

  it('deletes a retired queue whose messages stay in flight past the drain limit', async () => {
    const version = await deployVersion(await putVersion('acct'), { status: 'ACTIVE' });
    const { queueUrl } = version.deployment!;
    await send(queueUrl, await putInvocation('IN_PROGRESS'));
    await receive(queueUrl, 600);
    await stackUndeploy(version.functionId, version.versionId);

    await sweepIn(SWEEPER.drainLimitMs);

    expect(await exists(queueUrl)).toBe(false);
  });
});

/** D4 through the real handler, by the version's owner. */
async function stackUndeploy(functionId: string, versionId: string): Promise<void> {
  const { createApiKey } = await import('../../core/api-keys');
  const { key } = await createApiKey({ accountId: 'acct' });
  const response = await stack.call('DELETE', `/v2/nvcf/deployments/functions/${functionId}/versions/${versionId}`, { key });
  expect(response.statusCode).toBe(200);
}
