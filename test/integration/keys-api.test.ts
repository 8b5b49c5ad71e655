/**
 * API keys over HTTP (K1–K4) on the emulators: create with scopes narrowed
 * from the caller's and an expiry, the value shown once, list without values,
 * revoke, expiry; both the API (authorizer) and the invocation service
 * refuse revoked and expired keys alike; another account sees none of it.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createApiKey, hashApiKey } from '../../core/api-keys';
import { API_KEY_CACHE_SECONDS } from '../../core/limits';
import { newAccount, startTestStack, type TestStack } from '../support/stack';

const inDays = (days: number) => new Date(Date.now() + days * 24 * 60 * 60 * 1000).toISOString();
const policies = (...scopes: string[]) => ({ policies: [{ scopes, aud: 'ignored', product: 'nv-cloud-functions' }] });

describe('API keys over HTTP', () => {
  let stack: TestStack;
  let admin: { accountId: string; key: string };

  beforeAll(async () => {
    stack = await startTestStack();
    admin = await newAccount();
  });
  afterAll(async () => stack.stop());

  const create = (key: string, body: unknown) => stack.call('POST', '/v1/keys', { key, body });
  /** A route of the invocation service that needs only a working key with invoke_function: an unknown request id is 404. */
  const invocationStatus = (key: string) => stack.call('GET', '/v2/nvcf/pexec/status/00000000-0000-4000-8000-000000000000', { key });

  it('creates a key with the scopes asked for, shows its value once, and lists it without', async () => {
    const expiresAt = inDays(30);
    const created = await create(admin.key, { description: 'ci robot', expires_at: expiresAt, authorizations: policies('list_functions', 'invoke_function') });

    expect(created.statusCode).toBe(200);
    const { value, id } = created.json;
    expect(value).toMatch(/^nvapi-[A-Za-z0-9_-]{43}$/);
    expect(id).toBe(hashApiKey(value));
    expect(created.json).toMatchObject({
      status: 'ACTIVE',
      owner_id: admin.accountId,
      description: 'ci robot',
      expires_at: expiresAt,
      authorizations: { policies: [{ scopes: ['list_functions', 'invoke_function'] }] },
    });

    expect((await stack.call('GET', '/v2/nvcf/functions', { key: value })).statusCode).toBe(200);
    expect((await invocationStatus(value)).statusCode).toBe(404);
    const refused = await stack.call('GET', '/v2/nvcf/clusterGroups', { key: value });
    expect(refused.statusCode).toBe(403);
    expect((await stack.call('GET', '/v1/keys', { key: value })).statusCode).toBe(403);

    const listed = await stack.call('GET', '/v1/keys', { key: admin.key });
    expect(listed.statusCode).toBe(200);
    const entry = listed.json.keys.find((key: { id: string }) => key.id === id);
    expect(entry).toMatchObject({ id, status: 'ACTIVE', description: 'ci robot', expires_at: expiresAt });
    expect(JSON.stringify(listed.json)).not.toContain(value);
    expect(entry.value ?? entry.authorizations).toBeUndefined();

    const one = await stack.call('GET', `/v1/keys/${id}`, { key: admin.key });
    expect(one.json).toMatchObject({ id, authorizations: { policies: [{ scopes: ['list_functions', 'invoke_function'] }] } });
    expect(one.json.value).toBeUndefined();
  });

  it('never gives a new key a scope the caller lacks, nor a longer life', async () => {
    const narrow = (await create(admin.key, { description: 'key manager', expires_at: inDays(2), authorizations: policies('manage_api_keys', 'invoke_function') })).json;

    const wider = await create(narrow.value, { description: 'escalation', expires_at: inDays(1), authorizations: policies('invoke_function', 'deploy_function') });
    expect(wider.statusCode).toBe(403);
    expect(wider.json.detail).toContain('lacks deploy_function');

    const longer = await create(narrow.value, { description: 'outlives', expires_at: inDays(3) });
    expect(longer.statusCode).toBe(400);
    expect(longer.json.detail).toContain('may not outlive it');

    const inherited = await create(narrow.value, { description: 'same scopes', expires_at: inDays(1) });
    expect(inherited.statusCode).toBe(200);
    expect(inherited.json.authorizations.policies[0].scopes.sort()).toEqual(['invoke_function', 'manage_api_keys']);
  });

  it('refuses malformed requests with 400 naming the field', async () => {
    const cases: [unknown, RegExp][] = [
      [{ expires_at: inDays(1) }, /description/],
      [{ description: 'x' }, /expires_at/],
      [{ description: 'x', expires_at: 'tomorrow' }, /expires_at: must be an ISO 8601 time/],
      [{ description: 'x', expires_at: new Date(Date.now() - 60_000).toISOString() }, /expires_at: .* is in the past/],
      [{ description: 'x', expires_at: inDays(400) }, /at most 365 days/],
      [{ description: 'x', expires_at: inDays(1), authorizations: policies('fly') }, /scopes\[0\]: must be one of/],
      [{ description: 'x', expires_at: inDays(1), authorizations: { policies: [] } }, /authorizations\.policies/],
    ];
    for (const [body, detail] of cases) {
      const response = await create(admin.key, body);
      expect(response.statusCode, JSON.stringify(body)).toBe(400);
      expect(response.json.detail).toMatch(detail);
    }
    expect((await stack.call('GET', '/v1/keys/not-a-key-id', { key: admin.key })).statusCode).toBe(400);
  });

  it('revokes a key: the API and the invocation service stop accepting it, and it stays listed as REVOKED', async () => {
    const { value, id } = (await create(admin.key, { description: 'to revoke', expires_at: inDays(1) })).json;
    expect((await invocationStatus(value)).statusCode).toBe(404); // cached as working by the invocation service

    expect((await stack.call('DELETE', `/v1/keys/${id}`, { key: admin.key })).statusCode).toBe(204);
    expect((await stack.call('DELETE', `/v1/keys/${id}`, { key: admin.key })).statusCode).toBe(204);

    const api = await stack.call('GET', '/v2/nvcf/functions', { key: value });
    expect(api.statusCode).toBe(401);
    expect(api.json.detail).toContain('unknown or has been revoked');
    const revokedAt = Date.now();
    let status = 404;
    while (status !== 401 && Date.now() - revokedAt < (API_KEY_CACHE_SECONDS + 20) * 1000) status = (await invocationStatus(value)).statusCode;
    expect(status).toBe(401);

    const shown = await stack.call('GET', `/v1/keys/${id}`, { key: admin.key });
    expect(shown.json).toMatchObject({ status: 'REVOKED', revoked_at: expect.any(String) });
  }, 60_000);

  it('refuses an expired key exactly like a revoked one, and shows it EXPIRED', async () => {
    // Stored as it would be once its time passed: no waiting for a clock.
    const { key, record } = await createApiKey({ accountId: admin.accountId, description: 'expired', expiresAt: new Date(Date.now() - 1000).toISOString() });

    const api = await stack.call('GET', '/v2/nvcf/functions', { key });
    expect(api.statusCode).toBe(401);
    expect(api.json.detail).toBe('the API key is unknown or has been revoked');
    const service = await invocationStatus(key);
    expect(service.statusCode).toBe(401);
    expect(service.json.detail).toBe('the API key is unknown or has been revoked');

    const listed = await stack.call('GET', '/v1/keys', { key: admin.key });
    expect(listed.json.keys.find((entry: { id: string }) => entry.id === record.keyHash)).toMatchObject({ status: 'EXPIRED' });
  });

  it('shows another account none of it', async () => {
    const other = await newAccount();
    const { id } = (await create(admin.key, { description: 'private', expires_at: inDays(1) })).json;

    const listed = await stack.call('GET', '/v1/keys', { key: other.key });
    expect(listed.json.keys.map((key: { owner_id: string }) => key.owner_id)).toEqual([other.accountId]);
    expect((await stack.call('GET', `/v1/keys/${id}`, { key: other.key })).statusCode).toBe(404);
    expect((await stack.call('DELETE', `/v1/keys/${id}`, { key: other.key })).statusCode).toBe(404);
    expect((await stack.call('GET', `/v1/keys/${id}`, { key: admin.key })).json.status).toBe('ACTIVE');
  });
});
