import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createApiKey, revokeApiKey } from '../../core/api-keys';
import { newAccount, startTestStack, type TestStack } from '../support/stack';

describe('local API gateway', () => {
  let stack: TestStack;
  beforeAll(async () => {
    stack = await startTestStack();
  });
  afterAll(async () => stack.stop());

  it('answers 401 like API Gateway when the Authorization header is missing', async () => {
    const response = await stack.call('GET', '/v2/nvcf/functions');
    expect(response.statusCode).toBe(401);
    expect(response.json).toEqual({ message: 'Unauthorized' });
  });

  it('answers 404 for a path outside the route table', async () => {
    const response = await stack.call('GET', '/v2/nvcf/nothing-here', { key: 'nvapi-x' });
    expect(response.statusCode).toBe(404);
  });
});

describe('authorizer', () => {
  let stack: TestStack;
  beforeAll(async () => {
    stack = await startTestStack();
  });
  afterAll(async () => stack.stop());

  it('refuses an unknown key with 401 problem+json', async () => {
    const response = await stack.call('GET', '/v2/nvcf/functions', { key: 'nvapi-not-a-real-key-000000000000000000000000' });
    expect(response.statusCode).toBe(401);
    expect(response.headers['content-type']).toBe('application/problem+json');
    expect(response.json).toMatchObject({ status: 401, title: 'Unauthorized', instance: '/v2/nvcf/functions' });
    expect(response.json.requestId).toEqual(expect.any(String));
  });

  it('refuses a revoked key', async () => {
    const { key } = await newAccount();
    await revokeApiKey(key);
    const response = await stack.call('GET', '/v2/nvcf/supportedGpus', { key });
    expect(response.statusCode).toBe(401);
    expect(response.json.detail).toMatch(/revoked/);
  });

  it('answers 403 naming the scope a key lacks', async () => {
    const { key } = await newAccount(['invoke_function']);
    const response = await stack.call('GET', '/v2/nvcf/clusterGroups', { key });
    expect(response.statusCode).toBe(403);
    expect(response.json.detail).toContain('list_cluster_groups');
  });

  it('stores only the hash of a key', async () => {
    const { key, record } = await createApiKey({ accountId: 'acct-hash' });
    expect(key).toMatch(/^nvapi-[A-Za-z0-9_-]{43}$/);
    expect(JSON.stringify(record)).not.toContain(key.slice(6));
  });
});
