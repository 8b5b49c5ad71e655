import { randomUUID } from 'node:crypto';
import { ReceiveMessageCommand, SendMessageBatchCommand } from '@aws-sdk/client-sqs';
import { CreateTableCommand, DescribeTableCommand } from '@aws-sdk/client-dynamodb';
import { PutCommand, QueryCommand } from '@aws-sdk/lib-dynamodb';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { dynamo, sqs } from '../../core/aws';
import { tableName } from '../../core/config';
import { getVersion } from '../../core/functions';
import { claimInvocation, createQueuedInvocation, newOwnerToken, type InvocationRecord } from '../../core/invocations';
import { QUEUE_POSITION_CAP } from '../../core/limits';
import type { FunctionVersionRecord, InvocationStatus } from '../../core/model';
import { ENV } from '../../core/names';
import { deployVersion, putVersion } from '../support/function-versions';
import { newAccount, startTestStack, type TestStack } from '../support/stack';
import { createLocalResources } from '../../local/resources';
import { QUEUED_INDEX } from '../../core/tables';

const SPEC = { gpu: 'L40S', instanceType: 'g6e.xlarge', minInstances: 1, maxInstances: 2 };

async function putInvocation(item: { accountId: string; functionId: string; versionId: string; status: InvocationStatus; expiresAt?: number }): Promise<string> {
  const requestId = randomUUID();
  const now = new Date().toISOString();
  await dynamo().send(
    new PutCommand({
      TableName: tableName('invocations'),
      Item: { requestId, createdAt: now, updatedAt: now, expiresAt: Math.floor(Date.now() / 1000) + 3600, ...item },
    }),
  );
  return requestId;
}

/** A QUEUED invocation of `version` accepted at `createdAt`, as the invocation service stores one. */
function queuedRecord(version: FunctionVersionRecord, createdAt: string): InvocationRecord {
  const { accountId, functionId, versionId } = version;
  return { requestId: randomUUID(), accountId, functionId, versionId, status: 'QUEUED', createdAt, updatedAt: createdAt, expiresAt: Math.floor(Date.now() / 1000) + 3600 };
}

async function sendMessages(queueUrl: string, count: number): Promise<void> {
  const batches = [];
  for (let start = 0; start < count; start += 10) {
    const size = Math.min(10, count - start);
    batches.push(
      sqs().send(
        new SendMessageBatchCommand({
          QueueUrl: queueUrl,
          Entries: Array.from({ length: size }, (_, i) => ({ Id: String(i), MessageBody: JSON.stringify({ requestId: randomUUID() }) })),
        }),
      ),
    );
  }
  await Promise.all(batches);
}

