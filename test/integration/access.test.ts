/**
 * The access matrix over every route of core/routes.ts: no key, an unknown key,
 * a key without the route's scope, and another account's ids. Checks (1)–(3)
 * iterate the route table, so a new route is covered as soon as it is added;
 * check (4) needs a written expectation per route (CROSS_ACCOUNT), and a test
 * fails until a new route gets one.
 */
import { randomUUID } from 'node:crypto';
import { PutCommand } from '@aws-sdk/lib-dynamodb';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { hashApiKey } from '../../core/api-keys';
import { dynamo } from '../../core/aws';
import { tableName } from '../../core/config';
import { INVOCATION_TTL_SECONDS } from '../../core/limits';
import { ROUTES, SCOPES, type AuthenticatedRoute, type RouteDefinition, type Scope } from '../../core/routes';
import { newAccount, startTestStack, type TestResponse, type TestStack } from '../support/stack';

type Account = { accountId: string; key: string };

const FUNCTION_BODY = { name: 'access-fn', inferenceUrl: '/echo', inferencePort: 8000, containerImage: 'nvcr.io/org/echo:1' };
/** The GPU the test stack offers when NVCF_GPUS is unset (core/gpus.ts DEFAULT_GPU_OFFERS); min 0 makes the version ACTIVE at once. */
const DEPLOYMENT_BODY = { deploymentSpecifications: [{ gpu: 'LOCAL', instanceType: 'local.gpu', minInstances: 0, maxInstances: 1 }] };

/** What account B observes when it uses account A's resources through a route. */
type CrossAccountCase =
  /** B addresses A's resource by its ids: refused with `status`; `ownerStatus` is what A gets with the same request (read-only requests only). */
  | { kind: 'addresses'; status: number; body?: unknown; ownerStatus?: number }
  /** B lists its own resources: none of A's ids appear. */
  | { kind: 'lists'; ids: (json: any) => string[] }
  /** The route addresses nothing another account owns. */
  | { kind: 'none'; why: string };

const KEYED_ROUTES = ROUTES.filter((route): route is AuthenticatedRoute => route.scope !== null);
const PUBLIC_ROUTES = ROUTES.filter((route) => route.scope === null);

const addresses = (status: number, options: { body?: unknown; ownerStatus?: number } = {}): CrossAccountCase => ({ kind: 'addresses', status, ...options });

/**
 * Every ref's expectation. A's version is deployed (ACTIVE), which makes an
 * owner's D1 a 400 ("use PUT") and F7 a 409, so B's 404 there cannot be a
 * coincidence of state. The invocation item is written by hand as QUEUED, so
 * its owner polls a 202.
 */
const CROSS_ACCOUNT: Record<string, CrossAccountCase> = {
  F1: { kind: 'none', why: 'creates a new function owned by the caller' },
  F2: addresses(404, { body: FUNCTION_BODY }),
  F3: { kind: 'lists', ids: (json) => json.functions.map((fn: { id: string }) => fn.id) },
  F4: addresses(404, { ownerStatus: 200 }),
  F5: addresses(404, { ownerStatus: 200 }),
  F6: { kind: 'lists', ids: (json) => json.functionIds },
  F7: addresses(404, { ownerStatus: 409 }),
  F8: addresses(404, { body: { tags: ['written-by-b'] } }),
  F9: addresses(404, { body: { tags: ['written-by-b'], rateLimit: { rateLimit: '1-D' } } }),
  RL1: addresses(404, { body: { rateLimit: '1-D' } }),
  RL2: addresses(404),
  U1: { kind: 'none', why: "answers the caller's own account's usage; another account's use is in none of its fields" },
  S1: addresses(404, { body: { secrets: [{ name: 'WRITTEN_BY_B', value: 'b' }] } }),
  D1: addresses(404, { body: DEPLOYMENT_BODY, ownerStatus: 400 }),
  D2: addresses(404, { ownerStatus: 200 }),
  D3: addresses(404, { body: DEPLOYMENT_BODY }),
  D4: addresses(404),
  I1: addresses(404, { body: { message: 'hello' } }),
  I2: addresses(404, { body: { message: 'hello' } }),
  I3: addresses(404, { ownerStatus: 202 }),
  // After I3 in the table: the owner's QUEUED call is cancelled last.
  I6: addresses(404, { ownerStatus: 204 }),
  A1: { kind: 'none', why: 'creates a new asset owned by the caller' },
  O1: { kind: 'none', why: 'the OpenAPI document is the same for every caller' },
  A2: { kind: 'lists', ids: (json) => json.assets.map((asset: { assetId: string }) => asset.assetId) },
  A3: addresses(404, { ownerStatus: 200 }),
  A4: addresses(404),
  Q1: addresses(404, { ownerStatus: 200 }),
  Q2: addresses(404, { ownerStatus: 200 }),
  Q3: addresses(404, { ownerStatus: 200 }),
  G1: { kind: 'none', why: 'cluster groups are the platform’s, the same for every account' },
  G2: { kind: 'none', why: 'supported GPUs are the platform’s, the same for every account' },
  L1: addresses(404, { ownerStatus: 200 }),
  R1: { kind: 'none', why: 'creates a new registry credential of the caller’s account' },
  R2: { kind: 'lists', ids: (json) => json.registryCredentials.map((credential: { registryCredentialId: string }) => credential.registryCredentialId) },
  R3: addresses(404, { ownerStatus: 200 }),
  R4: addresses(404, { body: { secret: { name: 'b', value: 'written-by-b' } } }),
  R5: addresses(404),
  R6: { kind: 'none', why: 'recognized registries are the platform’s, the same for every account' },
  // Only the owner manages who may invoke its function; nothing is shared in this test.
  Z1: addresses(404, { ownerStatus: 200 }),
  Z2: addresses(404, { body: { authorizedParties: [{ ncaId: 'written-by-b' }] } }),
  Z3: addresses(404),
  Z4: addresses(404, { body: { authorizedParty: { ncaId: 'written-by-b' } } }),
  Z5: addresses(404, { body: { authorizedParty: { ncaId: 'written-by-b' } } }),
  Z6: addresses(404, { ownerStatus: 200 }),
  Z7: addresses(404, { body: { authorizedParties: [{ ncaId: 'written-by-b' }] } }),
  Z8: addresses(404),
  Z9: addresses(404, { body: { authorizedParty: { ncaId: 'written-by-b' } } }),
  Z10: addresses(404, { body: { authorizedParty: { ncaId: 'written-by-b' } } }),
  K1: { kind: 'none', why: 'creates a new key of the caller’s account' },
  K2: { kind: 'lists', ids: (json) => json.keys.map((key: { id: string }) => key.id) },
  K3: addresses(404, { ownerStatus: 200 }),
  K4: addresses(404),
};

