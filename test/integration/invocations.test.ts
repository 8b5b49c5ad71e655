/**
 * The invocations Lambda on the emulators, with the test playing the worker:
 * request validation, the stored item and queue message, the wait loop and
 * the answers for each invocation state.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { GetObjectCommand, PutObjectCommand } from '@aws-sdk/client-s3';
import { DeleteMessageCommand, ReceiveMessageCommand } from '@aws-sdk/client-sqs';
import { PutCommand, UpdateCommand } from '@aws-sdk/lib-dynamodb';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { dynamo, s3, sqs } from '../../core/aws';
import { bucketName, tableName } from '../../core/config';
import { invocationMessageSchema, type InvocationMessage } from '../../core/invocation-message';
import { claimInvocation, finishInvocation, getInvocation, recordProgress, type ClaimRequest } from '../../core/invocations';
import { MAX_BINARY_REQUEST_BYTES, MAX_REQUEST_PAYLOAD_BODY_BYTES, MiB, POLL_WAIT_CAP_SECONDS } from '../../core/limits';
import { LocalGateway } from '../../local/gateway';
import type { FunctionStatus, FunctionVersionRecord } from '../../core/model';
import { assetObjectKey } from '../../core/names';
import { deployVersion, putVersion } from '../support/function-versions';
import { newAccount, startTestStack, type TestStack } from '../support/stack';

let stack: TestStack;
let account: { accountId: string; key: string };

async function versionWithStatus(status: FunctionStatus, functionId = randomUUID(), queueUrl?: string): Promise<FunctionVersionRecord> {
  const record = await putVersion(account.accountId, { functionId });
  return status === 'INACTIVE' ? record : deployVersion(record, { status, queueUrl });
}

function invoke(target: Pick<FunctionVersionRecord, 'functionId'>, options: { body?: unknown; headers?: Record<string, string>; key?: string } = {}) {
  return stack.call('POST', `/v2/nvcf/pexec/functions/${target.functionId}`, { key: options.key ?? account.key, body: options.body ?? { message: 'hi' }, headers: options.headers });
}

/** Receives the one message of a version's queue, as a worker would. */
async function receive(target: FunctionVersionRecord): Promise<{ message: InvocationMessage; receipt: string }> {
  const { Messages = [] } = await sqs().send(
    new ReceiveMessageCommand({ QueueUrl: target.deployment!.queueUrl, WaitTimeSeconds: 2, MessageSystemAttributeNames: ['ApproximateReceiveCount'] }),
  );
  expect(Messages).toHaveLength(1);
  return { message: invocationMessageSchema.parse(JSON.parse(Messages[0]!.Body!)), receipt: Messages[0]!.ReceiptHandle! };
}

let active: FunctionVersionRecord;

function claimBy(owner: string): ClaimRequest {
  return { owner, attempt: 1, instanceId: 'test', leaseMs: 60_000 };
}

/** Stores an asset item of `accountId`, its object uploaded or not. */
async function assetOf(accountId: string, options: { uploaded: boolean }): Promise<string> {
  const assetId = randomUUID();
  const key = assetObjectKey(accountId, assetId);
  await dynamo().send(
    new PutCommand({
      TableName: tableName('assets'),
      Item: { assetId, accountId, contentType: 'image/png', description: 'x', s3Key: key, status: 'CREATED', createdAt: new Date().toISOString(), expiresAt: Math.floor(Date.now() / 1000) + 600 },
    }),
  );
  if (options.uploaded) await s3().send(new PutObjectCommand({ Bucket: bucketName(), Key: key, Body: 'png' }));
  return assetId;
}

/** Deletes what waits in a version's queue. */
async function drain(target: FunctionVersionRecord): Promise<void> {
  const { receipt } = await receive(target);
  await sqs().send(new DeleteMessageCommand({ QueueUrl: target.deployment!.queueUrl, ReceiptHandle: receipt }));
}

beforeAll(async () => {
  stack = await startTestStack();
  account = await newAccount();
  active = await versionWithStatus('ACTIVE');
});
afterAll(async () => stack?.stop());

