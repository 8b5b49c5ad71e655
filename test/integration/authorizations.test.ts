/**
 * Sharing a function (Z1–Z10, nvcf-api.md §2.7) on the emulators: the sets,
 * inheritance and error codes; what an authorized account then sees and may
 * do (invoke, read public fields) and may not (manage); the invocation
 * service's cache costing no extra read when warm, and forgetting a revoked
 * authorization.
 */
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { loadFunctionAccess } from '../../core/access';
import { readAuthorizations } from '../../core/authorizations';
import { dynamo } from '../../core/aws';
import { VERSION_CACHE_SECONDS } from '../../core/limits';
import type { FunctionVersionRecord } from '../../core/model';
import { ServiceCaches } from '../../invocation/caches';
import { deployVersion, putVersion } from '../support/function-versions';
import { newAccount, startTestStack, type TestStack } from '../support/stack';

type Account = { accountId: string; key: string };

describe('authorizations', () => {
  let stack: TestStack;
  let owner: Account;
  let friend: Account;
  let other: Account;
  let stranger: Account;
  let v1: FunctionVersionRecord;
  let v2: FunctionVersionRecord;
  const fnPath = () => `/v2/nvcf/authorizations/functions/${v1.functionId}`;
  const versionPath = (version: FunctionVersionRecord) => `${fnPath()}/versions/${version.versionId}`;
  const parties = (json: any) => json.authorizedParties.map((party: { ncaId: string }) => party.ncaId);

  beforeAll(async () => {
    stack = await startTestStack();
    [owner, friend, other, stranger] = await Promise.all([newAccount(), newAccount(), newAccount(), newAccount()]);
    v1 = await deployVersion(await putVersion(owner.accountId, { name: 'shared-fn' }), { status: 'ACTIVE' });
    v2 = await putVersion(owner.accountId, { functionId: v1.functionId, name: 'shared-fn', createdAt: new Date(Date.now() + 1000).toISOString() });
  });
  afterAll(async () => stack.stop());

  it('answers 404 to add before any set exists, for the function and for a version', async () => {
    const listed = await stack.call('GET', fnPath(), { key: owner.key });
    expect(listed.statusCode).toBe(200);
    expect(listed.json.functions).toEqual([
      { id: v1.functionId, ncaId: owner.accountId, versionId: v1.versionId, authorizedParties: [] },
      { id: v1.functionId, ncaId: owner.accountId, versionId: v2.versionId, authorizedParties: [] },
    ]);
    const body = { authorizedParty: { ncaId: friend.accountId } };
    for (const path of [`${fnPath()}/add`, `${versionPath(v1)}/add`]) {
      const refused = await stack.call('PATCH', path, { key: owner.key, body });
      expect(refused.statusCode).toBe(404);
      expect(refused.json.detail).toContain('no authorized accounts to add to');
    }
  });

  it('replaces, adds to and removes from the function’s set, which every version inherits', async () => {
    const replaced = await stack.call('POST', fnPath(), { key: owner.key, body: { authorizedParties: [{ ncaId: friend.accountId }] } });
    expect(replaced.statusCode).toBe(200);
    expect(replaced.json).toEqual({ function: { id: v1.functionId, ncaId: owner.accountId, authorizedParties: [{ ncaId: friend.accountId }] } });

    const again = await stack.call('PATCH', `${fnPath()}/add`, { key: owner.key, body: { authorizedParty: { ncaId: friend.accountId } } });
    expect(again.statusCode).toBe(409);
    const added = await stack.call('PATCH', `${fnPath()}/add`, { key: owner.key, body: { authorizedParty: { ncaId: other.accountId } } });
    expect(added.statusCode).toBe(200);
    expect(parties(added.json.function).sort()).toEqual([friend.accountId, other.accountId].sort());

    const listed = await stack.call('GET', fnPath(), { key: owner.key });
    for (const version of listed.json.functions) expect(parties(version).sort()).toEqual([friend.accountId, other.accountId].sort());

    const removed = await stack.call('PATCH', `${fnPath()}/remove`, { key: owner.key, body: { authorizedParty: { ncaId: other.accountId } } });
    expect(removed.statusCode).toBe(200);
    expect(parties(removed.json.function)).toEqual([friend.accountId]);
    const absent = await stack.call('PATCH', `${fnPath()}/remove`, { key: owner.key, body: { authorizedParty: { ncaId: other.accountId } } });
    expect(absent.statusCode).toBe(400);
    expect(absent.json.detail).toContain(`account ${other.accountId} is not among the authorized accounts`);
  });

  it('keeps a version’s own set beside the inherited one', async () => {
    const added = await stack.call('PATCH', `${versionPath(v2)}/add`, { key: owner.key, body: { authorizedParty: { ncaId: other.accountId } } });
    expect(added.statusCode).toBe(200);
    expect(added.json.function).toMatchObject({ id: v1.functionId, versionId: v2.versionId });
    expect(parties(added.json.function).sort()).toEqual([friend.accountId, other.accountId].sort());
    expect(parties((await stack.call('GET', versionPath(v1), { key: owner.key })).json.function)).toEqual([friend.accountId]);

    expect((await stack.call('PATCH', `${versionPath(v2)}/add`, { key: owner.key, body: { authorizedParty: { ncaId: other.accountId } } })).statusCode).toBe(409);
    const inheritedOnly = await stack.call('PATCH', `${versionPath(v2)}/remove`, { key: owner.key, body: { authorizedParty: { ncaId: friend.accountId } } });
    expect(inheritedOnly.statusCode).toBe(400);
    expect(inheritedOnly.json.detail).toContain(`/v2/nvcf/authorizations/functions/${v1.functionId}/remove`);

    const deleted = await stack.call('DELETE', versionPath(v2), { key: owner.key });
    expect(deleted.statusCode).toBe(200);
    expect(parties(deleted.json.function)).toEqual([friend.accountId]);

    const replaced = await stack.call('POST', versionPath(v2), { key: owner.key, body: { authorizedParties: [{ ncaId: other.accountId }, { ncaId: other.accountId, clientId: 'ignored' }] } });
    expect(replaced.statusCode).toBe(200);
    expect(parties(replaced.json.function).sort()).toEqual([friend.accountId, other.accountId].sort());
  });

  it('refuses bad bodies with 400 naming the field', async () => {
    const cases: [unknown, RegExp][] = [
      [{ authorizedParties: [] }, /authorizedParties/],
      [{ authorizedParties: [{ ncaId: 'not an id!' }] }, /authorizedParties\[0\]\.ncaId/],
      [{ authorizedParties: [{ ncaId: owner.accountId }] }, /owns the function/],
      [{ parties: [friend.accountId] }, /authorizedParties/],
    ];
    for (const [body, detail] of cases) {
      const response = await stack.call('POST', fnPath(), { key: owner.key, body });
      expect(response.statusCode, JSON.stringify(body)).toBe(400);
      expect(response.json.detail).toMatch(detail);
    }
    const self = await stack.call('PATCH', `${versionPath(v1)}/add`, { key: owner.key, body: { authorizedParty: { ncaId: owner.accountId } } });
    expect(self.statusCode).toBe(400);
  });

  it('shows an authorized account the shared versions in their public fields only, and a stranger nothing', async () => {
    const all = await stack.call('GET', '/v2/nvcf/functions', { key: other.key });
    expect(all.statusCode).toBe(200);
    // other holds v2 alone (its version set); v1 is shared with friend only.
    expect(all.json.functions).toEqual([
      {
        id: v1.functionId,
        versionId: v2.versionId,
        ncaId: owner.accountId,
        name: 'shared-fn',
        status: 'INACTIVE',
        functionType: 'DEFAULT',
        apiBodyFormat: 'CUSTOM',
        createdAt: v2.createdAt,
        ownedByDifferentAccount: true,
      },
    ]);
    const authorizedOnly = await stack.call('GET', '/v2/nvcf/functions', { key: friend.key, query: 'visibility=authorized' });
    expect(authorizedOnly.json.functions.map((fn: { versionId: string }) => fn.versionId).sort()).toEqual([v1.versionId, v2.versionId].sort());
    expect(JSON.stringify(authorizedOnly.json)).not.toContain('containerImage');
    expect((await stack.call('GET', '/v2/nvcf/functions', { key: friend.key, query: 'visibility=private' })).json.functions).toEqual([]);
    expect((await stack.call('GET', '/v2/nvcf/functions/ids', { key: friend.key })).json.functionIds).toEqual([v1.functionId]);

    const versions = await stack.call('GET', `/v2/nvcf/functions/${v1.functionId}/versions`, { key: other.key });
    expect(versions.json.functions.map((fn: { versionId: string }) => fn.versionId)).toEqual([v2.versionId]);
    const one = await stack.call('GET', `/v2/nvcf/functions/${v1.functionId}/versions/${v1.versionId}`, { key: friend.key });
    expect(one.statusCode).toBe(200);
    expect(one.json.function).toMatchObject({ id: v1.functionId, status: 'ACTIVE', ownedByDifferentAccount: true });
    expect(one.json.function.deployment ?? one.json.function.health ?? one.json.function.containerImage).toBeUndefined();
    expect((await stack.call('GET', `/v2/nvcf/functions/${v1.functionId}/versions/${v1.versionId}`, { key: other.key })).statusCode).toBe(404);
    // The owner's view is unchanged.
    const own = await stack.call('GET', `/v2/nvcf/functions/${v1.functionId}/versions/${v1.versionId}`, { key: owner.key });
    expect(own.json.function.containerImage).toBe(v1.containerImage);
    expect(own.json.function.ownedByDifferentAccount).toBeUndefined();

    expect((await stack.call('GET', '/v2/nvcf/functions', { key: stranger.key })).json.functions).toEqual([]);
    expect((await stack.call('GET', `/v2/nvcf/functions/${v1.functionId}/versions`, { key: stranger.key })).statusCode).toBe(404);
  });

  it('refuses an authorized account everything but reading and invoking, as if the function were missing', async () => {
    const version = `${v1.functionId}/versions/${v1.versionId}`;
    const attempts: [string, string, unknown?][] = [
      ['POST', `/v2/nvcf/functions/${v1.functionId}/versions`, { name: 'x', inferenceUrl: '/x', containerImage: 'nvcr.io/o/x:1' }],
      ['DELETE', `/v2/nvcf/functions/${version}`],
      ['PUT', `/v2/nvcf/metadata/functions/${version}`, { tags: ['by-friend'] }],
      ['PUT', `/v2/nvcf/secrets/functions/${version}`, { secrets: [{ name: 'BY_FRIEND', value: 'x' }] }],
      ['GET', `/v2/nvcf/deployments/functions/${version}`],
      ['DELETE', `/v2/nvcf/deployments/functions/${version}`],
      ['GET', `/v2/nvcf/queues/functions/${v1.functionId}`],
      ['GET', `/v2/nvcf/queues/functions/${version}`],
      ['GET', `/v2/nvcf/logs/functions/${version}`],
      ['GET', fnPath()],
      ['PATCH', `${fnPath()}/add`, { authorizedParty: { ncaId: stranger.accountId } }],
      ['DELETE', fnPath()],
    ];
    for (const [method, path, body] of attempts) {
      const response = await stack.call(method, path, { key: friend.key, body });
      expect(response.statusCode, `${method} ${path}`).toBe(404);
    }
    const still = await stack.call('GET', `/v2/nvcf/functions/${version}`, { key: owner.key });
    expect(still.json.function).toMatchObject({ status: 'ACTIVE' });
    expect(still.json.function.tags).toBeUndefined();
  });

  it('lets an authorized account invoke; the call is its own; revoking stops it within the version cache time', async () => {
    const invoke = (key: string) => stack.call('POST', `/v2/nvcf/pexec/functions/${v1.functionId}`, { key, body: { hello: 1 }, headers: { 'nvcf-poll-seconds': '0' } });
    const accepted = await invoke(friend.key);
    expect(accepted.statusCode).toBe(202);
    const requestId = accepted.headers['nvcf-reqid']!;
    expect((await stack.call('GET', `/v2/nvcf/pexec/status/${requestId}`, { key: friend.key, headers: { 'nvcf-poll-seconds': '0' } })).statusCode).toBe(202);
    expect((await stack.call('GET', `/v2/nvcf/pexec/status/${requestId}`, { key: owner.key, headers: { 'nvcf-poll-seconds': '0' } })).statusCode).toBe(404);
    expect((await invoke(stranger.key)).statusCode).toBe(404);
    // v2 is shared with other but INACTIVE; v1 (ACTIVE) is not shared with it.
    expect((await invoke(other.key)).statusCode).toBe(400);

    expect((await stack.call('DELETE', fnPath(), { key: owner.key })).statusCode).toBe(200);
    const revokedAt = Date.now();
    let status = 202;
    while (status !== 404 && Date.now() - revokedAt < 30_000) status = (await invoke(friend.key)).statusCode;
    expect(status).toBe(404);
    expect((await stack.call('GET', '/v2/nvcf/functions', { key: friend.key })).json.functions).toEqual([]);
    expect((await invoke(owner.key)).statusCode).toBe(202);
  }, 60_000);

  it('deletes a version’s set with the version, and the function’s with its last version', async () => {
    const first = await putVersion(owner.accountId);
    const second = await putVersion(owner.accountId, { functionId: first.functionId });
    const base = `/v2/nvcf/authorizations/functions/${first.functionId}`;
    await stack.call('POST', base, { key: owner.key, body: { authorizedParties: [{ ncaId: friend.accountId }] } });
    await stack.call('POST', `${base}/versions/${first.versionId}`, { key: owner.key, body: { authorizedParties: [{ ncaId: other.accountId }] } });

    expect((await stack.call('DELETE', `/v2/nvcf/functions/${first.functionId}/versions/${first.versionId}`, { key: owner.key })).statusCode).toBe(204);
    const afterFirst = await readAuthorizations(first.functionId);
    expect([afterFirst.inherited, [...afterFirst.versions.keys()]]).toEqual([new Set([friend.accountId]), []]);

    expect((await stack.call('DELETE', `/v2/nvcf/functions/${first.functionId}/versions/${second.versionId}`, { key: owner.key })).statusCode).toBe(204);
    expect(await readAuthorizations(first.functionId)).toEqual({ inherited: undefined, versions: new Map() });
  });

  it('caches access: a warm entry costs no read; a cold one one Query for the owner, two for another account', async () => {
    await stack.call('POST', fnPath(), { key: owner.key, body: { authorizedParties: [{ ncaId: friend.accountId }] } });
    const sent: string[] = [];
    const client = dynamo();
    client.middlewareStack.add(
      (next) => async (args) => {
        sent.push((args.input as { TableName?: string }).TableName ?? '');
        return next(args);
      },
      { step: 'initialize', name: 'countForTest' },
    );
    // The clock stands still, so the entries cannot expire however slow the machine.
    vi.useFakeTimers({ toFake: ['Date'] });
    try {
      const caches = new ServiceCaches();
      expect((await caches.accessTo(owner.accountId, v1.functionId))?.role).toBe('owner');
      expect(sent).toHaveLength(1);
      const access = await caches.accessTo(friend.accountId, v1.functionId);
      expect(access).toMatchObject({ role: 'authorized', callerAccountId: friend.accountId, ownerAccountId: owner.accountId });
      expect(sent).toHaveLength(3);
      await caches.accessTo(friend.accountId, v1.functionId);
      await caches.accessTo(owner.accountId, v1.functionId);
      expect(sent, `both entries are warm for ${VERSION_CACHE_SECONDS} s`).toHaveLength(3);
    } finally {
      vi.useRealTimers();
      client.middlewareStack.remove('countForTest');
    }
    expect(await loadFunctionAccess(stranger.accountId, v1.functionId)).toBeUndefined();
  });
});
