import { randomUUID } from 'node:crypto';
import { PutCommand } from '@aws-sdk/lib-dynamodb';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { dynamo } from '../../core/aws';
import { tableName } from '../../core/config';
import { ONE_OF_ARTIFACTS_MESSAGE } from '../../core/function-schemas';
import { changeStatus, getVersion } from '../../core/functions';
import { openSecrets } from '../../core/secrets';
import { MAX_MANAGEMENT_BODY_BYTES } from '../../core/limits';
import { newAccount, startTestStack, type TestStack } from '../support/stack';

type Account = { accountId: string; key: string };

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;
const ISO_DATE = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/;

/** The create request of nvcf-api.md §5.1. */
const ECHO = {
  name: 'echo-fn',
  inferenceUrl: '/echo',
  inferencePort: 8000,
  containerImage: 'nvcr.io/myorg/fastapi_echo_sample:1.0',
  health: { protocol: 'HTTP', uri: '/health', port: 8000, timeout: 'PT10S', expectedStatusCode: 200 },
  apiBodyFormat: 'CUSTOM',
  functionType: 'DEFAULT',
  tags: ['demo'],
  description: 'echo',
};
const MINIMAL = { name: 'minimal', inferenceUrl: '/infer', containerImage: 'nvcr.io/org/minimal:1' };
const HELM = {
  name: 'helm-fn',
  inferenceUrl: '/v2/models/m/infer',
  inferencePort: 8001,
  helmChart: 'https://helm.ngc.nvidia.com/org/charts/inference-test-1.0.tgz',
  helmChartServiceName: 'entry',
};

const FN = '/v2/nvcf/functions';
/** zod's own fallback wording ("Invalid input: expected string, received number", "Too small: ..."), which no answer may carry. */
const ZOD_WORDING = /Invalid input|received|Too (small|big)|expected (string|number|array|object|boolean)/;
const versionPath = (functionId: string, versionId: string) => `${FN}/${functionId}/versions/${versionId}`;
const metadataPath = (functionId: string, versionId: string) => `/v2/nvcf/metadata/functions/${functionId}/versions/${versionId}`;

