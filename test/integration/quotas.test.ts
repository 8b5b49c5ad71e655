/**
 * Quotas per account on the emulators: the installation's settings under
 * per-account overrides; deployments counted by instances and by GPUs of
 * their instance types, an update only on its growth; concurrent
 * invocations counted for the caller and for the owner of a shared
 * function, given back when the call is no longer held, and those of a
 * replica that died holding them given back once it is silent; the usage endpoint;
 * malformed settings named.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { GetCommand } from '@aws-sdk/lib-dynamodb';
import { dynamo } from '../../core/aws';
import { tableName } from '../../core/config';
import { GPU_INSTANCE_TYPES } from '../../core/gpu-instance-types';
import { CONCURRENCY_HOLDER_STALE_SECONDS } from '../../core/limits';
import { ENV } from '../../core/names';
import { installationQuotas, parseQuotaValues } from '../../core/quota-settings';
import { accountQuotas, changeQuotaOverrides, concurrentInvocations, deploymentFootprint, markHolderAlive, takeInvocationSlots } from '../../core/quotas';
import { deployVersion, putVersion } from '../support/function-versions';
import { newAccount, startTestStack, type TestStack } from '../support/stack';

type Account = { accountId: string; key: string };

const GPUS = [{ gpu: 'L40S', instanceTypes: ['g6e.xlarge', 'g6e.12xlarge'] }];

describe('quotas', () => {
  let stack: TestStack;

  beforeAll(async () => {
    stack = await startTestStack({ [ENV.gpus]: JSON.stringify(GPUS), [ENV.quotas]: JSON.stringify({ functions: 5, gpus: 8 }) });
  });
  afterAll(async () => stack.stop());

  const deploymentPath = (version: { functionId: string; versionId: string }) => `/v2/nvcf/deployments/functions/${version.functionId}/versions/${version.versionId}`;
  const spec = (instanceType: string, maxInstances: number) => ({ deploymentSpecifications: [{ gpu: 'L40S', instanceType, minInstances: 0, maxInstances }] });

  it('reads the installation’s quotas over the defaults and names every mistake in them', () => {
    expect(installationQuotas()).toMatchObject({ functions: 5, gpus: 8, versionsPerFunction: 50, concurrentInvocations: null });
    expect(() => installationQuotas({ [ENV.quotas]: '{"functions": -1}' })).toThrow(`${ENV.quotas}: functions: must be 0 or more`);
    expect(() => installationQuotas({ [ENV.quotas]: '{"gpu": 4}' })).toThrow('Unrecognized key');
    expect(() => installationQuotas({ [ENV.quotas]: '{functions: 4}' })).toThrow('must be a JSON object');
    expect(parseQuotaValues({ gpus: 1.5 })).toContain('gpus: must be a whole number');
    expect(parseQuotaValues({ assetBytes: null })).toEqual({ assetBytes: null });
  });

  it('applies an account’s overrides over the installation’s and resets them to it', async () => {
    const { accountId } = await newAccount();
    expect(await changeQuotaOverrides(accountId, { functions: 1, assetBytes: null })).toEqual({ functions: 1, assetBytes: null });
    expect(await accountQuotas(accountId)).toMatchObject({ functions: 1, assetBytes: null, gpus: 8 });
    expect(await changeQuotaOverrides(accountId, {}, ['functions'])).toEqual({ assetBytes: null });
    expect((await accountQuotas(accountId)).functions).toBe(5);
  });

  it('counts GPUs as maxInstances times the GPUs of the instance type, and an update only on its growth', async () => {
    const owner: Account = await newAccount();
    expect(deploymentFootprint([{ instanceType: 'g6e.12xlarge', maxInstances: 2 }, { instanceType: 'g6e.xlarge', maxInstances: 1 }])).toEqual({ instances: 3, gpus: 2 * GPU_INSTANCE_TYPES['g6e.12xlarge']! + 1 });
    const first = await putVersion(owner.accountId);
    const second = await putVersion(owner.accountId);

    // g6e.12xlarge holds 4 GPUs: 2 instances are the 8 the installation allows, a third would be 12.
    expect((await stack.call('POST', deploymentPath(first), { key: owner.key, body: spec('g6e.12xlarge', 2) })).statusCode).toBe(200);
    const refused = await stack.call('POST', deploymentPath(second), { key: owner.key, body: spec('g6e.xlarge', 1) });
    expect(refused.statusCode).toBe(403);
    expect(refused.json).toMatchObject({ type: 'urn:nvcf:problem-details:quota-exceeded:gpus', title: 'Quota Exceeded' });
    expect(refused.json.detail).toContain(`quota gpus of account '${owner.accountId}' is 8`);
    expect(refused.json.detail).toContain('8 in use, and this request needs 1 more');

    const grown = await stack.call('PUT', deploymentPath(first), { key: owner.key, body: spec('g6e.12xlarge', 3) });
    expect(grown.statusCode).toBe(403);
    expect(grown.json.detail).toContain('8 in use, and this request needs 4 more');
    expect((await stack.call('PUT', deploymentPath(first), { key: owner.key, body: spec('g6e.12xlarge', 1) })).statusCode).toBe(200);
    expect((await stack.call('POST', deploymentPath(second), { key: owner.key, body: spec('g6e.xlarge', 4) })).statusCode).toBe(200);

    const usage = await stack.call('GET', '/v2/nvcf/accounts/me/usage', { key: owner.key });
    expect(usage.json.quotas).toMatchObject({ deployedInstances: { quota: 100, used: 5 }, gpus: { quota: 8, used: 8 }, functions: { quota: 5, used: 2 } });
  });

  it('holds a concurrent invocation against the caller’s and the owner’s quota until the call is answered', async () => {
    const owner: Account = await newAccount();
    const friend: Account = await newAccount();
    const version = await deployVersion(await putVersion(owner.accountId), { status: 'ACTIVE' });
    await stack.call('POST', `/v2/nvcf/authorizations/functions/${version.functionId}`, { key: owner.key, body: { authorizedParties: [{ ncaId: friend.accountId }] } });
    await changeQuotaOverrides(owner.accountId, { concurrentInvocations: 1 });
    const invoke = (key: string, pollSeconds: number) =>
      stack.call('POST', `/v2/nvcf/pexec/functions/${version.functionId}`, { key, body: { message: 'hi' }, headers: { 'nvcf-poll-seconds': String(pollSeconds) } });

    // No worker takes the call: the service holds it for its 2 s poll window, then answers 202.
    const held = invoke(friend.key, 2);
    await expect.poll(() => concurrentInvocations(owner.accountId), { timeout: 5000 }).toBe(1);
    const refused = await invoke(owner.key, 0);
    expect(refused.statusCode).toBe(429);
    expect(refused.headers['retry-after']).toBe('1');
    expect(refused.json.type).toBe('urn:nvcf:problem-details:quota-exceeded:concurrentInvocations');
    expect(refused.json.detail).toContain(`quota concurrentInvocations of account '${owner.accountId}' is 1`);
    // The friend has no quota of its own: its call counted against the owner's only.
    expect(await concurrentInvocations(friend.accountId)).toBe(0);

    expect((await held).statusCode).toBe(202);
    await expect.poll(() => concurrentInvocations(owner.accountId), { timeout: 5000 }).toBe(0);
    expect((await invoke(owner.key, 0)).statusCode).toBe(202);
    await expect.poll(() => concurrentInvocations(owner.accountId), { timeout: 5000 }).toBe(0);
  });

  it('gives back the slots of a replica that died holding them, and never a live one’s', async () => {
    const { accountId } = await newAccount();
    const accounts = [{ accountId, quotas: { ...installationQuotas(), concurrentInvocations: 2 } }];
    const now = Date.now();
    const longAgo = now - (CONCURRENCY_HOLDER_STALE_SECONDS + 60) * 1000;
    await takeInvocationSlots(accounts, 'dead', { nowMs: longAgo }); // never given back, never refreshed
    const live = await takeInvocationSlots(accounts, 'live', { nowMs: longAgo });
    await markHolderAlive([accountId], 'live', now);

    const givenBack: unknown[] = [];
    const third = await takeInvocationSlots(accounts, 'new', { nowMs: now, onGivenBack: (slots) => givenBack.push(slots) });
    expect(givenBack).toEqual([{ accountId, holder: 'dead', held: 1 }]);
    expect(await concurrentInvocations(accountId)).toBe(2);
    const refused = takeInvocationSlots(accounts, 'new', { nowMs: now });
    await expect(refused).rejects.toMatchObject({ status: 429, message: expect.stringContaining('2 in use') });

    await Promise.all([live.release(), third.release()]);
    expect(await concurrentInvocations(accountId)).toBe(0);
    // Holders that hold nothing leave nothing behind on the item.
    const { Item } = await dynamo().send(new GetCommand({ TableName: tableName('counters'), Key: { counterKey: `concurrent#${accountId}` } }));
    expect(Object.keys(Item!).sort()).toEqual(['calls', 'counterKey']);
  });

  it('shows each account only its own usage', async () => {
    const [mine, theirs] = [await newAccount(), await newAccount()];
    await putVersion(mine.accountId);
    expect((await stack.call('GET', '/v2/nvcf/accounts/me/usage', { key: mine.key })).json.quotas.functions.used).toBe(1);
    const other = await stack.call('GET', '/v2/nvcf/accounts/me/usage', { key: theirs.key });
    expect(other.json).toMatchObject({ accountId: theirs.accountId, quotas: { functions: { used: 0 }, versionsPerFunction: { used: 0 } } });
    expect(other.json.quotas.versionsPerFunction.functionId).toBeUndefined();
  });
});
