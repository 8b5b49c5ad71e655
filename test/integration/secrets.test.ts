/**
 * Functions' secrets through the API on the emulators: created with F1/F2,
 * replaced with PUT /v2/nvcf/secrets/... (S1), sealed at rest, and never
 * shown: every answer and every line this process writes during the run is
 * searched for the marker values.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { changeStatus, getVersion } from '../../core/functions';
import { MAX_SECRET_VALUE_LENGTH, MAX_SECRETS, MAX_SECRETS_FILE_BYTES } from '../../core/limits';
import { ENV } from '../../core/names';
import { SCOPES } from '../../core/routes';
import { openSecrets } from '../../core/secrets';
import { newAccount, startTestStack, type TestResponse, type TestStack } from '../support/stack';

const CREATED_MARKER = 'created-marker-4c1f9e2a';
const REPLACED_MARKER = 'replaced-marker-b83d07e5';
const MARKERS = [CREATED_MARKER, REPLACED_MARKER];
const MINIMAL = { name: 'secret-fn', inferenceUrl: '/echo', containerImage: 'nvcr.io/org/echo:1.0' };
const GPUS = [{ gpu: 'L40S', instanceTypes: ['g6e.xlarge'] }];

describe('secrets', () => {
  let stack: TestStack;
  let owner: { accountId: string; key: string };
  let stranger: { accountId: string; key: string };
  /** Every answer body of the run, and every line written to stdout/stderr while it ran. */
  const seen: string[] = [];
  const writes = { stdout: process.stdout.write.bind(process.stdout), stderr: process.stderr.write.bind(process.stderr) };

  beforeAll(async () => {
    for (const stream of ['stdout', 'stderr'] as const) {
      process[stream].write = ((chunk: string | Uint8Array, ...rest: any[]) => {
        seen.push(Buffer.from(chunk).toString('utf8'));
        return writes[stream](chunk, ...rest);
      }) as typeof process.stdout.write;
    }
    // DEBUG, so that every line the handlers could log on AWS is searched too.
    stack = await startTestStack({ [ENV.gpus]: JSON.stringify(GPUS), POWERTOOLS_LOG_LEVEL: 'DEBUG' });
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
    seen.push(response.body.toString('utf8'), JSON.stringify(response.headers));
    return response;
  };
  const secretsPath = (fn: { id: string; versionId: string }) => `/v2/nvcf/secrets/functions/${fn.id}/versions/${fn.versionId}`;
  const putSecrets = (fn: { id: string; versionId: string }, body: unknown, key = owner.key) => call('PUT', secretsPath(fn), { key, body });
  const created = async (secrets: unknown = [{ name: 'API_TOKEN', value: CREATED_MARKER }]) => {
    const response = await call('POST', '/v2/nvcf/functions', { body: { ...MINIMAL, secrets } });
    expect(response.statusCode).toBe(200);
    return response.json.function as { id: string; versionId: string; secrets?: string[] };
  };
  const fileOf = async (fn: { id: string; versionId: string }) => {
    const record = (await getVersion(fn.id, fn.versionId))!;
    return record.secrets ? JSON.parse(await openSecrets(record.secrets, { accountId: record.accountId, functionId: fn.id, versionId: fn.versionId })) : undefined;
  };

  it('lists update_secrets among the scopes a key may hold', () => {
    expect(SCOPES).toContain('update_secrets');
  });

  it('replaces the whole set with PUT: 204 with no body, the names shown, the new values delivered', async () => {
    const fn = await created([{ name: 'API_TOKEN', value: CREATED_MARKER }, { name: 'OLD', value: 'old' }]);
    expect(fn.secrets).toEqual(['API_TOKEN', 'OLD']);

    const response = await putSecrets(fn, { secrets: [{ name: 'API_TOKEN', value: REPLACED_MARKER }, { name: 'db', value: { user: 'u' } }] });
    expect(response.statusCode).toBe(204);
    expect(response.body.length).toBe(0);

    const got = await call('GET', `/v2/nvcf/functions/${fn.id}/versions/${fn.versionId}`);
    expect(got.json.function.secrets).toEqual(['API_TOKEN', 'db']);
    expect(await fileOf(fn)).toEqual({ API_TOKEN: REPLACED_MARKER, db: { user: 'u' } });
  });

  it('clears the set with an empty list', async () => {
    const fn = await created();
    expect((await putSecrets(fn, { secrets: [] })).statusCode).toBe(204);
    const got = await call('GET', `/v2/nvcf/functions/${fn.id}/versions/${fn.versionId}`);
    expect(got.json.function).not.toHaveProperty('secrets');
    expect(await fileOf(fn)).toBeUndefined();
  });

  it('gives secrets to a version that had none, and to a new version of a function (F2)', async () => {
    const fn = await created([]);
    expect(fn).not.toHaveProperty('secrets');
    expect((await putSecrets(fn, { secrets: [{ name: 'LATE', value: REPLACED_MARKER }] })).statusCode).toBe(204);
    expect(await fileOf(fn)).toEqual({ LATE: REPLACED_MARKER });

    const next = await call('POST', `/v2/nvcf/functions/${fn.id}/versions`, { body: { ...MINIMAL, secrets: [{ name: 'V2', value: CREATED_MARKER }] } });
    expect(next.json.function.secrets).toEqual(['V2']);
    expect(await fileOf(next.json.function)).toEqual({ V2: CREATED_MARKER });
  });

  it("answers 404 to another account, as for a missing version, and leaves the owner's secrets alone", async () => {
    const fn = await created();
    const response = await putSecrets(fn, { secrets: [{ name: 'API_TOKEN', value: 'stolen' }] }, stranger.key);
    expect(response.statusCode).toBe(404);
    expect(response.headers['content-type']).toBe('application/problem+json');
    expect(response.json.detail).toBe(`Function '${fn.id}' version '${fn.versionId}' not found`);
    expect(await fileOf(fn)).toEqual({ API_TOKEN: CREATED_MARKER });

    const missing = await putSecrets({ id: fn.id, versionId: '00000000-0000-4000-8000-000000000000' }, { secrets: [] });
    expect(missing.statusCode).toBe(404);
  });

  it('answers 403 to a key without the update_secrets scope', async () => {
    const fn = await created();
    const limited = await newAccount(SCOPES.filter((scope) => scope !== 'update_secrets'));
    const response = await putSecrets(fn, { secrets: [] }, limited.key);
    expect(response.statusCode).toBe(403);
    expect(response.json.detail).toContain('"update_secrets" scope');
  });

  it.each([
    ['no secrets field', {}, 'secrets: is required'],
    ['secrets that are not a list', { secrets: { API_TOKEN: 'x' } }, 'secrets:'],
    ['a name starting with -', { secrets: [{ name: '-x', value: 'v' }] }, 'secrets[0].name: must start with a letter or digit'],
    ['a value over the limit', { secrets: [{ name: 'BIG', value: `${CREATED_MARKER}${'x'.repeat(MAX_SECRET_VALUE_LENGTH)}` }] }, `secrets[0].value: must be at most ${MAX_SECRET_VALUE_LENGTH} characters`],
    ['a list value', { secrets: [{ name: 'L', value: [CREATED_MARKER] }] }, 'secrets[0].value: must be a string or a JSON object'],
    ['an empty value', { secrets: [{ name: 'E', value: '' }] }, 'secrets[0].value: must not be empty'],
    ['two secrets of one name', { secrets: [{ name: 'D', value: CREATED_MARKER }, { name: 'D', value: 'b' }] }, 'secrets[1].name: duplicate secret name "D"'],
    ['too many secrets', { secrets: Array.from({ length: MAX_SECRETS + 1 }, (_, i) => ({ name: `S${i}`, value: CREATED_MARKER })) }, `secrets: at most ${MAX_SECRETS} secrets`],
  ])('refuses %s with 400 problem+json naming the field', async (_, body, detail) => {
    const fn = await created();
    const response = await putSecrets(fn, body);
    expect(response.statusCode).toBe(400);
    expect(response.headers['content-type']).toBe('application/problem+json');
    expect(response.json.detail).toContain(detail);
    expect(await fileOf(fn)).toEqual({ API_TOKEN: CREATED_MARKER });
  });

  it('stores a set at its size limit on the version item (DynamoDB holds 400 KB), and refuses a larger one', async () => {
    const big = (count: number) => Array.from({ length: count }, (_, i) => ({ name: `BIG${i}`, value: 'x'.repeat(32_000) }));
    // Four values of 32 000 characters make a secrets.json just under MAX_SECRETS_FILE_BYTES.
    const fn = await created(big(4));
    expect(Object.keys(await fileOf(fn))).toEqual(['BIG0', 'BIG1', 'BIG2', 'BIG3']);
    // The same through the PUT's UpdateItem, which DynamoDB limits alike.
    expect((await putSecrets(fn, { secrets: big(4).reverse() })).statusCode).toBe(204);
    expect(Object.keys(await fileOf(fn))).toEqual(['BIG3', 'BIG2', 'BIG1', 'BIG0']);
    const refused = await putSecrets(fn, { secrets: big(5) });
    expect(refused.statusCode).toBe(400);
    expect(refused.json.detail).toContain(`at most ${MAX_SECRETS_FILE_BYTES} bytes are allowed per function version`);
  });

  it('refuses a body that is not JSON without quoting it back', async () => {
    const fn = await created();
    const response = await call('PUT', secretsPath(fn), { body: `{"secrets":[{"name":"A","value":${CREATED_MARKER}}]}`, headers: { 'content-type': 'application/json' } });
    expect(response.statusCode).toBe(400);
    expect(response.json.detail).toBe('request body is not valid JSON: it does not parse (its text is not quoted back: it may hold secrets)');
    expect(response.body.toString()).not.toContain(CREATED_MARKER);
    const create = await call('POST', '/v2/nvcf/functions', { body: `{"name":"x","secrets":[{"name":"A","value":"${CREATED_MARKER}"}`, headers: { 'content-type': 'application/json' } });
    expect(create.statusCode).toBe(400);
    expect(create.json.detail).toMatch(/^request body is not valid JSON: it breaks at position \d+$/);
  });

  it('never shows a value: in no answer of get, list, deploy, invoke or queue routes, and in no line of this run', async () => {
    const fn = await created([{ name: 'API_TOKEN', value: CREATED_MARKER }]);
    await putSecrets(fn, { secrets: [{ name: 'API_TOKEN', value: REPLACED_MARKER }] });
    const version = `${fn.id}/versions/${fn.versionId}`;
    await call('GET', `/v2/nvcf/functions/${version}`);
    await call('GET', `/v2/nvcf/functions/${fn.id}/versions`);
    await call('GET', '/v2/nvcf/functions');
    const deployed = await call('POST', `/v2/nvcf/deployments/functions/${version}`, { body: { deploymentSpecifications: [{ gpu: 'L40S', instanceType: 'g6e.xlarge', minInstances: 1, maxInstances: 1 }] } });
    expect(deployed.statusCode).toBe(200);
    // As a worker would once its instance is ready, so that the call is queued.
    await changeStatus({ functionId: fn.id, versionId: fn.versionId, from: ['DEPLOYING'], to: 'ACTIVE' });
    await call('GET', `/v2/nvcf/deployments/functions/${version}`);
    const invoked = await call('POST', `/v2/nvcf/pexec/functions/${version}`, { body: { prompt: 'hi' }, headers: { 'nvcf-poll-seconds': '0' } });
    expect(invoked.statusCode, invoked.body.toString()).toBe(202);
    await call('GET', `/v2/nvcf/pexec/status/${invoked.headers['nvcf-reqid']}`);
    await call('GET', `/v2/nvcf/queues/functions/${version}`);
    await call('DELETE', `/v2/nvcf/deployments/functions/${version}`);
    // Another account sees nothing of it either.
    expect((await call('GET', `/v2/nvcf/functions/${version}`, { key: stranger.key })).statusCode).toBe(404);

    // The search covers what the whole file did, the refusals above included; the values were really sent.
    const everything = seen.join('\n');
    expect(everything).toContain('API_TOKEN');
    // The handlers' log lines are in the search (the refusals above are logged).
    expect(everything).toContain('"message":"request refused"');
    for (const marker of MARKERS) expect(everything).not.toContain(marker);
    // Sealed at rest: the item holds no value.
    expect(JSON.stringify(await getVersion(fn.id, fn.versionId))).not.toContain(REPLACED_MARKER);
  });
});
