/**
 * Rate limits and quotas on `npm start`, as a team sees them: a 10-S limit on
 * a deployed echo function holds under a burst of 200 calls from 20 clients
 * (the rest 429 with Retry-After, none 5xx); each quota of the installation
 * (NVCF_QUOTAS) or of the admin's override refuses the call that would
 * exceed it, naming itself, its value and the current use; the usage
 * endpoint shows it all, and another account sees none of it.
 */
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ASSET_DESCRIPTION_HEADER } from '../../core/assets';
import { QUOTA_CACHE_SECONDS, VERSION_CACHE_SECONDS } from '../../core/limits';
import { deployAndWait, startNpmStart, type ApiAnswer, type NpmStart } from '../support/npm-start';
import { waitFor } from '../support/processes';

const ECHO_IMAGE = 'nvcr.io/nvcf-examples/echo:1.0';
const ownerKey = `nvapi-${randomBytes(32).toString('base64url')}`;
const OWNER = 'local';
const TEAM_B = 'team-b';
const QUOTAS = { functions: 3, versionsPerFunction: 2, deployedInstances: 2, gpus: 2, assetBytes: 1000 };

describe('rate limits and quotas on npm start', () => {
  let stack: NpmStart;

  beforeAll(async () => {
    stack = await startNpmStart({ NVCF_API_KEY: ownerKey, NVCF_QUOTAS: JSON.stringify(QUOTAS) });
  }, 90_000);
  afterAll(() => stack?.stop(), 90_000);

  const call = (key: string, method: string, path: string, body?: unknown, headers?: Record<string, string>) => stack.call(key, method, path, body, headers);
  const keys = (...args: string[]) => stack.admin(...args);

  function expectQuotaRefusal(response: ApiAnswer, quota: string, value: number, used: number) {
    expect(response.status, response.text).toBe(quota === 'concurrentInvocations' ? 429 : 403);
    expect(response.headers.get('content-type')).toContain('application/problem+json');
    expect(response.json.type).toBe(`urn:nvcf:problem-details:quota-exceeded:${quota}`);
    expect(response.json.detail).toContain(`quota ${quota} of account '${OWNER}' is ${value}`);
    expect(response.json.detail).toContain(`${used} in use`);
  }

  const ECHO = { name: 'limited-echo', inferenceUrl: '/echo', containerImage: ECHO_IMAGE, healthUri: '/health' };
  const spec = (maxInstances: number) => ({ deploymentSpecifications: [{ gpu: 'LOCAL', instanceType: 'local.gpu', minInstances: Math.min(1, maxInstances), maxInstances }] });

  it('holds a 10-S limit under a 200-call burst from 20 clients, enforces every quota, and shows another account none of it', async () => {
    // The owner's echo function, deployed with one instance, limited to 10 calls per second per caller.
    const created = await call(ownerKey, 'POST', '/v2/nvcf/functions', ECHO);
    expect(created.status).toBe(200);
    const { id: functionId, versionId } = created.json.function;
    const version = `${functionId}/versions/${versionId}`;
    await deployAndWait(stack, ownerKey, functionId, versionId, spec(1));
    expect((await call(ownerKey, 'PUT', `/v2/nvcf/ratelimit/functions/${version}`, { rateLimit: '10-S' })).status).toBe(204);
    const invoke = (body: unknown = { message: 'hi' }) => call(ownerKey, 'POST', `/v2/nvcf/pexec/functions/${functionId}`, body, { 'nvcf-poll-seconds': '30' });
    await waitFor('the limit to reach the invocation service', async () => {
      const answers = await Promise.all(Array.from({ length: 12 }, () => invoke()));
      return answers.some((answer) => answer.status === 429) ? true : undefined;
    }, (VERSION_CACHE_SECONDS + 10) * 1000);
    // Start the burst at the beginning of a second, so that it spans as few windows as it can.
    await new Promise((resolve) => setTimeout(resolve, 1000 - (Date.now() % 1000)));

    const started = Date.now();
    const answers = (await Promise.all(Array.from({ length: 20 }, async () => {
      const mine = [];
      for (let i = 0; i < 10; i += 1) mine.push(await invoke());
      return mine;
    }))).flat();
    const ended = Date.now();
    const windows = Math.floor(ended / 1000) - Math.floor(started / 1000) + 1;
    const passed = answers.filter((answer) => answer.status === 200);
    const refused = answers.filter((answer) => answer.status === 429);
    expect(answers).toHaveLength(200);
    expect(passed.length + refused.length, answers.map((answer) => answer.status).join(',')).toBe(200);
    expect(passed.length).toBeGreaterThanOrEqual(10);
    expect(passed.length, `${passed.length} calls passed in ${windows} one-second windows`).toBeLessThanOrEqual(10 * windows);
    for (const answer of passed) {
      expect(answer.text).toContain('hi');
      expect(answer.headers.get('ratelimit-limit')).toBe('10');
      expect(Number(answer.headers.get('ratelimit-remaining'))).toBeLessThan(10);
    }
    for (const answer of refused) {
      expect(Number(answer.headers.get('retry-after'))).toBe(1);
      expect(answer.headers.get('ratelimit-limit')).toBe('10');
      expect(answer.headers.get('ratelimit-remaining')).toBe('0');
      expect(answer.json.detail).toContain('rate limit 10-S reached');
    }
    expect((await call(ownerKey, 'DELETE', `/v2/nvcf/ratelimit/functions/${version}`)).status).toBe(204);

    // Versions per function: the second version is the last one allowed.
    expect((await call(ownerKey, 'POST', `/v2/nvcf/functions/${functionId}/versions`, ECHO)).status).toBe(200);
    expectQuotaRefusal(await call(ownerKey, 'POST', `/v2/nvcf/functions/${functionId}/versions`, ECHO), 'versionsPerFunction', 2, 2);

    // Functions: three, then refused.
    const second = await call(ownerKey, 'POST', '/v2/nvcf/functions', { ...ECHO, name: 'second' });
    expect(second.status).toBe(200);
    expect((await call(ownerKey, 'POST', '/v2/nvcf/functions', { ...ECHO, name: 'third' })).status).toBe(200);
    expectQuotaRefusal(await call(ownerKey, 'POST', '/v2/nvcf/functions', { ...ECHO, name: 'fourth' }), 'functions', 3, 3);

    // Deployed instances: one is running, two more would make three; nothing is deployed by the refusal.
    const secondDeployment = `/v2/nvcf/deployments/functions/${second.json.function.id}/versions/${second.json.function.versionId}`;
    expectQuotaRefusal(await call(ownerKey, 'POST', secondDeployment, spec(2)), 'deployedInstances', 2, 1);
    const secondVersion = `/v2/nvcf/functions/${second.json.function.id}/versions/${second.json.function.versionId}`;
    expect((await call(ownerKey, 'GET', secondVersion)).json.function.status).toBe('INACTIVE');
    // GPUs, once the admin lifts the instances quota for this account.
    await keys('quota', 'set', '--account', OWNER, '--deployed-instances', 'unlimited');
    expectQuotaRefusal(await call(ownerKey, 'POST', secondDeployment, spec(2)), 'gpus', 2, 1);

    // Asset bytes: an upload fills the quota, the next asset is refused.
    const asset = await call(ownerKey, 'POST', '/v2/nvcf/assets', { contentType: 'text/plain', description: 'big' });
    expect(asset.status).toBe(200);
    const uploaded = await fetch(asset.json.uploadUrl, { method: 'PUT', headers: { 'content-type': 'text/plain', [ASSET_DESCRIPTION_HEADER]: 'big' }, body: Buffer.alloc(1200, 'a') });
    expect(uploaded.status).toBe(200);
    expectQuotaRefusal(await call(ownerKey, 'POST', '/v2/nvcf/assets', { contentType: 'text/plain', description: 'more' }), 'assetBytes', 1000, 1200);

    // Concurrent invocations, set by the admin: a second call while one is held is refused with 429.
    await keys('quota', 'set', '--account', OWNER, '--concurrent-invocations', '1');
    // The service sees the override within its quota cache time: until then both calls pass.
    const blocked = await waitFor('a call to be refused while a slow one is held', async () => {
      const slow = invoke({ message: 'slow', delay: 2 });
      await new Promise((resolve) => setTimeout(resolve, 500));
      const response = await invoke();
      expect((await slow).status).toBe(200);
      return response.status === 429 ? response : undefined;
    }, (QUOTA_CACHE_SECONDS + 20) * 1000);
    expectQuotaRefusal(blocked, 'concurrentInvocations', 1, 1);
    expect(blocked.headers.get('retry-after')).toBe('1');
    expect((await invoke()).status).toBe(200);

    // The owner's usage against its quotas.
    // A call's slot is given back just after its answer is sent.
    const usage = await waitFor('the last call to give back its slot', async () => {
      const response = await call(ownerKey, 'GET', '/v2/nvcf/accounts/me/usage');
      return response.json?.quotas.concurrentInvocations.used === 0 ? response : undefined;
    }, 10_000);
    expect(usage.status).toBe(200);
    expect(usage.json).toMatchObject({
      accountId: OWNER,
      quotas: {
        functions: { quota: 3, used: 3 },
        versionsPerFunction: { quota: 2, used: 2, functionId },
        deployedInstances: { quota: null, used: 1 },
        gpus: { quota: 2, used: 1 },
        concurrentInvocations: { quota: 1, used: 0 },
        assetBytes: { quota: 1000, used: 1200 },
      },
    });

    // Team B: the installation's quotas, none of the owner's use, and the owner's function and limits out of reach.
    const teamKey = await stack.adminKey(TEAM_B);
    const theirs = await call(teamKey, 'GET', '/v2/nvcf/accounts/me/usage');
    expect(theirs.json).toMatchObject({
      accountId: TEAM_B,
      quotas: {
        functions: { quota: 3, used: 0 },
        deployedInstances: { quota: 2, used: 0 },
        gpus: { quota: 2, used: 0 },
        concurrentInvocations: { quota: null, used: 0 },
        assetBytes: { quota: 1000, used: 0 },
      },
    });
    expect((await call(teamKey, 'PUT', `/v2/nvcf/ratelimit/functions/${version}`, { rateLimit: '1-S' })).status).toBe(404);
    expect((await call(teamKey, 'POST', `/v2/nvcf/pexec/functions/${functionId}`, { message: 'hi' })).status).toBe(404);
    expect((await call(teamKey, 'POST', '/v2/nvcf/functions', ECHO)).status).toBe(200);

    // The admin command refuses an override for an account that has no keys, and a malformed value.
    const unknown = await keys('quota', 'set', '--account', 'nobody', '--functions', '5').catch((error: { code: number; stderr: string }) => error);
    expect(unknown).toMatchObject({ code: 2 });
    expect((unknown as { stderr: string }).stderr).toContain('account nobody has no API keys');
    const malformed = await keys('quota', 'set', '--account', TEAM_B, '--gpus', 'lots').catch((error: { code: number; stderr: string }) => error);
    expect(malformed).toMatchObject({ code: 2 });
    expect((malformed as { stderr: string }).stderr).toContain('--gpus must be a whole number');
  }, 240_000);
});