describe('refused invocations', () => {
  it('answers 404 for an unknown function and for another account’s function', async () => {
    expect((await invoke({ functionId: randomUUID() })).statusCode).toBe(404);
    const stranger = await newAccount();
    const response = await invoke(active, { key: stranger.key });
    expect(response.statusCode).toBe(404);
    expect(response.headers['content-type']).toBe('application/problem+json');
  });

  it('answers 400 naming the status when no version is ACTIVE, pinned or not', async () => {
    const deploying = await versionWithStatus('DEPLOYING');
    const response = await invoke(deploying);
    expect(response.statusCode).toBe(400);
    expect(response.json.detail).toMatch(/no ACTIVE version.*DEPLOYING/);
    const pinned = await stack.call('POST', `/v2/nvcf/pexec/functions/${deploying.functionId}/versions/${deploying.versionId}`, { key: account.key, body: {} });
    expect(pinned.statusCode).toBe(400);
    expect(pinned.json.detail).toContain('Status DEPLOYING');
  });

  it.each(['abc', '301', '-1', '1.5', ''])('answers 400 for NVCF-POLL-SECONDS "%s"', async (value) => {
    const response = await invoke(active, { headers: { 'NVCF-POLL-SECONDS': value } });
    expect(response.statusCode).toBe(400);
    expect(response.json.detail).toContain('NVCF-POLL-SECONDS');
  });

  it('answers 413 pointing to assets for a body over 5 MiB', async () => {
    const response = await invoke(active, { body: Buffer.alloc(5 * MiB + 1, 'a'), headers: { 'content-type': 'application/json' } });
    expect(response.statusCode).toBe(413);
    expect(response.json.detail).toMatch(/POST \/v2\/nvcf\/assets.*NVCF-INPUT-ASSET-REFERENCES/);
  });

  it('answers 413 pointing to assets for a binary body over MAX_BINARY_REQUEST_BYTES that still reached the Lambda', async () => {
    const response = await invoke(active, { body: randomBytes(MAX_BINARY_REQUEST_BYTES + 1), headers: { 'content-type': 'application/octet-stream', 'NVCF-POLL-SECONDS': '0' } });
    expect(response.statusCode).toBe(413);
    expect(response.headers['content-type']).toBe('application/problem+json');
    expect(response.json.detail).toContain(`at most ${MAX_BINARY_REQUEST_BYTES} bytes`);
    expect(response.json.detail).toMatch(/POST \/v2\/nvcf\/assets/);
  });

  it('answers 413 pointing to assets for a text body whose JSON-escaped form would not fit, though under 5 MiB', async () => {
    const response = await invoke(active, { body: Buffer.alloc(MAX_REQUEST_PAYLOAD_BODY_BYTES / 2 + 1024, '"'), headers: { 'content-type': 'text/plain', 'NVCF-POLL-SECONDS': '0' } });
    expect(response.statusCode).toBe(413);
    expect(response.headers['content-type']).toBe('application/problem+json');
    expect(response.json.detail).toContain('JSON-escaped');
    expect(response.json.detail).toMatch(/POST \/v2\/nvcf\/assets/);
  });

  it('answers 404 for an asset that was never uploaded, before queueing anything', async () => {
    const assetId = await assetOf(account.accountId, { uploaded: false });
    const response = await invoke(active, { headers: { 'NVCF-INPUT-ASSET-REFERENCES': assetId, 'NVCF-POLL-SECONDS': '0' } });
    expect(response.statusCode).toBe(404);
    expect(response.headers['content-type']).toBe('application/problem+json');
    expect(response.json.detail).toMatch(new RegExp(`^asset ${assetId} has no content: upload it first`));
    expect(response.headers['nvcf-reqid']).toBeUndefined();
    const uploaded = await assetOf(account.accountId, { uploaded: true });
    const accepted = await invoke(active, { headers: { 'NVCF-INPUT-ASSET-REFERENCES': uploaded, 'NVCF-POLL-SECONDS': '0' } });
    expect(accepted.statusCode).toBe(202);
    const { message } = await receive(active).then(async (received) => {
      await sqs().send(new DeleteMessageCommand({ QueueUrl: active.deployment!.queueUrl, ReceiptHandle: received.receipt }));
      return received;
    });
    expect(message.assetIds).toEqual([uploaded]);
  });

  it('answers 400 for a malformed asset reference and 404 for an unknown or foreign asset', async () => {
    expect((await invoke(active, { headers: { 'NVCF-INPUT-ASSET-REFERENCES': 'not-a-uuid' } })).statusCode).toBe(400);
    expect((await invoke(active, { headers: { 'NVCF-INPUT-ASSET-REFERENCES': randomUUID() } })).statusCode).toBe(404);
    const assetId = randomUUID();
    await dynamo().send(
      new PutCommand({
        TableName: tableName('assets'),
        Item: { assetId, accountId: 'someone-else', contentType: 'image/png', description: 'x', s3Key: assetObjectKey('someone-else', assetId), status: 'CREATED', createdAt: new Date().toISOString(), expiresAt: Math.floor(Date.now() / 1000) + 600 },
      }),
    );
    expect((await invoke(active, { headers: { 'NVCF-INPUT-ASSET-REFERENCES': assetId } })).statusCode).toBe(404);
  });

  it('marks the invocation errored and answers 503 when the message cannot be sent', async () => {
    const broken = await versionWithStatus('ACTIVE', randomUUID(), 'http://sqs.us-east-1.localhost:1/000000000000/nowhere');
    const response = await invoke(broken);
    expect(response.statusCode).toBe(503);
    const requestId = response.headers['nvcf-reqid']!;
    expect((await getInvocation(requestId))?.status).toBe('ERRORED');
    const polled = await stack.call('GET', `/v2/nvcf/pexec/status/${requestId}`, { key: account.key });
    expect(polled.statusCode).toBe(503);
    expect(polled.headers['nvcf-status']).toBe('errored');
  }, 60_000);
});

