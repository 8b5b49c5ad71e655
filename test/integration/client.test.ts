/**
 * The typed client (client/index.ts) over HTTP against the real handlers on
 * the emulators, for the routes the CLI e2e test does not drive: rate limits,
 * usage, registry credentials, authorizations and API keys; then the nvcf
 * commands built on them (share, rate-limit, key, usage), spawned as a user
 * runs them. Each call goes through the client's route table lookup, so a
 * method bound to the wrong route or shape fails here.
 */
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { NvcfClient, NvcfError, type FunctionVersion } from '../../client';
import { ROOT } from '../support/npm-start';
import { newAccount, startTestStack, type TestStack } from '../support/stack';

const run = promisify(execFile);

const ECHO = { name: 'client-echo', inferenceUrl: '/echo', inferencePort: 8000, containerImage: 'nvcr.io/nvcf-examples/echo:1.0' };

describe('the typed client', () => {
  let stack: TestStack;
  let owner: NvcfClient;
  let ownerKey: string;
  let other: { accountId: string; client: NvcfClient };
  let fn: FunctionVersion;

  beforeAll(async () => {
    stack = await startTestStack();
    ownerKey = (await newAccount()).key;
    owner = new NvcfClient({ baseUrl: stack.url, apiKey: ownerKey });
    const account = await newAccount();
    other = { accountId: account.accountId, client: new NvcfClient({ baseUrl: stack.url, apiKey: account.key }) };
    fn = await owner.createFunction(ECHO);
  });
  afterAll(async () => stack.stop());

  it('sets, shows and removes a rate limit (RL1, F9, RL2)', async () => {
    await owner.setRateLimit(fn.id, fn.versionId, { rateLimit: '10-S' });
    expect((await owner.getVersion(fn.id, fn.versionId)).rateLimit).toMatchObject({ rateLimit: '10-S' });
    const updated = await owner.updateVersion(fn.id, fn.versionId, { tags: ['client'], rateLimit: { rateLimit: '100-M' } });
    expect(updated).toMatchObject({ tags: ['client'], rateLimit: { rateLimit: '100-M' } });
    await owner.deleteRateLimit(fn.id, fn.versionId);
    expect((await owner.getVersion(fn.id, fn.versionId)).rateLimit).toBeUndefined();
    await expect(owner.setRateLimit(fn.id, fn.versionId, { rateLimit: 'fast' })).rejects.toMatchObject({ status: 400, detail: expect.stringContaining('rateLimit') });
  });

  it("reads the account's usage against its quotas (U1)", async () => {
    const usage = await owner.accountUsage();
    expect(usage.quotas.functions.used).toBe(1);
    expect(usage.quotas.versionsPerFunction.used).toBe(1);
  });

  it('adds, reads, updates and deletes a registry credential (R1–R6)', async () => {
    expect((await owner.recognizedRegistries()).CONTAINER.map((registry) => registry.registryHostname)).toContain('nvcr.io');
    const added = await owner.addRegistryCredential({ registryHostname: 'nvcr.io', secret: { name: '$oauthtoken', value: 'nvapi-secret' }, artifactTypes: ['CONTAINER'] });
    expect(JSON.stringify(added)).not.toContain('nvapi-secret');
    const updated = await owner.updateRegistryCredential(added.registryCredentialId, { artifactTypeEnums: ['MODEL'] });
    expect(updated.artifactTypes).toEqual(['CONTAINER', 'MODEL']);
    expect((await owner.listRegistryCredentials({ artifactTypes: ['MODEL'] })).map((credential) => credential.registryCredentialId)).toEqual([added.registryCredentialId]);
    expect(await owner.getRegistryCredential(added.registryCredentialId)).toEqual(updated);
    await owner.deleteRegistryCredential(added.registryCredentialId);
    await expect(owner.getRegistryCredential(added.registryCredentialId)).rejects.toBeInstanceOf(NvcfError);
  });

  it('shares a function with another account and takes it back (Z1–Z10)', async () => {
    await expect(owner.addAuthorization(fn.id, other.accountId)).rejects.toMatchObject({ status: 404 });
    expect((await owner.authorize(fn.id, [other.accountId])).authorizedParties).toEqual([{ ncaId: other.accountId }]);
    expect((await other.client.getVersion(fn.id, fn.versionId)).id).toBe(fn.id);
    await expect(owner.addAuthorization(fn.id, other.accountId)).rejects.toMatchObject({ status: 409 });
    expect((await owner.getVersionAuthorizations(fn.id, fn.versionId)).authorizedParties).toEqual([{ ncaId: other.accountId }]);
    expect(await owner.listAuthorizations(fn.id)).toHaveLength(1);
    expect((await owner.removeAuthorization(fn.id, other.accountId)).authorizedParties).toEqual([]);
    await owner.deleteAuthorizations(fn.id);
    await expect(other.client.getVersion(fn.id, fn.versionId)).rejects.toMatchObject({ status: 404 });
  });

  it('creates a narrower key, lists it without its value and revokes it (K1–K4)', async () => {
    const created = await owner.createKey({ description: 'invoker', expiresAt: new Date(Date.now() + 86_400_000).toISOString(), scopes: ['invoke_function'] });
    expect(created.value).toMatch(/^nvapi-/);
    expect((await owner.getKey(created.id)).authorizations).toEqual({ policies: [{ scopes: ['invoke_function'] }] });
    const listed = (await owner.listKeys()).find((key) => key.id === created.id);
    expect(listed).toMatchObject({ status: 'ACTIVE', description: 'invoker' });
    expect(listed).not.toHaveProperty('value');
    await owner.revokeKey(created.id);
    expect((await owner.getKey(created.id)).status).toBe('REVOKED');
  });

  /** `nvcf ...args --format json`, as the owner, parsed; failures reject with the exit code and stderr. */
  async function nvcf(...args: string[]): Promise<any> {
    const env = { ...process.env, NVCF_BASE_URL: stack.url, NVCF_API_KEY: ownerKey };
    const { stdout } = await run(process.execPath, [join(ROOT, 'bin', 'nvcf.mjs'), ...args, '--format', 'json'], { env });
    return JSON.parse(stdout);
  }

  it('drives sharing, rate limits, keys and usage with the nvcf commands', async () => {
    const target = `${fn.id}:${fn.versionId}`;
    expect((await nvcf('share', 'set', fn.id, other.accountId)).authorizedParties).toEqual([{ ncaId: other.accountId }]);
    expect(await nvcf('share', 'list', fn.id)).toMatchObject([{ id: fn.id, authorizedParties: [{ ncaId: other.accountId }] }]);
    expect((await nvcf('share', 'remove', fn.id, other.accountId)).authorizedParties).toEqual([]);
    await nvcf('share', 'clear', fn.id);

    await nvcf('rate-limit', 'set', target, '5-S', '--account', `${other.accountId}:50-M`, '--exempt', 'team-x');
    expect((await owner.getVersion(fn.id, fn.versionId)).rateLimit).toEqual({ rateLimit: '5-S', perNcaIdRate: { [other.accountId]: '50-M' }, exemptedNcaIds: ['team-x'] });
    await nvcf('rate-limit', 'remove', target);
    expect((await owner.getVersion(fn.id, fn.versionId)).rateLimit).toBeUndefined();

    const created = await nvcf('key', 'create', '--description', 'from the cli', '--scope', 'list_functions', '--expires-in-days', '2');
    expect(created).toMatchObject({ description: 'from the cli', status: 'ACTIVE', value: expect.stringMatching(/^nvapi-/) });
    expect(Date.parse(created.expires_at) - Date.now()).toBeGreaterThan(86_400_000);
    expect((await nvcf('key', 'list')).map((key: { id: string }) => key.id)).toContain(created.id);
    await nvcf('key', 'revoke', created.id);
    expect((await owner.getKey(created.id)).status).toBe('REVOKED');

    expect((await nvcf('usage')).quotas.functions).toMatchObject({ used: 1 });
    await expect(nvcf('rate-limit', 'set', target, 'often')).rejects.toMatchObject({ code: 1, stderr: expect.stringMatching(/^nvcf: Bad Request \(400\): .*rateLimit/) });
  }, 60_000);
});
