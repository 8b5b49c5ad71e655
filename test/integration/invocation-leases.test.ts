/**
 * Ownership of a running invocation on DynamoDB (dynalite): claims under a
 * lease, and the writes only the owner may make.
 */
import { randomUUID } from 'node:crypto';
import { UpdateCommand } from '@aws-sdk/lib-dynamodb';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { dynamo } from '../../core/aws';
import { tableName } from '../../core/config';
import {
  claimInvocation,
  createQueuedInvocation,
  finishInvocation,
  getInvocation,
  recordProgress,
  releaseInvocation,
  renewLease,
  resultBodyKey,
  resultZipKey,
  type ClaimRequest,
} from '../../core/invocations';
import { MAX_PROBLEM_DETAIL_BYTES } from '../../core/limits';
import { startTestStack, type TestStack } from '../support/stack';

let stack: TestStack;

beforeAll(async () => {
  stack = await startTestStack();
});
afterAll(async () => stack?.stop());

async function queued(): Promise<string> {
  const requestId = randomUUID();
  const now = new Date();
  await createQueuedInvocation({
    requestId,
    accountId: 'acct-lease',
    functionId: randomUUID(),
    versionId: randomUUID(),
    status: 'QUEUED',
    createdAt: now.toISOString(),
    updatedAt: now.toISOString(),
    expiresAt: Math.floor(now.getTime() / 1000) + 600,
  });
  return requestId;
}

function claimBy(owner: string, overrides: Partial<ClaimRequest> = {}): ClaimRequest {
  return { owner, attempt: 1, instanceId: `instance-${owner}`, messageId: `message-${owner}`, leaseMs: 60_000, ...overrides };
}

/**
 * Makes DynamoDB apply the next UpdateItem whose request mentions `marker` but lose its answer (a reset
 * socket), so that the SDK sends it again, as happens on AWS.
 */
function loseNextAnswer(marker: string): { tripped: () => boolean } {
  let tripped = false;
  const name = `loseAnswer-${randomUUID()}`;
  dynamo().middlewareStack.add(
    (next) => async (args) => {
      const output = await next(args);
      const body = String((args.request as { body?: unknown } | undefined)?.body ?? '');
      if (!tripped && body.includes(marker)) {
        tripped = true;
        dynamo().middlewareStack.remove(name);
        throw Object.assign(new Error('socket hang up'), { code: 'ECONNRESET', $metadata: {} });
      }
      return output;
    },
    { step: 'deserialize', name },
  );
  return { tripped: () => tripped };
}

describe('writes whose answer is lost', () => {
  it('know a claim as their own when its retry fails the condition the first write met', async () => {
    const requestId = await queued();
    const lost = loseNextAnswer('"IN_PROGRESS"');
    expect(await claimInvocation(requestId, claimBy('a'))).toEqual({ kind: 'claimed', leaseUntil: expect.any(Number) });
    expect(lost.tripped()).toBe(true);
  });

  it('know an outcome as recorded when its retry fails the condition the first write met', async () => {
    const requestId = await queued();
    await claimInvocation(requestId, claimBy('a'));
    const lost = loseNextAnswer('"FULFILLED"');
    expect(await finishInvocation(requestId, { result: { status: 200, headers: {}, bodyKey: resultBodyKey(requestId, 'a') } }, 'a')).toBe(true);
    expect(lost.tripped()).toBe(true);
    expect(await getInvocation(requestId)).toMatchObject({ status: 'FULFILLED', owner: 'a' });
  });
});