describe('accepted invocations', () => {
  it('stores the request QUEUED before queueing it, and answers 202 pending-evaluation at poll 0', async () => {
    const response = await invoke(active, { headers: { 'NVCF-POLL-SECONDS': '0', 'x-custom': 'kept', 'NVCF-REQID': 'forged' } });
    expect(response.statusCode).toBe(202);
    expect(response.headers['nvcf-status']).toBe('pending-evaluation');
    const requestId = response.headers['nvcf-reqid']!;
    expect(await getInvocation(requestId)).toMatchObject({ status: 'QUEUED', accountId: account.accountId, versionId: active.versionId, expiresAt: expect.any(Number) });
    const { message, receipt } = await receive(active);
    expect(message).toMatchObject({ requestId, accountId: account.accountId, pollSeconds: 0, assetIds: [], body: { kind: 'inline', encoding: 'utf8', data: '{"message":"hi"}' } });
    expect(message.headers).toMatchObject({ 'x-custom': 'kept', 'content-type': 'application/json' });
    expect(Object.keys(message.headers)).not.toContain('authorization');
    expect(Object.keys(message.headers)).not.toContain('nvcf-reqid');
    await sqs().send(new DeleteMessageCommand({ QueueUrl: active.deployment!.queueUrl, ReceiptHandle: receipt }));
  });

  it('keeps a small binary body inline as base64 and spills a 1 MiB body to S3', async () => {
    const small = randomBytes(1000);
    await invoke(active, { body: small, headers: { 'NVCF-POLL-SECONDS': '0', 'content-type': 'application/octet-stream' } });
    const first = await receive(active);
    expect(first.message.body).toEqual({ kind: 'inline', encoding: 'base64', data: small.toString('base64') });
    await sqs().send(new DeleteMessageCommand({ QueueUrl: active.deployment!.queueUrl, ReceiptHandle: first.receipt }));

    const large = randomBytes(MiB);
    await invoke(active, { body: large, headers: { 'NVCF-POLL-SECONDS': '0', 'content-type': 'application/octet-stream' } });
    const second = await receive(active);
    expect(second.message.body).toMatchObject({ kind: 's3', bytes: MiB });
    const { Body } = await s3().send(new GetObjectCommand({ Bucket: bucketName(), Key: (second.message.body as { key: string }).key }));
    expect(Buffer.from(await Body!.transformToByteArray()).equals(large)).toBe(true);
    await sqs().send(new DeleteMessageCommand({ QueueUrl: active.deployment!.queueUrl, ReceiptHandle: second.receipt }));
  });

  it('accepts a 5 MiB text body, spilled to S3', async () => {
    const text = JSON.stringify({ message: 'a'.repeat(5 * MiB - 20) });
    const response = await invoke(active, { body: text, headers: { 'content-type': 'application/json', 'NVCF-POLL-SECONDS': '0' } });
    expect(response.statusCode).toBe(202);
    const { message, receipt } = await receive(active);
    expect(message.body).toMatchObject({ kind: 's3', bytes: Buffer.byteLength(text) });
    await sqs().send(new DeleteMessageCommand({ QueueUrl: active.deployment!.queueUrl, ReceiptHandle: receipt }));
  });

  it('gives the container the real wait: NVCF-POLL-SECONDS 300 is cut to what the API waits', async () => {
    const pending = invoke(active, { headers: { 'NVCF-POLL-SECONDS': '300' } });
    const { message, receipt } = await receive(active);
    expect(message.pollSeconds).toBeLessThanOrEqual(POLL_WAIT_CAP_SECONDS);
    expect(message.pollSeconds).toBeGreaterThanOrEqual(POLL_WAIT_CAP_SECONDS - 1);
    await claimInvocation(message.requestId, claimBy('test'));
    await finishInvocation(message.requestId, { result: { status: 200, headers: {}, body: Buffer.from('"done"') } }, 'test');
    expect((await pending).statusCode).toBe(200);
    await sqs().send(new DeleteMessageCommand({ QueueUrl: active.deployment!.queueUrl, ReceiptHandle: receipt }));
  });

  it('forwards non-Latin-1 header values as their UTF-8 bytes and drops values no HTTP client can send', async () => {
    await invoke(active, { headers: { 'NVCF-POLL-SECONDS': '0', 'x-name': 'Zoë 😀', 'x-control': 'a\u0001b', 'x-plain': 'ok' } });
    const { message, receipt } = await receive(active);
    expect(Buffer.from(message.headers['x-name']!, 'latin1').toString('utf8')).toBe('Zoë 😀');
    expect(message.headers['x-plain']).toBe('ok');
    expect(message.headers).not.toHaveProperty('x-control');
    await sqs().send(new DeleteMessageCommand({ QueueUrl: active.deployment!.queueUrl, ReceiptHandle: receipt }));
  });

  it('answers 202 with NVCF-REQID before Lambda would end the function, whatever the poll window', async () => {
    const shortLived = new LocalGateway({ lambdaTimeoutSeconds: 5 });
    const started = Date.now();
    const response = await shortLived.handle({
      method: 'POST',
      path: `/v2/nvcf/pexec/functions/${active.functionId}`,
      headers: { authorization: `Bearer ${account.key}`, 'content-type': 'application/json', 'NVCF-POLL-SECONDS': '25' },
      body: Buffer.from('{}'),
    });
    expect(response.statusCode).toBe(202);
    expect(response.headers['nvcf-reqid']).toMatch(/^[0-9a-f-]{36}$/);
    expect(Date.now() - started).toBeLessThan(5000);
    await drain(active);
  });

  it('sees a result within a few milliseconds of its write early in the wait', async () => {
    const pending = invoke(active, { headers: { 'NVCF-POLL-SECONDS': '5' } });
    const { message, receipt } = await receive(active);
    await claimInvocation(message.requestId, claimBy('test'));
    await new Promise((resolve) => setTimeout(resolve, 40));
    const writtenAt = Date.now();
    await finishInvocation(message.requestId, { result: { status: 200, headers: { 'content-type': 'application/json' }, body: Buffer.from('"done"') } }, 'test');
    const response = await pending;
    const reaction = Date.now() - writtenAt;
    expect(response.statusCode).toBe(200);
    expect(response.json).toBe('done');
    expect(reaction).toBeLessThan(100);
    await sqs().send(new DeleteMessageCommand({ QueueUrl: active.deployment!.queueUrl, ReceiptHandle: receipt }));
  });

  it('answers a poll with the latest progress of the invocation’s owner', async () => {
    await invoke(active, { headers: { 'NVCF-POLL-SECONDS': '0' } });
    const { message, receipt } = await receive(active);
    expect(await claimInvocation(message.requestId, claimBy('test'))).toMatchObject({ kind: 'claimed' });
    expect(await recordProgress(message.requestId, 'test', 40, '{"stage":"denoising"}')).toBe(true);
    expect(await recordProgress(message.requestId, 'other', 90, '{"stale":true}')).toBe(false);
    const response = await stack.call('GET', `/v2/nvcf/pexec/status/${message.requestId}`, { key: account.key, headers: { 'NVCF-POLL-SECONDS': '0' } });
    expect(response.statusCode).toBe(202);
    expect(response.headers).toMatchObject({ 'nvcf-status': 'in-progress', 'nvcf-percent-complete': '40' });
    expect(response.json).toEqual({ stage: 'denoising' });
    expect(await finishInvocation(message.requestId, { error: { status: 500, detail: 'boom' } }, 'test')).toBe(true);
    await sqs().send(new DeleteMessageCommand({ QueueUrl: active.deployment!.queueUrl, ReceiptHandle: receipt }));
  });

  it('merges the container’s headers case-insensitively under NVCF-REQID and NVCF-STATUS, which it cannot forge', async () => {
    await invoke(active, { headers: { 'NVCF-POLL-SECONDS': '0' } });
    const { message, receipt } = await receive(active);
    await claimInvocation(message.requestId, claimBy('test'));
    const headers = { 'NVCF-STATUS': 'bogus', 'Nvcf-Reqid': 'forged', 'nvcf-percent-complete': '3', 'X-Kept': 'yes', 'Content-Type': 'application/json' };
    await finishInvocation(message.requestId, { result: { status: 200, headers, body: Buffer.from('"ok"') } }, 'test');
    const response = await stack.call('GET', `/v2/nvcf/pexec/status/${message.requestId}`, { key: account.key });
    expect(response.statusCode).toBe(200);
    expect(response.headers).toMatchObject({ 'nvcf-status': 'fulfilled', 'nvcf-reqid': message.requestId, 'x-kept': 'yes', 'content-type': 'application/json' });
    expect(response.headers).not.toHaveProperty('nvcf-percent-complete');
    await sqs().send(new DeleteMessageCommand({ QueueUrl: active.deployment!.queueUrl, ReceiptHandle: receipt }));
  });

  it('answers 404 on polling an unknown, foreign or expired request', async () => {
    expect((await stack.call('GET', `/v2/nvcf/pexec/status/${randomUUID()}`, { key: account.key })).statusCode).toBe(404);
    const response = await invoke(active, { headers: { 'NVCF-POLL-SECONDS': '0' } });
    const requestId = response.headers['nvcf-reqid']!;
    const stranger = await newAccount();
    expect((await stack.call('GET', `/v2/nvcf/pexec/status/${requestId}`, { key: stranger.key })).statusCode).toBe(404);
    await dynamo().send(
      new UpdateCommand({ TableName: tableName('invocations'), Key: { requestId }, UpdateExpression: 'SET expiresAt = :past', ExpressionAttributeValues: { ':past': Math.floor(Date.now() / 1000) - 1 } }),
    );
    expect((await stack.call('GET', `/v2/nvcf/pexec/status/${requestId}`, { key: account.key })).statusCode).toBe(404);
    const { receipt } = await receive(active);
    await sqs().send(new DeleteMessageCommand({ QueueUrl: active.deployment!.queueUrl, ReceiptHandle: receipt }));
  });
});