describe('functions', () => {
  let stack: TestStack;
  let owner: Account;
  let stranger: Account;

  beforeAll(async () => {
    stack = await startTestStack();
    owner = await newAccount();
    stranger = await newAccount();
  });
  afterAll(async () => stack.stop());

  const create = (body: unknown, key = owner.key) => stack.call('POST', FN, { key, body });
  const createVersion = (functionId: string, body: unknown, key = owner.key) => stack.call('POST', `${FN}/${functionId}/versions`, { key, body });
  const list = (key = owner.key, query?: string) => stack.call('GET', FN, { key, query });
  const listIds = (key = owner.key, query?: string) => stack.call('GET', `${FN}/ids`, { key, query });
  const listVersions = (functionId: string, key = owner.key) => stack.call('GET', `${FN}/${functionId}/versions`, { key });
  const get = (functionId: string, versionId: string, key = owner.key, query?: string) => stack.call('GET', versionPath(functionId, versionId), { key, query });
  const remove = (functionId: string, versionId: string, key = owner.key) => stack.call('DELETE', versionPath(functionId, versionId), { key });
  const updateMetadata = (functionId: string, versionId: string, body: unknown, key = owner.key) =>
    stack.call('PUT', metadataPath(functionId, versionId), { key, body });

  /** Creates a function as `account` and returns its Function object. */
  async function created(body: unknown = ECHO, account = owner): Promise<Record<string, any>> {
    const response = await create(body, account.key);
    expect(response.statusCode).toBe(200);
    return response.json.function;
  }

  describe('create function (F1)', () => {
    it('answers the Function object of nvcf-api.md §5.1 for its create request', async () => {
      const response = await create(ECHO);
      expect(response.statusCode).toBe(200);
      expect(response.headers['content-type']).toBe('application/json');
      expect(response.json).toEqual({
        function: {
          id: expect.stringMatching(UUID),
          versionId: expect.stringMatching(UUID),
          ncaId: owner.accountId,
          name: 'echo-fn',
          status: 'INACTIVE',
          functionType: 'DEFAULT',
          createdAt: expect.stringMatching(ISO_DATE),
          healthUri: '/health',
          inferenceUrl: '/echo',
          inferencePort: 8000,
          containerImage: 'nvcr.io/myorg/fastapi_echo_sample:1.0',
          apiBodyFormat: 'CUSTOM',
          description: 'echo',
          tags: ['demo'],
          health: { protocol: 'HTTP', uri: '/health', port: 8000, timeout: 'PT10S', expectedStatusCode: 200 },
        },
      });
      expect(Object.keys(response.json.function)).toEqual([
        'id', 'versionId', 'ncaId', 'name', 'status', 'functionType', 'createdAt', 'healthUri', 'inferenceUrl', 'inferencePort',
        'containerImage', 'apiBodyFormat', 'description', 'tags', 'health',
      ]);
    });

    it("fills NVCF's defaults for every optional field, the function name as description", async () => {
      const fn = await created(MINIMAL);
      expect(fn).toMatchObject({
        inferencePort: 8000,
        apiBodyFormat: 'CUSTOM',
        functionType: 'DEFAULT',
        healthUri: '/v2/health/ready',
        health: { protocol: 'HTTP', uri: '/v2/health/ready', port: 8000, timeout: 'PT10S', expectedStatusCode: 200 },
        description: 'minimal',
      });
      expect(fn).not.toHaveProperty('tags');
      expect(fn).not.toHaveProperty('secrets');
    });

    it('builds the default health check from the deprecated healthUri and the inferencePort', async () => {
      const fn = await created({ ...MINIMAL, healthUri: '/health', inferencePort: 9000 });
      expect(fn.healthUri).toBe('/health');
      expect(fn.health).toEqual({ protocol: 'HTTP', uri: '/health', port: 9000, timeout: 'PT10S', expectedStatusCode: 200 });
    });

    it.each(['/grpc', '/gRPC', 'grpc.nvcf.nvidia.com:443'])('defaults the health check to grpc.health.v1 for the gRPC inferenceUrl %s, shown without an HTTP uri or status code', async (inferenceUrl) => {
      const fn = await created({ ...MINIMAL, inferenceUrl, inferencePort: 8001 });
      expect(fn.inferenceUrl).toBe(inferenceUrl);
      expect(fn.health).toEqual({ protocol: 'gRPC', port: 8001, timeout: 'PT10S' });
      expect(fn).not.toHaveProperty('healthUri');
    });

    it('creates a model-only function and stores a relative inferenceUrl as a path', async () => {
      const models = [{ name: 'my-model', version: '1', uri: 'v2/org/cf/org/models/my-model/versions/1/zip' }];
      const resources = [{ name: 'vocab', version: '2', uri: 'v2/org/cf/org/resources/vocab/versions/2/zip' }];
      const fn = await created({ name: 'my-test-function', inferenceUrl: 'v2/models/my-model/infer', models, resources, apiBodyFormat: 'PREDICT_V2' });
      expect(fn).toMatchObject({ inferenceUrl: '/v2/models/my-model/infer', models, resources, apiBodyFormat: 'PREDICT_V2' });
      expect(fn).not.toHaveProperty('containerImage');
    });

    it('creates a Helm function', async () => {
      const fn = await created(HELM);
      expect(fn).toMatchObject({ helmChart: HELM.helmChart, helmChartServiceName: 'entry', inferencePort: 8001 });
      expect(fn).not.toHaveProperty('containerImage');
    });

    it('creates a container function with arguments, environment and STREAMING type', async () => {
      const containerEnvironment = [{ key: 'MODE', value: 'fast' }, { key: 'EMPTY', value: '' }];
      const fn = await created({ ...MINIMAL, containerArgs: '--port 8000', containerEnvironment, functionType: 'STREAMING' });
      expect(fn).toMatchObject({ containerArgs: '--port 8000', containerEnvironment, functionType: 'STREAMING' });
    });

    it('stores secret values for the worker and shows only their names', async () => {
      const secrets = [
        { name: 'API_TOKEN', value: 'tok-3f9a1c' },
        { name: 'db.config', value: { user: 'u', password: 'pw-77e2' } },
      ];
      const response = await create({ ...MINIMAL, secrets });
      expect(response.json.function.secrets).toEqual(['API_TOKEN', 'db.config']);
      expect(response.body.toString()).not.toContain('tok-3f9a1c');
      expect(response.body.toString()).not.toContain('pw-77e2');
      const stored = await getVersion(response.json.function.id, response.json.function.versionId);
      // Sealed at rest: the item holds names and ciphertext, and opens to the file for this version only.
      expect(stored?.secrets?.names).toEqual(['API_TOKEN', 'db.config']);
      expect(JSON.stringify(stored)).not.toContain('tok-3f9a1c');
      expect(JSON.stringify(stored)).not.toContain('pw-77e2');
      const owner = { accountId: stored!.accountId, functionId: stored!.functionId, versionId: stored!.versionId };
      expect(JSON.parse(await openSecrets(stored!.secrets!, owner))).toEqual({ API_TOKEN: 'tok-3f9a1c', 'db.config': { user: 'u', password: 'pw-77e2' } });
    });

    it('ignores fields it does not know, such as telemetries, and treats null fields as absent', async () => {
      const fn = await created({ ...MINIMAL, telemetries: {}, description: null, models: null, rateLimit: null });
      expect(fn).not.toHaveProperty('telemetries');
      expect(fn).not.toHaveProperty('rateLimit');
      expect(fn).not.toHaveProperty('models');
      expect(fn.description).toBe('minimal');
    });

    it('gives every created function new ids', async () => {
      const [first, second] = [await created(MINIMAL), await created(MINIMAL)];
      expect(second.id).not.toBe(first.id);
      expect(second.versionId).not.toBe(first.versionId);
    });
  });

  describe('create request validation', () => {
    const long = (n: number) => 'a'.repeat(n);
    it.each<[string, Record<string, unknown>, string]>([
      ['a missing name', { name: undefined }, 'name: is required'],
      ['an empty name', { name: '' }, 'name: must not be empty'],
      ['a name starting with -', { name: '-echo' }, 'name: must start with a letter or digit'],
      ['a name with a space', { name: 'echo fn' }, 'name: must start with a letter or digit and contain only letters, digits, - and _'],
      ['a name of 129 characters', { name: long(129) }, 'name: must be at most 128 characters'],
      ['a name that is a number', { name: 42 }, 'name: must be a string, got the number 42'],
      ['a missing inferenceUrl', { inferenceUrl: undefined }, 'inferenceUrl: is required'],
      ['an inferenceUrl with a scheme', { inferenceUrl: 'http://host/echo' }, 'inferenceUrl: must be the URL path'],
      ['an inferenceUrl with a space', { inferenceUrl: '/ec ho' }, 'inferenceUrl: must be the URL path'],
      ['inferencePort 0', { inferencePort: 0 }, 'inferencePort: must be from 1 to 65535'],
      ['inferencePort 65536', { inferencePort: 65536 }, 'inferencePort: must be from 1 to 65535'],
      ['inferencePort 1.5', { inferencePort: 1.5 }, 'inferencePort: must be an integer'],
      ['inferencePort as a string', { inferencePort: '8000' }, 'inferencePort: must be a number, got the string "8000"'],
      ['the reserved inferencePort 8080', { inferencePort: 8080 }, 'inferencePort: ports 8080 and 8010 are reserved for the platform'],
      ['the reserved inferencePort 8010', { inferencePort: 8010 }, 'inferencePort: ports 8080 and 8010 are reserved for the platform'],
      ['no containerImage, models or helmChart', { containerImage: undefined }, ONE_OF_ARTIFACTS_MESSAGE],
      ['an empty models list as the only artifact', { containerImage: undefined, models: [] }, ONE_OF_ARTIFACTS_MESSAGE],
      ['a containerImage that is not an image reference', { containerImage: 'Not An Image' }, 'containerImage: must be a container image reference'],
      ['a containerImage that is a number', { containerImage: 7 }, 'containerImage: must be a string, got the number 7'],
      ['containerArgs that are a list', { containerArgs: ['--port', '8000'] }, 'containerArgs: must be a string, got a list'],
      ['helmChart with containerImage', { ...HELM, containerImage: 'nvcr.io/org/x:1' }, 'containerImage: must not be given together with helmChart'],
      ['helmChart with containerArgs', { ...HELM, containerImage: undefined, containerArgs: '-v' }, 'containerArgs: must not be given together with helmChart'],
      [
        'helmChart with containerEnvironment',
        { ...HELM, containerImage: undefined, containerEnvironment: [{ key: 'A', value: 'b' }] },
        'containerEnvironment: must not be given together with helmChart',
      ],
      ['helmChart without helmChartServiceName', { ...HELM, containerImage: undefined, helmChartServiceName: undefined }, 'helmChartServiceName: is required together with helmChart'],
      ['helmChartServiceName without helmChart', { helmChartServiceName: 'entry' }, 'helmChartServiceName: is only allowed together with helmChart'],
      ['a helmChart that is not a URL', { ...HELM, containerImage: undefined, helmChart: 'ftp://charts/x.tgz' }, 'helmChart: must be an http(s):// or oci:// URL'],
      ['a model without uri', { models: [{ name: 'm', version: '1' }] }, 'models[0].uri: is required'],
      ['a model without name', { models: [{ version: '1', uri: 'v2/m' }] }, 'models[0].name: is required'],
      [
        'two models of the same name',
        { models: [{ name: 'm', version: '1', uri: 'v2/m1' }, { name: 'm', version: '2', uri: 'v2/m2' }] },
        'models[1].name: duplicate name "m"',
      ],
      ['a resource without version', { resources: [{ name: 'r', uri: 'v2/r' }] }, 'resources[0].version: is required'],
      ['an environment value that is a number', { containerEnvironment: [{ key: 'A', value: 1 }] }, 'containerEnvironment[0].value: must be a string, got the number 1'],
      ['an environment entry without key', { containerEnvironment: [{ value: 'v' }] }, 'containerEnvironment[0].key: is required'],
      ['an environment key with =', { containerEnvironment: [{ key: 'A=B', value: 'v' }] }, 'containerEnvironment[0].key: must be an environment variable name'],
      ['an environment key starting with a digit', { containerEnvironment: [{ key: '1A', value: 'v' }] }, 'containerEnvironment[0].key: must be an environment variable name'],
      ['an environment key the platform sets', { containerEnvironment: [{ key: 'NVCF_FUNCTION_ID', value: 'v' }] }, 'containerEnvironment[0].key: names starting with NVCF_ are set by the platform'],
      ['an environment value with a NUL', { containerEnvironment: [{ key: 'A', value: 'x\u0000y' }] }, 'containerEnvironment[0].value: must not contain NUL characters'],
      [
        'two environment variables of the same key',
        { containerEnvironment: [{ key: 'A', value: '1' }, { key: 'A', value: '2' }] },
        'containerEnvironment[1].key: duplicate key "A"',
      ],
      ['a model name with a /', { models: [{ name: '../m', version: '1', uri: 'v2/m' }] }, 'models[0].name: must be 1 to 128 letters, digits'],
      ['a helmChartServiceName that is not a Service name', { ...HELM, containerImage: undefined, helmChartServiceName: 'My_Service' }, "helmChartServiceName: must be the name of the chart's Kubernetes Service"],
      ['an unknown apiBodyFormat', { apiBodyFormat: 'JSON' }, 'apiBodyFormat: must be PREDICT_V2 or CUSTOM'],
      ['an unknown functionType', { functionType: 'LLM' }, 'functionType: must be DEFAULT or STREAMING'],
      ['a health object without timeout', { health: { ...ECHO.health, timeout: undefined } }, 'health.timeout: is required'],
      ['a health object without protocol', { health: { ...ECHO.health, protocol: undefined } }, 'health.protocol: must be HTTP or gRPC'],
      ['a health protocol TCP', { health: { ...ECHO.health, protocol: 'TCP' } }, 'health.protocol: must be HTTP or gRPC'],
      ['a health port 0', { health: { ...ECHO.health, port: 0 } }, 'health.port: must be from 1 to 65535'],
      ['a health timeout that is not ISO-8601', { health: { ...ECHO.health, timeout: '10s' } }, 'health.timeout: must be a positive ISO-8601 duration'],
      ['a health timeout of zero', { health: { ...ECHO.health, timeout: 'PT0S' } }, 'health.timeout: must be a positive ISO-8601 duration'],
      ['a health timeout of 50 days', { health: { ...ECHO.health, timeout: 'P50D' } }, 'health.timeout: must be a positive ISO-8601 duration of at most 3600 seconds'],
      ['a health uri that is a URL of another host', { health: { ...ECHO.health, uri: 'http://169.254.169.254/latest' } }, 'health.uri: must be the URL path the container answers health checks on'],
      ['the reserved health port 8080', { health: { ...ECHO.health, port: 8080 } }, 'health.port: ports 8080 and 8010 are reserved for the platform'],
      ['a health expectedStatusCode as a string', { health: { ...ECHO.health, expectedStatusCode: '200' } }, 'health.expectedStatusCode: must be a number, got the string "200"'],
      ['a health that is a string', { health: '/health' }, 'health: must be an object {protocol, uri, port, timeout, expectedStatusCode}'],
      ['a healthUri without leading /', { healthUri: 'health' }, 'healthUri: must be a URL path starting with /'],
      ['a description of 257 characters', { description: long(257) }, 'description: must be at most 256 characters'],
      ['65 tags', { tags: Array.from({ length: 65 }, (_, i) => `t${i}`) }, 'tags: at most 64 tags are allowed'],
      ['a tag of 129 characters', { tags: [long(129)] }, 'tags[0]: must be at most 128 characters'],
      ['a tag with a space', { tags: ['ok', 'not ok'] }, 'tags[1]: must be 1 or more of the characters a-z A-Z 0-9 - _ : ='],
      ['an empty tag', { tags: [''] }, 'tags[0]: must be 1 or more of the characters'],
      ['tags that are a string', { tags: 'demo' }, 'tags: must be a list, got the string "demo"'],
      ['a secret name starting with _', { secrets: [{ name: '_token', value: 'v' }] }, 'secrets[0].name: must start with a letter or digit'],
      ['a secret name of 49 characters', { secrets: [{ name: long(49), value: 'v' }] }, 'secrets[0].name: must be at most 48 characters'],
      ['an empty secret value', { secrets: [{ name: 's', value: '' }] }, 'secrets[0].value: must not be empty'],
      ['a secret value of 32769 characters', { secrets: [{ name: 's', value: long(32769) }] }, 'secrets[0].value: must be at most 32768 characters'],
      ['a secret value that is a list', { secrets: [{ name: 's', value: ['v'] }] }, 'secrets[0].value: must be a string or a JSON object'],
      ['a secret without value', { secrets: [{ name: 's' }] }, 'secrets[0].value: must be a string or a JSON object'],
      ['two secrets of the same name', { secrets: [{ name: 's', value: 'a' }, { name: 's', value: 'b' }] }, 'secrets[1].name: duplicate secret name "s"'],
    ])('refuses %s with 400 naming the rule and writes nothing', async (_label, change, detail) => {
      const account = await newAccount();
      const response = await create({ ...MINIMAL, ...change }, account.key);
      expect(response.statusCode).toBe(400);
      expect(response.headers['content-type']).toBe('application/problem+json');
      expect(response.json).toMatchObject({ status: 400, title: 'Bad Request', instance: FN });
      expect(response.json.detail).toContain(detail);
      expect(response.json.detail).not.toMatch(ZOD_WORDING);
      expect((await list(account.key)).json).toEqual({ functions: [] });
    });

    it('refuses a body that is not a JSON object', async () => {
      const response = await create([MINIMAL]);
      expect(response.statusCode).toBe(400);
      expect(response.json.detail).toContain('must be a JSON object');
    });

    it('refuses malformed JSON with 400 and writes nothing', async () => {
      const account = await newAccount();
      const response = await stack.call('POST', FN, { key: account.key, body: '{"name": "echo",', headers: { 'content-type': 'application/json' } });
      expect(response.statusCode).toBe(400);
      expect(response.json.detail).toContain('not valid JSON');
      expect((await list(account.key)).json).toEqual({ functions: [] });
    });

    it('refuses an empty body with 400', async () => {
      const response = await stack.call('POST', FN, { key: owner.key, headers: { 'content-type': 'application/json' } });
      expect(response.statusCode).toBe(400);
      expect(response.json.detail).toContain('request body is required');
    });

    it('refuses a body over the management limit with 413 and writes nothing', async () => {
      const account = await newAccount();
      const body = JSON.stringify({ ...MINIMAL, containerArgs: 'x'.repeat(MAX_MANAGEMENT_BODY_BYTES) });
      const response = await stack.call('POST', FN, { key: account.key, body, headers: { 'content-type': 'application/json' } });
      expect(response.statusCode).toBe(413);
      expect(response.json).toMatchObject({ status: 413, title: 'Payload Too Large' });
      expect((await list(account.key)).json).toEqual({ functions: [] });
    });
  });

  describe('create version (F2)', () => {
    it('adds a version to the function and answers its Function object', async () => {
      const first = await created(ECHO);
      const response = await createVersion(first.id, { ...ECHO, containerImage: 'nvcr.io/myorg/fastapi_echo_sample:2.0', tags: ['v2'] });
      expect(response.statusCode).toBe(200);
      expect(response.json.function).toMatchObject({
        id: first.id,
        versionId: expect.stringMatching(UUID),
        ncaId: owner.accountId,
        status: 'INACTIVE',
        containerImage: 'nvcr.io/myorg/fastapi_echo_sample:2.0',
        tags: ['v2'],
      });
      expect(response.json.function.versionId).not.toBe(first.versionId);
      const versions = await listVersions(first.id);
      expect(versions.json.functions.map((fn: any) => fn.versionId)).toEqual([first.versionId, response.json.function.versionId]);
    });

    it('answers 404 for a function the caller has no version of, and writes nothing', async () => {
      const functionId = randomUUID();
      const response = await createVersion(functionId, ECHO);
      expect(response.statusCode).toBe(404);
      expect(response.json.detail).toContain(functionId);
      expect((await listVersions(functionId)).statusCode).toBe(404);
    });

    it("answers 404 to another account adding a version to a function, and writes nothing", async () => {
      const fn = await created(ECHO);
      const before = (await list(stranger.key)).json;
      const response = await createVersion(fn.id, ECHO, stranger.key);
      expect(response.statusCode).toBe(404);
      expect((await listVersions(fn.id)).json.functions).toHaveLength(1);
      expect((await list(stranger.key)).json).toEqual(before);
    });

    it('validates the body as create does', async () => {
      const fn = await created(ECHO);
      const response = await createVersion(fn.id, { name: 'echo-fn', inferenceUrl: '/echo' });
      expect(response.statusCode).toBe(400);
      expect(response.json.detail).toContain(ONE_OF_ARTIFACTS_MESSAGE);
      expect((await listVersions(fn.id)).json.functions).toHaveLength(1);
    });

    it('answers 400 for a function id that is not a UUID', async () => {
      const response = await createVersion('not-a-uuid', ECHO);
      expect(response.statusCode).toBe(400);
      expect(response.json.detail).toContain('functionId must be a UUID');
    });
  });

  describe('list functions (F3) and function ids (F6)', () => {
    let account: Account;
    let alpha: Record<string, any>;
    let alpha2: Record<string, any>;
    let beta: Record<string, any>;

    beforeAll(async () => {
      account = await newAccount();
      alpha = await created({ ...MINIMAL, name: 'alpha' }, account);
      alpha2 = (await createVersion(alpha.id, { ...MINIMAL, name: 'alpha' }, account.key)).json.function;
      beta = await created({ ...HELM, name: 'beta' }, account);
      await created(ECHO, stranger);
    });

    it("lists every version of the caller's functions flat, oldest first, and no one else's", async () => {
      const response = await list(account.key);
      expect(response.statusCode).toBe(200);
      expect(response.json).toEqual({ functions: [alpha, alpha2, beta] });
    });

    it('lists each function id once', async () => {
      const response = await listIds(account.key);
      expect(response.statusCode).toBe(200);
      expect(response.json).toEqual({ functionIds: [alpha.id, beta.id] });
    });

    it.each(['private', 'authorized,private,public', 'visibility=public&visibility=private', 'public, private'])(
      'lists the private functions for visibility %s',
      async (visibility) => {
        const query = visibility.startsWith('visibility=') ? visibility : `visibility=${encodeURIComponent(visibility)}`;
        expect((await list(account.key, query)).json.functions).toHaveLength(3);
        expect((await listIds(account.key, query)).json.functionIds).toHaveLength(2);
      },
    );

    it.each(['public', 'authorized', 'authorized,public'])('lists nothing for visibility=%s: no function here is public or shared', async (visibility) => {
      expect((await list(account.key, `visibility=${visibility}`)).json).toEqual({ functions: [] });
      expect((await listIds(account.key, `visibility=${visibility}`)).json).toEqual({ functionIds: [] });
    });

    it('refuses an unknown visibility with 400 naming the allowed values', async () => {
      for (const response of [await list(account.key, 'visibility=private,secret'), await listIds(account.key, 'visibility=secret')]) {
        expect(response.statusCode).toBe(400);
        expect(response.json.detail).toContain('visibility');
        expect(response.json.detail).toContain('must be one of authorized, private, public');
      }
    });

    it('answers empty lists to an account without functions', async () => {
      const { key } = await newAccount();
      expect((await list(key)).json).toEqual({ functions: [] });
      expect((await listIds(key)).json).toEqual({ functionIds: [] });
    });
  });

  describe('list versions (F4)', () => {
    it('answers 404 for an unknown function and for another account’s function', async () => {
      const fn = await created(ECHO);
      expect((await listVersions(randomUUID())).statusCode).toBe(404);
      const response = await listVersions(fn.id, stranger.key);
      expect(response.statusCode).toBe(404);
      expect(response.json.detail).toBe(`Function '${fn.id}' not found`);
    });

    it('answers 400 for a function id that is not a UUID', async () => {
      const response = await listVersions('123');
      expect(response.statusCode).toBe(400);
    });
  });

  describe('get version (F5)', () => {
    it('answers the same Function object create answered', async () => {
      const fn = await created(ECHO);
      const response = await get(fn.id, fn.versionId);
      expect(response.statusCode).toBe(200);
      expect(response.json).toEqual({ function: fn });
    });

    it('shows secret names unless includeSecrets=false', async () => {
      const fn = await created({ ...MINIMAL, secrets: [{ name: 'TOKEN', value: 'hidden-value' }] });
      expect((await get(fn.id, fn.versionId)).json.function.secrets).toEqual(['TOKEN']);
      expect((await get(fn.id, fn.versionId, owner.key, 'includeSecrets=TRUE')).json.function.secrets).toEqual(['TOKEN']);
      const without = await get(fn.id, fn.versionId, owner.key, 'includeSecrets=false');
      expect(without.json.function).not.toHaveProperty('secrets');
      expect(without.body.toString()).not.toContain('hidden-value');
    });

    it('refuses an includeSecrets that is not a boolean', async () => {
      const fn = await created(ECHO);
      const response = await get(fn.id, fn.versionId, owner.key, 'includeSecrets=maybe');
      expect(response.statusCode).toBe(400);
      expect(response.json.detail).toContain('includeSecrets: must be true or false');
    });

    it('answers 404 for an unknown version and for another account’s version', async () => {
      const fn = await created(ECHO);
      expect((await get(fn.id, randomUUID())).statusCode).toBe(404);
      const response = await get(fn.id, fn.versionId, stranger.key);
      expect(response.statusCode).toBe(404);
      expect(response.json.detail).toBe(`Function '${fn.id}' version '${fn.versionId}' not found`);
    });

    it.each([
      ['functionId', (id: string) => versionPath('nope', id)],
      ['functionVersionId', (id: string) => versionPath(id, 'nope')],
    ])('answers 400 when %s is not a UUID', async (name, path) => {
      const response = await stack.call('GET', path(randomUUID()), { key: owner.key });
      expect(response.statusCode).toBe(400);
      expect(response.json.detail).toContain(`${name} must be a UUID`);
    });

    it('shows the live instances of a deployed version as activeInstances', async () => {
      const fn = await created(ECHO);
      await changeStatus({ functionId: fn.id, versionId: fn.versionId, from: ['INACTIVE'], to: 'DEPLOYING' });
      const now = Math.floor(Date.now() / 1000);
      const instance = (instanceId: string, state: string, expiresAt: number) => ({
        versionId: fn.versionId,
        instanceId,
        state,
        lastSeen: '2026-01-02T03:04:05.000Z',
        createdAt: '2026-01-02T03:00:00.000Z',
        gpu: 'L40S',
        instanceType: 'g6e.xlarge',
        backend: 'AWS',
        inFlight: 0,
        expiresAt,
      });
      for (const item of [instance('i-ready', 'READY', now + 120), instance('i-starting', 'STARTING', now + 120), instance('i-gone', 'READY', now - 1)]) {
        await dynamo().send(new PutCommand({ TableName: tableName('instances'), Item: item }));
      }
      const response = await get(fn.id, fn.versionId);
      expect(response.json.function.status).toBe('DEPLOYING');
      const common = {
        functionId: fn.id,
        functionVersionId: fn.versionId,
        instanceType: 'g6e.xlarge',
        gpu: 'L40S',
        backend: 'AWS',
        ncaId: owner.accountId,
        instanceCreatedAt: '2026-01-02T03:00:00.000Z',
        instanceUpdatedAt: '2026-01-02T03:04:05.000Z',
      };
      expect(response.json.function.activeInstances).toEqual([
        { instanceId: 'i-ready', instanceStatus: 'ACTIVE', ...common },
        { instanceId: 'i-starting', instanceStatus: 'STARTING', ...common },
      ]);
      const listed = (await listVersions(fn.id)).json.functions[0];
      expect(listed.activeInstances).toHaveLength(2);
    });
  });

  describe('delete version (F7)', () => {
    it('deletes an INACTIVE version with 204 and an empty body', async () => {
      const fn = await created(ECHO);
      const response = await remove(fn.id, fn.versionId);
      expect(response.statusCode).toBe(204);
      expect(response.body.length).toBe(0);
      expect((await get(fn.id, fn.versionId)).statusCode).toBe(404);
      expect((await list()).json.functions.map((f: any) => f.versionId)).not.toContain(fn.versionId);
    });

    it('answers 404 to a repeated delete', async () => {
      const fn = await created(ECHO);
      expect((await remove(fn.id, fn.versionId)).statusCode).toBe(204);
      expect((await remove(fn.id, fn.versionId)).statusCode).toBe(404);
    });

    it('keeps the other versions of the function', async () => {
      const fn = await created(ECHO);
      const second = (await createVersion(fn.id, ECHO)).json.function;
      await remove(fn.id, fn.versionId);
      expect((await listVersions(fn.id)).json.functions.map((f: any) => f.versionId)).toEqual([second.versionId]);
    });

    it('refuses with 409 to delete a version that is not INACTIVE, and deletes it once undeployed', async () => {
      const fn = await created(ECHO);
      await changeStatus({ functionId: fn.id, versionId: fn.versionId, from: ['INACTIVE'], to: 'DEPLOYING' });
      const response = await remove(fn.id, fn.versionId);
      expect(response.statusCode).toBe(409);
      expect(response.headers['content-type']).toBe('application/problem+json');
      expect(response.json.detail).toContain('is DEPLOYING');
      expect(response.json.detail).toContain('undeploy it first');
      expect((await get(fn.id, fn.versionId)).json.function.status).toBe('DEPLOYING');

      await changeStatus({ functionId: fn.id, versionId: fn.versionId, from: ['DEPLOYING'], to: 'INACTIVE' });
      expect((await remove(fn.id, fn.versionId)).statusCode).toBe(204);
    });

    it('answers 404 to another account and keeps the version', async () => {
      const fn = await created(ECHO);
      expect((await remove(fn.id, fn.versionId, stranger.key)).statusCode).toBe(404);
      expect((await get(fn.id, fn.versionId)).statusCode).toBe(200);
    });

    it('answers 404 to another account even while the version is deployed', async () => {
      const fn = await created(ECHO);
      await changeStatus({ functionId: fn.id, versionId: fn.versionId, from: ['INACTIVE'], to: 'ACTIVE' });
      expect((await remove(fn.id, fn.versionId, stranger.key)).statusCode).toBe(404);
    });

    it('answers 400 for ids that are not UUIDs', async () => {
      const response = await stack.call('DELETE', versionPath(randomUUID(), 'x'), { key: owner.key });
      expect(response.statusCode).toBe(400);
      expect(response.json.detail).toContain('functionVersionId must be a UUID');
    });
  });

  describe('update metadata (F8)', () => {
    it('replaces the tags and answers the Function object', async () => {
      const fn = await created({ ...ECHO, tags: ['old', 'keep'] });
      const response = await updateMetadata(fn.id, fn.versionId, { tags: ['keep', 'team:ml', 'env=prod'] });
      expect(response.statusCode).toBe(200);
      expect(response.json).toEqual({ function: { ...fn, tags: ['keep', 'team:ml', 'env=prod'] } });
      expect((await get(fn.id, fn.versionId)).json.function.tags).toEqual(['keep', 'team:ml', 'env=prod']);
    });

    it('clears the tags with an empty list', async () => {
      const fn = await created(ECHO);
      const response = await updateMetadata(fn.id, fn.versionId, { tags: [] });
      expect(response.statusCode).toBe(200);
      expect(response.json.function).not.toHaveProperty('tags');
    });

    it.each<[string, unknown, string]>([
      ['a missing tags field', {}, 'tags: is required'],
      ['a tag with a space', { tags: ['a b'] }, 'tags[0]: must be 1 or more of the characters'],
      ['65 tags', { tags: Array.from({ length: 65 }, (_, i) => `t${i}`) }, 'tags: at most 64 tags are allowed'],
    ])('refuses %s with 400 and keeps the tags', async (_label, body, detail) => {
      const fn = await created(ECHO);
      const response = await updateMetadata(fn.id, fn.versionId, body);
      expect(response.statusCode).toBe(400);
      expect(response.json.detail).toContain(detail);
      expect((await get(fn.id, fn.versionId)).json.function.tags).toEqual(['demo']);
    });

    it('answers 404 to another account and keeps the tags', async () => {
      const fn = await created(ECHO);
      expect((await updateMetadata(fn.id, fn.versionId, { tags: ['mine'] }, stranger.key)).statusCode).toBe(404);
      expect((await get(fn.id, fn.versionId)).json.function.tags).toEqual(['demo']);
    });

    it('answers 404 for an unknown version without creating it', async () => {
      const fn = await created(ECHO);
      const versionId = randomUUID();
      expect((await updateMetadata(fn.id, versionId, { tags: ['x'] })).statusCode).toBe(404);
      expect(await getVersion(fn.id, versionId)).toBeUndefined();
    });
  });

  describe('authentication and scopes', () => {
    const id = randomUUID();
    const routes: [string, string, string, unknown?][] = [
      ['POST', FN, 'register_function', MINIMAL],
      ['POST', `${FN}/${id}/versions`, 'register_function', MINIMAL],
      ['GET', FN, 'list_functions'],
      ['GET', `${FN}/${id}/versions`, 'list_functions'],
      ['GET', versionPath(id, id), 'list_functions'],
      ['GET', `${FN}/ids`, 'list_functions'],
      ['DELETE', versionPath(id, id), 'delete_function'],
      ['PUT', metadataPath(id, id), 'update_function', { tags: [] }],
    ];

    it.each(routes)('%s %s answers 401 without a key', async (method, path, _scope, body) => {
      expect((await stack.call(method, path, { body })).statusCode).toBe(401);
    });

    it.each(routes)('%s %s answers 401 problem+json for an unknown key', async (method, path, _scope, body) => {
      const response = await stack.call(method, path, { key: 'nvapi-unknown-key-0000000000000000000000000000', body });
      expect(response.statusCode).toBe(401);
      expect(response.headers['content-type']).toBe('application/problem+json');
    });

    it.each(routes)('%s %s answers 403 naming the %s scope to a key without it', async (method, path, scope, body) => {
      const { key } = await newAccount(['invoke_function', 'deploy_function']);
      const response = await stack.call(method, path, { key, body });
      expect(response.statusCode).toBe(403);
      expect(response.json.detail).toContain(scope);
    });
  });
});