describe('queues', () => {
  let stack: TestStack;
  let owner: { accountId: string; key: string };
  let stranger: { accountId: string; key: string };

  beforeAll(async () => {
    stack = await startTestStack({ [ENV.gpus]: JSON.stringify([{ gpu: 'L40S', instanceTypes: ['g6e.xlarge'] }]) });
    owner = await newAccount();
    stranger = await newAccount();
  });
  afterAll(async () => stack.stop());

  async function deploy(version: FunctionVersionRecord, spec = SPEC): Promise<string> {
    const response = await stack.call('POST', `/v2/nvcf/deployments/functions/${version.functionId}/versions/${version.versionId}`, {
      key: owner.key,
      body: { deploymentSpecifications: [spec] },
    });
    expect(response.statusCode).toBe(200);
    return (await getVersion(version.functionId, version.versionId))!.deployment!.queueUrl;
  }

  describe('depth of a function (Q1)', () => {
    it('lists one entry per deployed version, counting waiting and in-flight messages', async () => {
      const first = await putVersion(owner.accountId, { name: 'depth-fn' });
      const second = await putVersion(owner.accountId, { functionId: first.functionId, name: 'depth-fn' });
      await putVersion(owner.accountId, { functionId: first.functionId, name: 'depth-fn' });
      const firstQueue = await deploy(first);
      await deploy(second, { ...SPEC, minInstances: 0 });
      await sendMessages(firstQueue, 3);
      await sqs().send(new ReceiveMessageCommand({ QueueUrl: firstQueue, MaxNumberOfMessages: 1, VisibilityTimeout: 60 }));

      const response = await stack.call('GET', `/v2/nvcf/queues/functions/${first.functionId}`, { key: owner.key });
      expect(response.statusCode).toBe(200);
      expect(response.json.functionId).toBe(first.functionId);
      expect(response.json.queues).toHaveLength(2);
      expect(response.json.queues).toEqual(
        expect.arrayContaining([
          { functionVersionId: first.versionId, functionName: 'depth-fn', functionStatus: 'DEPLOYING', queueDepth: 3 },
          { functionVersionId: second.versionId, functionName: 'depth-fn', functionStatus: 'ACTIVE', queueDepth: 0 },
        ]),
      );
    });

    it('answers an empty list for a function with no deployed version', async () => {
      const version = await putVersion(owner.accountId);
      const response = await stack.call('GET', `/v2/nvcf/queues/functions/${version.functionId}`, { key: owner.key });
      expect(response.statusCode).toBe(200);
      expect(response.json).toEqual({ functionId: version.functionId, queues: [] });
    });

    it("answers 404 for another account's function and for an unknown one", async () => {
      const version = await putVersion(owner.accountId);
      await deploy(version);
      for (const functionId of [version.functionId, randomUUID()]) {
        const response = await stack.call('GET', `/v2/nvcf/queues/functions/${functionId}`, { key: stranger.key });
        expect(response.statusCode).toBe(404);
        expect(response.headers['content-type']).toBe('application/problem+json');
      }
    });

    it('answers 400 for a function id that is not a UUID', async () => {
      const response = await stack.call('GET', '/v2/nvcf/queues/functions/not-a-uuid', { key: owner.key });
      expect(response.statusCode).toBe(400);
      expect(response.json.detail).toContain('functionId');
    });
  });

  describe('depth of a version (Q2)', () => {
    it('answers a single-element list', async () => {
      const version = await putVersion(owner.accountId, { name: 'one-fn' });
      const queueUrl = await deploy(version);
      await sendMessages(queueUrl, 2);
      const response = await stack.call('GET', `/v2/nvcf/queues/functions/${version.functionId}/versions/${version.versionId}`, { key: owner.key });
      expect(response.statusCode).toBe(200);
      expect(response.json).toEqual({
        functionId: version.functionId,
        queues: [{ functionVersionId: version.versionId, functionName: 'one-fn', functionStatus: 'DEPLOYING', queueDepth: 2 }],
      });
    });

    it("answers 404 for a version that is not deployed and for another account's version", async () => {
      const idle = await putVersion(owner.accountId);
      const notDeployed = await stack.call('GET', `/v2/nvcf/queues/functions/${idle.functionId}/versions/${idle.versionId}`, { key: owner.key });
      expect(notDeployed.statusCode).toBe(404);
      expect(notDeployed.json.detail).toContain('not deployed');

      const deployed = await putVersion(owner.accountId);
      await deploy(deployed);
      const foreign = await stack.call('GET', `/v2/nvcf/queues/functions/${deployed.functionId}/versions/${deployed.versionId}`, { key: stranger.key });
      expect(foreign.statusCode).toBe(404);
      expect(foreign.json.detail).toContain('not found');
    });
  });

  describe('position of a request (Q3)', () => {
    const position = async (requestId: string) => (await stack.call('GET', `/v2/nvcf/queues/${requestId}/position`, { key: owner.key })).json.positionInQueue;

    it('numbers queued requests in the order they were accepted; one that starts is at 0 and those behind it move up', async () => {
      const version = await deployVersion(await putVersion(owner.accountId), { status: 'ACTIVE' });
      const other = await deployVersion(await putVersion(owner.accountId), { status: 'ACTIVE' });
      const accept = async (target: FunctionVersionRecord) => {
        const accepted = await stack.call('POST', `/v2/nvcf/pexec/functions/${target.functionId}/versions/${target.versionId}`, {
          key: owner.key,
          body: { prompt: 'wait' },
          headers: { 'nvcf-poll-seconds': '0' },
        });
        expect(accepted.statusCode).toBe(202);
        return accepted.headers['nvcf-reqid'] as string;
      };
      const requestIds: string[] = [];
      for (let i = 0; i < 5; i += 1) {
        requestIds.push(await accept(version));
        await accept(other); // another version's queue counts for nothing here
      }

      const response = await stack.call('GET', `/v2/nvcf/queues/${requestIds[2]}/position`, { key: owner.key });
      expect(response.statusCode).toBe(200);
      expect(response.json).toEqual({ functionId: version.functionId, functionVersionId: version.versionId, positionInQueue: 3 });
      expect(await Promise.all(requestIds.map(position))).toEqual([1, 2, 3, 4, 5]);

      const claim = await claimInvocation(requestIds[0]!, { owner: newOwnerToken(), attempt: 1, instanceId: 'i-1', leaseMs: 60_000 });
      expect(claim.kind).toBe('claimed');
      expect(await Promise.all(requestIds.map(position))).toEqual([0, 1, 2, 3, 4]);

      expect((await stack.call('POST', `/v2/nvcf/pexec/cancel/${requestIds[2]}`, { key: owner.key })).statusCode).toBeLessThan(300);
      expect(await Promise.all(requestIds.map(position))).toEqual([0, 1, 0, 2, 3]);
    });

    it(`caps the position at ${QUEUE_POSITION_CAP}`, async () => {
      const version = await deployVersion(await putVersion(owner.accountId), { status: 'ACTIVE' });
      const ahead = Array.from({ length: QUEUE_POSITION_CAP + 5 }, (_, i) => new Date(Date.now() - 60_000 + i).toISOString());
      await Promise.all(ahead.map((createdAt) => createQueuedInvocation(queuedRecord(version, createdAt))));
      const last = queuedRecord(version, new Date().toISOString());
      await createQueuedInvocation(last);
      expect(await position(last.requestId)).toBe(QUEUE_POSITION_CAP);
    });

    it('gives an invocations table kept from before queue positions (NVCF_DATA_DIR) the index they need', async () => {
      const name = `old-invocations-${randomUUID().slice(0, 8)}`;
      await dynamo().send(
        new CreateTableCommand({
          TableName: name,
          BillingMode: 'PAY_PER_REQUEST',
          AttributeDefinitions: [{ AttributeName: 'requestId', AttributeType: 'S' }],
          KeySchema: [{ AttributeName: 'requestId', KeyType: 'HASH' }],
        }),
      );
      const version = await putVersion(owner.accountId);
      const queued = [queuedRecord(version, new Date(Date.now() - 1000).toISOString()), queuedRecord(version, new Date().toISOString())];
      for (const record of queued) await dynamo().send(new PutCommand({ TableName: name, Item: record }));

      await createLocalResources({ ...stack.env, [ENV.invocationsTable]: name });

      const { Table } = await dynamo().send(new DescribeTableCommand({ TableName: name }));
      expect(Table?.GlobalSecondaryIndexes?.map((index) => index.IndexName)).toEqual([QUEUED_INDEX]);
      const kept = await dynamo().send(new QueryCommand({ TableName: name, IndexName: QUEUED_INDEX, KeyConditionExpression: 'queuedVersion = :v', ExpressionAttributeValues: { ':v': version.versionId } }));
      expect(kept.Items?.map((item) => item.requestId)).toEqual(queued.map((record) => record.requestId));
    });

    it('puts a request that has started or finished at position 0', async () => {
      const version = await deployVersion(await putVersion(owner.accountId), { status: 'ACTIVE' });
      const { queueUrl } = version.deployment!;
      await sendMessages(queueUrl, 4);
      for (const status of ['IN_PROGRESS', 'FULFILLED', 'ERRORED'] as const) {
        const requestId = await putInvocation({ accountId: owner.accountId, functionId: version.functionId, versionId: version.versionId, status });
        const response = await stack.call('GET', `/v2/nvcf/queues/${requestId}/position`, { key: owner.key });
        expect(response.json.positionInQueue).toBe(0);
      }
    });

    it("answers 404 for another account's request, an unknown one and an expired one", async () => {
      const version = await putVersion(owner.accountId);
      const mine = await putInvocation({ accountId: owner.accountId, functionId: version.functionId, versionId: version.versionId, status: 'QUEUED' });
      const expired = await putInvocation({
        accountId: owner.accountId,
        functionId: version.functionId,
        versionId: version.versionId,
        status: 'FULFILLED',
        expiresAt: Math.floor(Date.now() / 1000) - 10,
      });
      const cases: [string, string][] = [
        [stranger.key, mine],
        [owner.key, randomUUID()],
        [owner.key, expired],
      ];
      for (const [key, requestId] of cases) {
        const response = await stack.call('GET', `/v2/nvcf/queues/${requestId}/position`, { key });
        expect(response.statusCode).toBe(404);
      }
    });
  });

  it('answers 401 without a key and 403 without the queue_details scope on every route', async () => {
    const limited = await newAccount(['list_functions', 'invoke_function']);
    const functionId = randomUUID();
    const paths = [`/v2/nvcf/queues/functions/${functionId}`, `/v2/nvcf/queues/functions/${functionId}/versions/${randomUUID()}`, `/v2/nvcf/queues/${randomUUID()}/position`];
    for (const path of paths) {
      expect((await stack.call('GET', path)).statusCode).toBe(401);
      const forbidden = await stack.call('GET', path, { key: limited.key });
      expect(forbidden.statusCode).toBe(403);
      expect(forbidden.json.detail).toContain('queue_details');
    }
  });
});