describe('result storage', () => {
  it('keeps a result body of MAX_INLINE_RESULT_BYTES inline in the item', async () => {
    await invoke(active, { headers: { 'NVCF-POLL-SECONDS': '0' } });
    const { message, receipt } = await receive(active);
    const body = randomBytes(300 * 1024);
    await claimInvocation(message.requestId, claimBy('test'));
    expect(await finishInvocation(message.requestId, { result: { status: 201, headers: { 'content-type': 'application/octet-stream' }, body } }, 'test')).toBe(true);
    const response = await stack.call('GET', `/v2/nvcf/pexec/status/${message.requestId}`, { key: account.key });
    expect(response.statusCode).toBe(201);
    expect(response.body.equals(body)).toBe(true);
    await sqs().send(new DeleteMessageCommand({ QueueUrl: active.deployment!.queueUrl, ReceiptHandle: receipt }));
  });

  it('answers a stored result that would not fit Lambda’s response with a problem carrying NVCF-REQID, not a gateway error', async () => {
    await invoke(active, { headers: { 'NVCF-POLL-SECONDS': '0' } });
    const { message, receipt } = await receive(active);
    // 4 MiB of quotes: under NVCF's 5 MiB, but 8 MiB once JSON-escaped in the Lambda's answer (as an older worker might have stored it).
    const key = `outputs/${message.requestId}/legacy/response`;
    await s3().send(new PutObjectCommand({ Bucket: bucketName(), Key: key, Body: Buffer.alloc(4 * MiB, '"') }));
    await claimInvocation(message.requestId, claimBy('test'));
    await finishInvocation(message.requestId, { result: { status: 200, headers: { 'content-type': 'text/plain' }, bodyKey: key } }, 'test');
    const response = await stack.call('GET', `/v2/nvcf/pexec/status/${message.requestId}`, { key: account.key });
    expect(response.statusCode).toBe(500);
    expect(response.headers['content-type']).toBe('application/problem+json');
    expect(response.headers['nvcf-reqid']).toBe(message.requestId);
    await sqs().send(new DeleteMessageCommand({ QueueUrl: active.deployment!.queueUrl, ReceiptHandle: receipt }));
  });
});
