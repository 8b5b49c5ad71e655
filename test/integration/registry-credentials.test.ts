/**
 * Registry credentials through the API on the emulators (R1–R6): create,
 * list, get, patch and delete per account, sealed at rest under the
 * credential's own context, another account answered 404, bad input 400
 * naming the field, and the secret in no answer or line of the run.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { dynamo } from '../../core/aws';
import { tableName } from '../../core/config';
import { GetCommand } from '@aws-sdk/lib-dynamodb';
import { getRegistryCredential, openRegistryLogin, registryCredentialFor, type RegistryCredentialRecord } from '../../core/registry-credentials';
import { SCOPES } from '../../core/routes';
import { openSecrets } from '../../core/secrets';
import { newAccount, startTestStack, type TestResponse, type TestStack } from '../support/stack';

const KEY_MARKER = 'ngc-key-marker-7d2a91c4';
const ROTATED_MARKER = 'rotated-marker-0e6b55f3';
const PATH = '/v2/nvcf/registry-credentials';
const NGC = { registryHostname: 'nvcr.io', secret: { name: '$oauthtoken', value: KEY_MARKER }, artifactTypes: ['CONTAINER', 'MODEL'] };

describe('registry credentials', () => {
  let stack: TestStack;
  let owner: { accountId: string; key: string };
  let stranger: { accountId: string; key: string };
  const seen: string[] = [];
  const writes = { stdout: process.stdout.write.bind(process.stdout), stderr: process.stderr.write.bind(process.stderr) };

  beforeAll(async () => {
    for (const stream of ['stdout', 'stderr'] as const) {
      process[stream].write = ((chunk: string | Uint8Array, ...rest: any[]) => {
        seen.push(Buffer.from(chunk).toString('utf8'));
        return writes[stream](chunk, ...rest);
      }) as typeof process.stdout.write;
    }
    stack = await startTestStack({ POWERTOOLS_LOG_LEVEL: 'DEBUG' });
    owner = await newAccount();
    stranger = await newAccount();
  });
  afterAll(async () => {
    process.stdout.write = writes.stdout;
    process.stderr.write = writes.stderr;
    await stack?.stop();
  });

  const call = async (method: string, path: string, options: Parameters<TestStack['call']>[2] = {}): Promise<TestResponse> => {
    const response = await stack.call(method, path, { key: owner.key, ...options });
    seen.push(response.body.toString('utf8'));
    return response;
  };
  const stored = async (id: string) => (await getRegistryCredential(owner.accountId, id)) as RegistryCredentialRecord;

  it('creates a credential (200), shows everything but the secret, and seals the secret at rest', async () => {
    const response = await call('POST', PATH, { body: { ...NGC, description: 'my NGC org', tags: ['team-a'] } });
    expect(response.statusCode, response.body.toString()).toBe(200);
    const credential = response.json.registryCredential;
    expect(credential).toMatchObject({
      ncaId: owner.accountId,
      registryName: 'NGC',
      registryHostname: 'nvcr.io',
      artifactTypes: ['CONTAINER', 'MODEL'],
      description: 'my NGC org',
      tags: ['team-a'],
      provisionedBy: 'USER',
    });
    expect(credential.registryCredentialId).toMatch(/^[0-9a-f-]{36}$/);
    expect(credential).not.toHaveProperty('secret');

    const { Item } = await dynamo().send(new GetCommand({ TableName: tableName('registryCredentials'), Key: { accountId: owner.accountId, registryCredentialId: credential.registryCredentialId } }));
    expect(JSON.stringify(Item)).not.toContain(KEY_MARKER);
    expect(await openRegistryLogin(await stored(credential.registryCredentialId))).toEqual({ username: '$oauthtoken', password: KEY_MARKER });

    const got = await call('GET', `${PATH}/${credential.registryCredentialId}`);
    expect(got.statusCode).toBe(200);
    expect(got.json.registryCredential).toEqual(credential);
  });

  it('opens only as its own credential: not under another account, not as function secrets', async () => {
    const created = (await call('POST', PATH, { body: { ...NGC, registryHostname: 'ghcr.io', artifactTypes: ['CONTAINER'] } })).json.registryCredential;
    const record = await stored(created.registryCredentialId);
    await expect(openRegistryLogin({ ...record, accountId: stranger.accountId })).rejects.toThrow(/cannot be opened/);
    await expect(openSecrets({ ...record.sealedSecret, names: [], revision: 'r' }, { accountId: owner.accountId, functionId: 'f', versionId: 'v' })).rejects.toThrow(/cannot be opened/);
  });

  it('lists the account’s credentials, filtered by artifactType, and none of another account', async () => {
    const account = await newAccount();
    const mine = (body: unknown) => call('POST', PATH, { key: account.key, body });
    await mine(NGC);
    await mine({ registryHostname: 'docker.io', secret: { name: 'me', value: KEY_MARKER }, artifactTypes: ['CONTAINER'] });
    const all = await call('GET', PATH, { key: account.key });
    expect(all.statusCode).toBe(200);
    expect(all.json.registryCredentials.map((c: { registryHostname: string }) => c.registryHostname)).toEqual(['nvcr.io', 'docker.io']);
    const models = await call('GET', PATH, { key: account.key, query: 'artifactType=MODEL' });
    expect(models.json.registryCredentials.map((c: { registryHostname: string }) => c.registryHostname)).toEqual(['nvcr.io']);
    expect((await call('GET', PATH, { key: stranger.key })).json.registryCredentials).toEqual([]);
    const bad = await call('GET', PATH, { key: account.key, query: 'artifactType=WHEELS' });
    expect(bad.statusCode).toBe(400);
    expect(bad.json.detail).toContain('artifactType');
  });

  it('PATCH replaces the secret and adds artifact types (never removes one)', async () => {
    const account = await newAccount();
    const id = (await call('POST', PATH, { key: account.key, body: NGC })).json.registryCredential.registryCredentialId;
    const patched = await call('PATCH', `${PATH}/${id}`, { key: account.key, body: { secret: { name: '$oauthtoken', value: ROTATED_MARKER }, artifactTypeEnums: ['HELM', 'MODEL'] } });
    expect(patched.statusCode, patched.body.toString()).toBe(200);
    expect(patched.json.registryCredential.artifactTypes).toEqual(['CONTAINER', 'MODEL', 'HELM']);
    const record = (await getRegistryCredential(account.accountId, id))!;
    expect((await openRegistryLogin(record)).password).toBe(ROTATED_MARKER);
    // An NGC credential stored for nvcr.io serves the other NGC hosts for the types it lists.
    expect((await registryCredentialFor(account.accountId, 'api.ngc.nvidia.com', 'MODEL'))?.registryCredentialId).toBe(id);
    expect((await registryCredentialFor(account.accountId, 'helm.ngc.nvidia.com', 'HELM'))?.registryCredentialId).toBe(id);
    expect(await registryCredentialFor(account.accountId, 'api.ngc.nvidia.com', 'RESOURCE')).toBeUndefined();
    // Never another account's.
    expect(await registryCredentialFor(stranger.accountId, 'nvcr.io', 'CONTAINER')).toBeUndefined();
  });

  it('DELETE answers 204, then the credential is gone (404)', async () => {
    const id = (await call('POST', PATH, { body: { ...NGC, registryHostname: 'quay.io', artifactTypes: ['CONTAINER'] } })).json.registryCredential.registryCredentialId;
    const deleted = await call('DELETE', `${PATH}/${id}`);
    expect(deleted.statusCode).toBe(204);
    expect(deleted.body.length).toBe(0);
    expect((await call('GET', `${PATH}/${id}`)).statusCode).toBe(404);
    expect((await call('DELETE', `${PATH}/${id}`)).statusCode).toBe(404);
  });

  it("answers 404 to another account for get, patch and delete, and leaves the owner's credential alone", async () => {
    const account = await newAccount();
    const id = (await call('POST', PATH, { key: account.key, body: NGC })).json.registryCredential.registryCredentialId;
    for (const [method, body] of [['GET'], ['PATCH', { secret: { name: 'x', value: 'stolen' } }], ['DELETE']] as const) {
      const response = await call(method, `${PATH}/${id}`, { key: stranger.key, body });
      expect([method, response.statusCode]).toEqual([method, 404]);
      expect(response.headers['content-type']).toBe('application/problem+json');
      expect(response.json.detail).toBe(`Registry credential '${id}' not found`);
    }
    expect((await openRegistryLogin((await getRegistryCredential(account.accountId, id))!)).password).toBe(KEY_MARKER);
  });

  it('answers 409 to a second credential for the same host, naming the one to PATCH', async () => {
    const account = await newAccount();
    const id = (await call('POST', PATH, { key: account.key, body: NGC })).json.registryCredential.registryCredentialId;
    const again = await call('POST', PATH, { key: account.key, body: NGC });
    expect(again.statusCode).toBe(409);
    expect(again.json.detail).toContain(`PATCH /v2/nvcf/registry-credentials/${id}`);
  });

  it('lists the recognized registries per artifact type', async () => {
    const response = await call('GET', '/v2/nvcf/recognized-registries');
    expect(response.statusCode).toBe(200);
    expect(response.json.recognizedRegistries.CONTAINER).toContainEqual({ registryName: 'NGC', registryHostname: 'nvcr.io' });
    expect(response.json.recognizedRegistries.MODEL).toEqual([{ registryName: 'NGC', registryHostname: 'api.ngc.nvidia.com' }]);
    expect(response.json.recognizedRegistries.HELM).toContainEqual({ registryName: 'NGC', registryHostname: 'helm.ngc.nvidia.com' });
  });

  it('answers 403 to a key without manage_registry_credentials', async () => {
    const limited = await newAccount(SCOPES.filter((scope) => scope !== 'manage_registry_credentials'));
    const response = await call('GET', PATH, { key: limited.key });
    expect(response.statusCode).toBe(403);
    expect(response.json.detail).toContain('"manage_registry_credentials" scope');
  });

  it.each([
    ['no registryHostname', { ...NGC, registryHostname: undefined }, 'registryHostname: is required'],
    ['a host no registry is recognized for', { ...NGC, registryHostname: 'registry.example.com' }, 'registryHostname: must be a recognized registry host'],
    ['no secret', { ...NGC, secret: undefined }, 'secret: is required'],
    ['a secret without a value', { ...NGC, secret: { name: '$oauthtoken' } }, 'secret.value: is required'],
    ['an empty secret value', { ...NGC, secret: { name: '$oauthtoken', value: '' } }, 'secret.value: must not be empty'],
    ['no artifact types', { ...NGC, artifactTypes: [] }, 'artifactTypes: must list at least one item'],
    ['an unknown artifact type', { ...NGC, artifactTypes: ['WHEELS'] }, 'artifactTypes[0]: must be one of "CONTAINER", "HELM", "MODEL", "RESOURCE"'],
  ])('refuses %s with 400 problem+json naming the field', async (_, body, detail) => {
    const response = await call('POST', PATH, { body });
    expect(response.statusCode).toBe(400);
    expect(response.headers['content-type']).toBe('application/problem+json');
    expect(response.json.detail).toContain(detail);
  });

  it('refuses an empty PATCH and a bad id with 400', async () => {
    const id = (await call('POST', PATH, { body: { ...NGC, registryHostname: 'docker.io', artifactTypes: ['CONTAINER'] } })).json.registryCredential.registryCredentialId;
    const empty = await call('PATCH', `${PATH}/${id}`, { body: {} });
    expect(empty.statusCode).toBe(400);
    expect(empty.json.detail).toContain('must give secret, artifactTypeEnums or both');
    const badId = await call('GET', `${PATH}/not-a-uuid`);
    expect(badId.statusCode).toBe(400);
    expect(badId.json.detail).toContain('registryCredentialId must be a UUID');
  });

  it('never shows a secret: in no answer and in no line of this run', () => {
    const everything = seen.join('\n');
    expect(everything).toContain('registryCredentialId');
    expect(everything).toContain('"message":"request refused"');
    for (const marker of [KEY_MARKER, ROTATED_MARKER]) expect(everything).not.toContain(marker);
  });
});