const label = (route: RouteDefinition) => `${route.ref} ${route.method} ${route.path}`;

/** The route's path with its `{param}` placeholders filled from `ids`. */
function pathOf(route: RouteDefinition, ids: Record<string, string>): string {
  return route.path.replace(/\{(\w+)\}/g, (_, name: string) => {
    const id = ids[name];
    if (!id) throw new Error(`no id for {${name}} in ${label(route)}: add it to the ids of this test`);
    return id;
  });
}

const randomIds = () => ({ functionId: randomUUID(), functionVersionId: randomUUID(), assetId: randomUUID(), requestId: randomUUID(), registryCredentialId: randomUUID(), keyId: hashApiKey(randomUUID()) });

function expectProblem(response: TestResponse, status: number) {
  expect(response.statusCode).toBe(status);
  expect(response.headers['content-type']).toBe('application/problem+json');
  expect(response.json).toMatchObject({ status, title: expect.any(String), detail: expect.any(String), requestId: expect.any(String) });
}

describe('access to every route', () => {
  let stack: TestStack;
  let owner: Account;
  let stranger: Account;
  /** Keys lacking exactly one scope each. */
  const lacking = new Map<Scope, Account>();
  /** Ids of the owner's real resources, by path parameter name. */
  let ownerIds: Record<string, string>;
  /** Headers sent with every call; a 0 s poll keeps invocation routes from waiting. */
  const headers = { 'nvcf-poll-seconds': '0' };

  beforeAll(async () => {
    stack = await startTestStack();
    [owner, stranger] = await Promise.all([newAccount(), newAccount()]);
    await Promise.all(SCOPES.map(async (scope) => lacking.set(scope, await newAccount(SCOPES.filter((s) => s !== scope)))));

    const created = await stack.call('POST', '/v2/nvcf/functions', { key: owner.key, body: FUNCTION_BODY });
    expect(created.statusCode).toBe(200);
    const { id: functionId, versionId: functionVersionId } = created.json.function;
    const deployed = await stack.call('POST', `/v2/nvcf/deployments/functions/${functionId}/versions/${functionVersionId}`, { key: owner.key, body: DEPLOYMENT_BODY });
    expect(deployed.statusCode).toBe(200);
    const asset = await stack.call('POST', '/v2/nvcf/assets', { key: owner.key, body: { contentType: 'image/png', description: 'owner asset' } });
    expect(asset.statusCode).toBe(200);
    const requestId = randomUUID();
    const now = new Date();
    await dynamo().send(
      new PutCommand({
        TableName: tableName('invocations'),
        Item: {
          requestId,
          accountId: owner.accountId,
          functionId,
          versionId: functionVersionId,
          status: 'QUEUED',
          createdAt: now.toISOString(),
          updatedAt: now.toISOString(),
          expiresAt: Math.floor(now.getTime() / 1000) + INVOCATION_TTL_SECONDS,
        },
      }),
    );
    const credential = await stack.call('POST', '/v2/nvcf/registry-credentials', {
      key: owner.key,
      body: { registryHostname: 'nvcr.io', secret: { name: '$oauthtoken', value: 'owner-key' }, artifactTypes: ['CONTAINER'] },
    });
    expect(credential.statusCode).toBe(200);
    ownerIds = { functionId, functionVersionId, assetId: asset.json.assetId, requestId, registryCredentialId: credential.json.registryCredential.registryCredentialId, keyId: hashApiKey(owner.key) };
  });
  afterAll(async () => stack.stop());

  const call = (route: RouteDefinition, ids: Record<string, string>, options: { key?: string; body?: unknown } = {}) =>
    stack.call(route.method, pathOf(route, ids), { ...options, headers });

  describe('(1) without an Authorization header', () => {
    it.each(KEYED_ROUTES.map((route) => [label(route), route] as const))('%s answers 401', async (_, route) => {
      const response = await call(route, randomIds());
      expect(response.statusCode).toBe(401);
    });

    it.each(PUBLIC_ROUTES.map((route) => [label(route), route] as const))('%s, public, answers 200', async (_, route) => {
      const response = await call(route, randomIds());
      expect(response.statusCode).toBe(200);
    });
  });

  describe('(2) with an unknown key', () => {
    it.each(KEYED_ROUTES.map((route) => [label(route), route] as const))('%s answers 401 problem+json', async (_, route) => {
      const response = await call(route, randomIds(), { key: `nvapi-${'0'.repeat(43)}` });
      expectProblem(response, 401);
      expect(response.json.detail).toMatch(/unknown or has been revoked/);
    });
  });

  describe('(3) with a key lacking the route’s scope', () => {
    it.each(KEYED_ROUTES.map((route) => [label(route), route] as const))('%s answers 403 problem+json naming the scope', async (_, route) => {
      const response = await call(route, randomIds(), { key: lacking.get(route.scope)!.key });
      expectProblem(response, 403);
      expect(response.json.detail).toContain(`"${route.scope}"`);
    });
  });

  describe('(4) with another account’s ids', () => {
    it('has a written expectation for every route of the table', () => {
      expect(ROUTES.map((route) => route.ref).filter((ref) => !CROSS_ACCOUNT[ref])).toEqual([]);
    });

    const pathRoutes = ROUTES.filter((route) => CROSS_ACCOUNT[route.ref]?.kind === 'addresses');
    it.each(pathRoutes.map((route) => [label(route), route] as const))('%s refuses another account as if the resource were missing', async (_, route) => {
      const expectation = CROSS_ACCOUNT[route.ref] as Extract<CrossAccountCase, { kind: 'addresses' }>;

      const response = await call(route, ownerIds, { key: stranger.key, body: expectation.body });

      expectProblem(response, expectation.status);
      if (expectation.ownerStatus !== undefined) {
        const own = await call(route, ownerIds, { key: owner.key, body: expectation.body });
        expect(own.statusCode, `the owner's answer to ${label(route)}`).toBe(expectation.ownerStatus);
      }
    });

    const listRoutes = ROUTES.filter((route) => CROSS_ACCOUNT[route.ref]?.kind === 'lists');
    it.each(listRoutes.map((route) => [label(route), route] as const))('%s shows another account none of the owner’s resources', async (_, route) => {
      const expectation = CROSS_ACCOUNT[route.ref] as Extract<CrossAccountCase, { kind: 'lists' }>;
      const ownerIdValues = Object.values(ownerIds);

      const [theirs, own] = await Promise.all([call(route, {}, { key: stranger.key }), call(route, {}, { key: owner.key })]);

      expect(theirs.statusCode).toBe(200);
      expect(expectation.ids(theirs.json).filter((id) => ownerIdValues.includes(id))).toEqual([]);
      expect(expectation.ids(own.json).some((id) => ownerIdValues.includes(id)), 'the owner sees its own resource').toBe(true);
    });

    it('leaves the owner’s resources as they were after the other account’s attempts', async () => {
      const version = await stack.call('GET', `/v2/nvcf/functions/${ownerIds.functionId}/versions/${ownerIds.functionVersionId}`, { key: owner.key });
      const asset = await stack.call('GET', `/v2/nvcf/assets/${ownerIds.assetId}`, { key: owner.key });

      expect(version.statusCode).toBe(200);
      expect(version.json.function.status).toBe('ACTIVE');
      expect(version.json.function.tags ?? []).not.toContain('written-by-b');
      expect(asset.statusCode).toBe(200);
      const credential = await stack.call('GET', `/v2/nvcf/registry-credentials/${ownerIds.registryCredentialId}`, { key: owner.key });
      expect(credential.statusCode, 'the owner’s registry credential is not deleted').toBe(200);
      const authorizations = await stack.call('GET', `/v2/nvcf/authorizations/functions/${ownerIds.functionId}`, { key: owner.key });
      expect(authorizations.json.functions.flatMap((fn: { authorizedParties: unknown[] }) => fn.authorizedParties)).toEqual([]);
      expect((await stack.call('GET', '/v2/nvcf/assets', { key: owner.key })).statusCode, 'the owner’s key is not revoked').toBe(200);
    });
  });
});
