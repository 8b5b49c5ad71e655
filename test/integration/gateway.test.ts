import { randomBytes } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createApiKey, revokeApiKey } from '../../core/api-keys';
import { MiB } from '../../core/limits';
import { LocalGateway, type ApiLambdaHandler } from '../../local/gateway';
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

  it('answers 404 problem+json for a path outside the route table, with or without a key (as the stack\'s $default route)', async () => {
    for (const key of ['nvapi-x', undefined]) {
      const response = await stack.call('GET', '/v2/nvcf/nothing-here', key ? { key } : {});
      expect(response.statusCode).toBe(404);
      expect(response.headers['content-type']).toBe('application/problem+json');
      expect(response.json).toMatchObject({
        type: 'urn:nvcf:problem-details:not-found',
        title: 'Not Found',
        status: 404,
        detail: 'no route GET /v2/nvcf/nothing-here; the NVCF API is under /v2/nvcf/ (see the API notes in docs/)',
      });
    }
  });

  it('answers 405 problem+json with Allow for a known path and a method it does not take', async () => {
    const response = await stack.call('PATCH', '/v2/nvcf/assets', { key: 'nvapi-x' });
    expect(response.statusCode).toBe(405);
    expect(response.headers.allow).toBe('POST, GET');
    expect(response.json).toMatchObject({ status: 405, title: 'Method Not Allowed', detail: '/v2/nvcf/assets does not take PATCH; it takes POST, GET' });
  });

  it('answers a browser’s CORS preflight itself, without a key, as NVCF allows any origin', async () => {
    const response = await stack.call('OPTIONS', '/v2/nvcf/pexec/functions/x', {
      headers: { origin: 'https://app.example.com', 'access-control-request-method': 'POST', 'access-control-request-headers': 'authorization,nvcf-poll-seconds' },
    });
    expect(response.statusCode).toBe(204);
    expect(response.headers).toMatchObject({ 'access-control-allow-origin': '*', 'access-control-max-age': '3600' });
    expect(response.headers['access-control-allow-methods']).toContain('POST');
    expect(response.headers['access-control-allow-headers']).toContain('Authorization');
  });

  it('lets a browser read the NVCF-* answer headers', async () => {
    const { key } = await newAccount();
    const response = await stack.call('GET', '/v2/nvcf/functions', { key, headers: { origin: 'https://app.example.com' } });
    expect(response.statusCode).toBe(200);
    expect(response.headers['access-control-allow-origin']).toBe('*');
    expect(response.headers['access-control-expose-headers']).toContain('NVCF-REQID');
    const unauthenticated = await stack.call('GET', '/v2/nvcf/functions', { headers: { origin: 'https://app.example.com' } });
    expect(unauthenticated.headers['access-control-allow-origin']).toBe('*');
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

describe('Lambda limits as API Gateway and Lambda apply them', () => {
  let stack: TestStack;
  let key: string;
  beforeAll(async () => {
    stack = await startTestStack();
    ({ key } = await newAccount());
  });
  afterAll(async () => stack.stop());

  /** A gateway whose functions routes run `handler`; `calls` counts how often it ran. */
  function gatewayWith(handler: ApiLambdaHandler, lambdaTimeoutSeconds?: number) {
    const state = { calls: 0 };
    const gateway = new LocalGateway({
      lambdaTimeoutSeconds,
      handlers: {
        functions: async (event, context) => {
          state.calls += 1;
          return handler(event, context);
        },
      },
    });
    const invoke = (body: Buffer, contentType: string) =>
      gateway.handle({ method: 'POST', path: '/v2/nvcf/functions', headers: { authorization: `Bearer ${key}`, 'content-type': contentType }, body });
    return { gateway, state, invoke };
  }

  const ok: ApiLambdaHandler = async (event) => ({ statusCode: 200, headers: {}, body: String(event.body?.length ?? 0) });

  it('refuses with 413 before the Lambda runs a 5 MiB binary body, whose base64 form exceeds Lambda’s 6 MiB request quota', async () => {
    const { state, invoke } = gatewayWith(ok);
    const response = await invoke(randomBytes(5 * MiB), 'application/octet-stream');
    expect(response.statusCode).toBe(413);
    expect(JSON.parse(response.body.toString())).toEqual({ message: 'Request Too Long' });
    expect(state.calls).toBe(0);
  });

  it('refuses with 413 a text body under 5 MiB whose JSON-escaped form exceeds the quota', async () => {
    const { state, invoke } = gatewayWith(ok);
    expect((await invoke(Buffer.alloc(4 * MiB, '"'), 'text/plain')).statusCode).toBe(413);
    expect(state.calls).toBe(0);
  });

  it('passes a 5 MiB text body and a 4.4 MiB binary body to the Lambda', async () => {
    const { state, invoke } = gatewayWith(ok);
    expect((await invoke(Buffer.alloc(5 * MiB, 'a'), 'application/json')).statusCode).toBe(200);
    expect((await invoke(randomBytes(Math.floor(4.4 * MiB)), 'application/octet-stream')).statusCode).toBe(200);
    expect(state.calls).toBe(2);
  });

  it('answers 500 when the Lambda’s answer exceeds Lambda’s response quota', async () => {
    const { invoke } = gatewayWith(async () => ({ statusCode: 200, headers: {}, body: Buffer.alloc(Math.floor(4.6 * MiB)).toString('base64'), isBase64Encoded: true }));
    const response = await invoke(Buffer.from('{}'), 'application/json');
    expect(response.statusCode).toBe(500);
    expect(JSON.parse(response.body.toString())).toEqual({ message: 'Internal Server Error' });
  });

  it('answers 500 when the Lambda outlives its timeout, and tells the Lambda how much time it has', async () => {
    let remaining = 0;
    const { invoke } = gatewayWith(async (_event, context) => {
      remaining = context.getRemainingTimeInMillis();
      await sleep(1500);
      return { statusCode: 200, headers: {}, body: '' };
    }, 1);
    expect((await invoke(Buffer.from('{}'), 'application/json')).statusCode).toBe(500);
    expect(remaining).toBeGreaterThan(900);
    expect(remaining).toBeLessThanOrEqual(1000);
  });

  it('hands the client a header repeated in another case once, its values joined', async () => {
    const { invoke } = gatewayWith(async () => ({ statusCode: 200, headers: { 'X-Thing': 'a', 'x-thing': 'b' }, body: '' }));
    expect((await invoke(Buffer.from('{}'), 'application/json')).headers['x-thing']).toBe('a, b');
  });
});