describe('claims', () => {
  it('never takes over a running invocation whose lease is live, and tells who holds it until when', async () => {
    const requestId = await queued();
    const first = await claimInvocation(requestId, claimBy('a'));
    expect(first).toEqual({ kind: 'claimed', leaseUntil: expect.any(Number) });
    // A duplicate message has the same receive count; a redelivery a higher one: neither takes a live lease.
    for (const attempt of [1, 2, 3]) {
      expect(await claimInvocation(requestId, claimBy('b', { attempt }))).toEqual({ kind: 'held', leaseUntil: expect.any(Number), messageId: 'message-a' });
    }
    expect(await getInvocation(requestId)).toMatchObject({ status: 'IN_PROGRESS', owner: 'a', attempt: 1, messageId: 'message-a' });
  });

  it('takes over an invocation whose lease expired, after which the old owner can do nothing', async () => {
    const requestId = await queued();
    await claimInvocation(requestId, claimBy('a', { leaseMs: 1 }));
    await new Promise((resolve) => setTimeout(resolve, 10));
    expect(await claimInvocation(requestId, claimBy('b', { attempt: 2 }))).toMatchObject({ kind: 'claimed' });
    expect(await renewLease(requestId, 'a', 60_000)).toBe(false);
    expect(await recordProgress(requestId, 'a', 50, '{"stale":true}')).toBe(false);
    expect(await releaseInvocation(requestId, 'a')).toBe(false);
    expect(await finishInvocation(requestId, { result: { status: 200, headers: {}, body: Buffer.from('"a"') } }, 'a')).toBe(false);
    expect(await renewLease(requestId, 'b', 60_000)).toBe(true);
    expect(await finishInvocation(requestId, { result: { status: 200, headers: {}, body: Buffer.from('"b"') } }, 'b')).toBe(true);
    expect(Buffer.from((await getInvocation(requestId))!.result!.body!).toString()).toBe('"b"');
    expect(await claimInvocation(requestId, claimBy('c', { attempt: 3 }))).toEqual({ kind: 'finished' });
  });

  it('takes over an IN_PROGRESS invocation claimed before leases existed', async () => {
    const requestId = await queued();
    await dynamo().send(
      new UpdateCommand({ TableName: tableName('invocations'), Key: { requestId }, UpdateExpression: 'SET #s = :p, attempt = :one', ExpressionAttributeNames: { '#s': 'status' }, ExpressionAttributeValues: { ':p': 'IN_PROGRESS', ':one': 1 } }),
    );
    expect(await claimInvocation(requestId, claimBy('a', { attempt: 2 }))).toMatchObject({ kind: 'claimed' });
  });

  it('answers missing for an invocation that was never stored', async () => {
    expect(await claimInvocation(randomUUID(), claimBy('a'))).toEqual({ kind: 'missing' });
  });
});

describe('the owner', () => {
  it('alone records progress', async () => {
    const requestId = await queued();
    await claimInvocation(requestId, claimBy('a'));
    expect(await recordProgress(requestId, 'a', 40, '{"stage":"denoising"}')).toBe(true);
    expect(await recordProgress(requestId, 'b', 90, '{"stage":"forged"}')).toBe(false);
    expect(await getInvocation(requestId)).toMatchObject({ percentComplete: 40, partialResponse: '{"stage":"denoising"}' });
  });

  it('hands the invocation back QUEUED with lease and progress cleared, naming the message that carries it now', async () => {
    const requestId = await queued();
    await claimInvocation(requestId, claimBy('a'));
    await recordProgress(requestId, 'a', 40, '{"x":1}');
    expect(await releaseInvocation(requestId, 'a', 'message-copy')).toBe(true);
    const record = await getInvocation(requestId);
    expect(record).toMatchObject({ status: 'QUEUED', messageId: 'message-copy' });
    expect(record).not.toHaveProperty('owner');
    expect(record).not.toHaveProperty('leaseUntil');
    expect(record).not.toHaveProperty('percentComplete');
    expect(record).not.toHaveProperty('partialResponse');
    // The next delivery claims it at once.
    expect(await claimInvocation(requestId, claimBy('b', { attempt: 2 }))).toMatchObject({ kind: 'claimed' });
  });

  it('writes results under keys of its own, so another owner can never overwrite them', () => {
    const requestId = randomUUID();
    expect(resultZipKey(requestId, 'a')).not.toBe(resultZipKey(requestId, 'b'));
    expect(resultBodyKey(requestId, 'a')).not.toBe(resultBodyKey(requestId, 'b'));
    expect(resultZipKey(requestId, 'a')).toMatch(new RegExp(`^outputs/${requestId}/a/`));
  });
});

describe('outcomes', () => {
  it('lets the API error a QUEUED invocation without an owner, once', async () => {
    const requestId = await queued();
    expect(await finishInvocation(requestId, { error: { status: 503, detail: 'not queued' } })).toBe(true);
    expect(await finishInvocation(requestId, { error: { status: 500, detail: 'again' } })).toBe(false);
    expect((await getInvocation(requestId))?.error).toEqual({ status: 503, detail: 'not queued' });
  });

  it('cuts a stored problem detail to 4 KB so that any container error fits the record', async () => {
    const requestId = await queued();
    await claimInvocation(requestId, claimBy('a'));
    expect(await finishInvocation(requestId, { error: { status: 400, detail: 'é'.repeat(500_000) } }, 'a')).toBe(true);
    const { detail } = (await getInvocation(requestId))!.error!;
    expect(Buffer.byteLength(detail)).toBeLessThanOrEqual(MAX_PROBLEM_DETAIL_BYTES);
    expect(detail).toMatch(/^(é)+…$/);
  });
});
