/**
 * The nvcf CLI's parts without a stack: argument forms (NGC CLI spellings),
 * the requests they build (checked against the API's own schemas), output
 * formatting, settings and local-stack discovery, and how the typed client
 * reads answers (problem+json, API Gateway's own errors, 202, 302, SSE).
 */
import { createServer, type Server } from 'node:http';
import { createReadStream } from 'node:fs';
import { mkdtemp, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomUUID } from 'node:crypto';
import type { Command } from 'commander';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  artifact,
  assetDescriptionOf,
  contentTypeOf,
  createFunctionRequest,
  deploymentRequest,
  keyValue,
  parseBackendSpecification,
  parseTarget,
  parseTargetedSpecification,
  UsageError,
} from '../../cli/args';
import { readConfig, resolveConnection, writeConfig } from '../../cli/config';
import { buildProgram } from '../../cli/main';
import { chooseFormat, formatDetails, formatTable } from '../../cli/output';
import { NvcfClient, NvcfError, readServerSentEvents } from '../../client';
import { deploymentRequestSchema } from '../../core/deployment-schemas';
import { createFunctionRequestSchema } from '../../core/function-schemas';
import { publishLocalStack } from '../../local/discovery';

describe('nvcf arguments', () => {
  it('reads targets as <function-id>[:<version-id>] and says which form a command needs', () => {
    expect(parseTarget('f', false)).toEqual({ functionId: 'f' });
    expect(parseTarget('f:v', true)).toEqual({ functionId: 'f', versionId: 'v' });
    expect(() => parseTarget('f', true)).toThrow(new UsageError('"f" names no version: give <function-id>:<version-id> (nvcf function list shows both)'));
    expect(() => parseTarget('f:v:w', false)).toThrow(/give <function-id>\[:<version-id>\]/);
    expect(() => parseTarget('f:', false)).toThrow(UsageError);
  });

  it('reads --targeted-dep-spec in every NGC CLI form, wrappers and skipped fields included', () => {
    expect(parseTargetedSpecification('L40S:g6e.xlarge:1:3')).toEqual({ gpu: 'L40S', instanceType: 'g6e.xlarge', minInstances: 1, maxInstances: 3 });
    expect(parseTargetedSpecification('A100:p4d:0:2:8:clusters(c1,c2):regions(us-east-1):attributes(a):2')).toEqual({
      gpu: 'A100',
      instanceType: 'p4d',
      minInstances: 0,
      maxInstances: 2,
      maxRequestConcurrency: 8,
      clusters: ['c1', 'c2'],
      regions: ['us-east-1'],
      attributes: ['a'],
      preferredOrder: 2,
    });
    expect(parseTargetedSpecification('H100:p5:1:2:5::us-east-1')).toEqual({ gpu: 'H100', instanceType: 'p5', minInstances: 1, maxInstances: 2, maxRequestConcurrency: 5, regions: ['us-east-1'] });
    expect(parseBackendSpecification('AWS:L4:g6.xlarge:1:1:4')).toEqual({ backend: 'AWS', gpu: 'L4', instanceType: 'g6.xlarge', minInstances: 1, maxInstances: 1, maxRequestConcurrency: 4 });
  });

  it('refuses a malformed deployment specification naming the flag, the field and the form', () => {
    expect(() => parseTargetedSpecification('L4:g6:one:2')).toThrow('--targeted-dep-spec: minInstances must be a whole number, got "one"');
    expect(() => parseTargetedSpecification('L4:g6:1')).toThrow(/--targeted-dep-spec "L4:g6:1": give gpu:instanceType:minInstances:maxInstances/);
    expect(() => parseBackendSpecification('L4:g6:1:1')).toThrow(/--dep-spec "L4:g6:1:1": give backend:gpu:instanceType/);
    expect(() => deploymentRequest({})).toThrow(/give at least one --targeted-dep-spec/);
    expect(() => deploymentRequest({ targetedDepSpec: ['L4:g6:1:1'], configuration: '[1]' })).toThrow('--configuration must be a JSON object of Helm values');
  });

  it('builds a deployment request the API schema accepts, with --configuration on every specification', () => {
    const request = deploymentRequest({ targetedDepSpec: ['L4:g6.xlarge:1:2'], depSpec: ['AWS:L4:g6.2xlarge:0:1'], configuration: '{"replicas": 2}' });
    expect(request.deploymentSpecifications.map((spec) => spec.configuration)).toEqual([{ replicas: 2 }, { replicas: 2 }]);
    expect(deploymentRequestSchema.safeParse(request).success).toBe(true);
  });

  it('builds a create request from the NGC CLI flags that the API schema accepts, a partial health check completed with the defaults', () => {
    const request = createFunctionRequest({
      name: 'echo',
      inferenceUrl: '/echo',
      inferencePort: 9000,
      containerImage: 'nvcr.io/org/echo:1.0',
      containerEnvironmentVariable: ['MODE:fast', 'URL:http://x:1'],
      model: ['weights:1:s3://bucket/models/weights.zip'],
      healthUri: '/health',
      healthTimeout: 'PT30S',
      tag: ['a', 'b'],
      secret: ['TOKEN:abc:def'],
    });
    expect(request.containerEnvironment).toEqual([{ key: 'MODE', value: 'fast' }, { key: 'URL', value: 'http://x:1' }]);
    expect(request.models).toEqual([{ name: 'weights', version: '1', uri: 's3://bucket/models/weights.zip' }]);
    expect(request.health).toEqual({ protocol: 'HTTP', uri: '/health', port: 9000, timeout: 'PT30S', expectedStatusCode: 200 });
    expect(request.secrets).toEqual([{ name: 'TOKEN', value: 'abc:def' }]);
    const parsed = createFunctionRequestSchema.safeParse(request);
    expect(parsed.success).toBe(true);
    // Without health flags the API fills the check in itself.
    expect(createFunctionRequest({ name: 'echo', inferenceUrl: '/echo', containerImage: 'nvcr.io/org/echo:1.0' }).health).toBeUndefined();
  });

  it('refuses KEY:VALUE and NAME:VERSION:URI values without their parts', () => {
    expect(keyValue('--secret', 'A:b')).toEqual({ key: 'A', value: 'b' });
    expect(() => keyValue('--container-environment-variable', 'novalue')).toThrow('--container-environment-variable "novalue": give KEY:VALUE');
    expect(() => artifact('--model', 'weights:1')).toThrow(/--model "weights:1": give NAME:VERSION:URI/);
  });

  it('names an asset by its file: media type by extension, a printable ASCII description', () => {
    expect(contentTypeOf('photo.JPG')).toBe('image/jpeg');
    expect(contentTypeOf('blob')).toBe('application/octet-stream');
    expect(assetDescriptionOf('résumé.txt')).toBe('r_sum_.txt');
  });
});

describe('nvcf help', () => {
  it('shows an example on every command', () => {
    const leaves = (command: Command): Command[] => (command.commands.length === 0 ? [command] : command.commands.flatMap(leaves));
    const commands = leaves(buildProgram()).filter((command) => command.name() !== 'help');
    expect(commands.map((command) => command.name())).toEqual(expect.arrayContaining(['set', 'create', 'update-metadata', 'update-secret', 'log', 'remove', 'invoke', 'status', 'cancel', 'upload', 'queue', 'gpus']));
    for (const command of commands) {
      let help = '';
      command.configureOutput({ writeOut: (text) => (help += text) }).outputHelp();
      expect(help, `nvcf ... ${command.name()} --help`).toMatch(/\nExamples?:\n  \$ nvcf /);
    }
  });
});

describe('nvcf output', () => {
  it('aligns a table under upper-case column names; lists joined, absent fields blank', () => {
    const table = formatTable(
      [
        { name: 'echo', status: 'ACTIVE', tags: ['a', 'b'] },
        { name: 'a-longer-name', status: undefined, tags: [] },
      ],
      ['name', 'status', 'tags'],
    );
    expect(table).toBe(['NAME           STATUS  TAGS', 'echo           ACTIVE  a,b', 'a-longer-name'].join('\n'));
  });

  it('shows one object as key/value lines without its absent fields', () => {
    expect(formatDetails({ id: 'f', description: undefined, health: { port: 8000 } })).toBe('id      f\nhealth  {"port":8000}');
  });

  it('answers JSON through a pipe and tables on a terminal, unless asked or configured otherwise', () => {
    expect(chooseFormat(undefined, undefined, false)).toBe('json');
    expect(chooseFormat(undefined, undefined, true)).toBe('table');
    expect(chooseFormat(undefined, 'json', true)).toBe('json');
    expect(chooseFormat('table', 'json', false)).toBe('table');
  });
});

describe('nvcf settings', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'nvcf-cli-config-'));
  });
  afterAll(async () => rm(dir, { recursive: true, force: true }));

  it('keeps settings in config.json under NVCF_CONFIG_DIR, readable by its user only, merging each set', async () => {
    const env = { NVCF_CONFIG_DIR: join(dir, 'merge') };
    await writeConfig({ baseUrl: 'https://api.example.com', apiKey: 'nvapi-one' }, env);
    await writeConfig({ format: 'json' }, env);
    expect(await readConfig(env)).toEqual({ baseUrl: 'https://api.example.com', apiKey: 'nvapi-one', format: 'json' });
    expect((await stat(join(dir, 'merge', 'config.json'))).mode & 0o777).toBe(0o600);
  });

  it('refuses a base URL that is not http(s), naming the flag, and a broken config file naming the file', async () => {
    const env = { NVCF_CONFIG_DIR: join(dir, 'bad') };
    await expect(writeConfig({ baseUrl: 'ftp://x' }, env)).rejects.toThrow('--base-url: must be an http:// or https:// URL');
    await writeConfig({ apiKey: 'k' }, env);
    await writeFile(join(dir, 'bad', 'config.json'), '{nope');
    await expect(readConfig(env)).rejects.toThrow(/config\.json is not JSON/);
    await writeFile(join(dir, 'bad', 'config.json'), '{"format": "xml"}');
    await expect(readConfig(env)).rejects.toThrow(/config\.json: format: must be table or json$/);
  });

  it('takes the environment over the config file', async () => {
    const env = { NVCF_CONFIG_DIR: join(dir, 'env'), NVCF_BASE_URL: 'https://env.example.com', NVCF_API_KEY: 'nvapi-env' };
    await writeConfig({ baseUrl: 'https://file.example.com', apiKey: 'nvapi-file', invocationUrl: 'https://inv.example.com' }, env);
    expect(await resolveConnection(env)).toEqual({ baseUrl: 'https://env.example.com', apiKey: 'nvapi-env', invocationUrl: 'https://inv.example.com', format: undefined });
    await expect(resolveConnection({ ...env, NVCF_BASE_URL: 'nope' })).rejects.toThrow('NVCF_BASE_URL: must be an http:// or https:// URL');
  });

  it('finds the local stack of this PORT with no settings, and never sends its key to another base URL', async () => {
    const port = `unit-${randomUUID()}`;
    const env = { NVCF_CONFIG_DIR: join(dir, 'none'), PORT: port };
    await expect(resolveConnection(env)).rejects.toThrow(`no API to talk to: set NVCF_BASE_URL or run nvcf config set --base-url <url> (the stack output ApiUrl); no local stack (npm start) runs with PORT=${port}`);
    const unpublish = await publishLocalStack({}, { url: 'http://127.0.0.1:9999', apiKey: 'nvapi-local' }, env);
    try {
      expect(await resolveConnection(env)).toMatchObject({ baseUrl: 'http://127.0.0.1:9999', apiKey: 'nvapi-local' });
      await expect(resolveConnection({ ...env, NVCF_BASE_URL: 'https://elsewhere.example.com' })).rejects.toThrow(
        'no API key for https://elsewhere.example.com: set NVCF_API_KEY or run nvcf config set --api-key <key>',
      );
    } finally {
      await unpublish();
    }
  });
});

describe('the typed client', () => {
  let server: Server;
  let client: NvcfClient;
  const seen: { method?: string; url?: string; authorization?: string; headers?: Record<string, unknown> }[] = [];
  const answers = new Map<string, (res: import('node:http').ServerResponse) => void>();

  beforeAll(async () => {
    server = createServer((req, res) => {
      seen.push({ method: req.method, url: req.url, authorization: req.headers.authorization, headers: req.headers });
      req.resume();
      req.on('end', () => answers.get(`${req.method} ${req.url}`)!(res));
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const { port } = server.address() as { port: number };
    client = new NvcfClient({ baseUrl: `http://127.0.0.1:${port}/`, apiKey: 'nvapi-test' });
  });
  afterAll(async () => new Promise((resolve) => server.close(resolve)));

  it('throws the problem+json of a failure as NvcfError, and API Gateway\'s own {"message"} the same way', async () => {
    answers.set('GET /v2/nvcf/functions/f/versions/v', (res) => {
      res.writeHead(404, { 'content-type': 'application/problem+json' });
      res.end(JSON.stringify({ type: 'urn:nvcf:problem-details:not-found', title: 'Not Found', status: 404, detail: "Function 'f' version 'v' not found", requestId: 'r1' }));
    });
    answers.set('GET /v2/nvcf/functions', (res) => {
      res.writeHead(429, { 'content-type': 'application/json' });
      res.end('{"message":"Too Many Requests"}');
    });
    const missing = await client.getVersion('f', 'v').catch((error: unknown) => error);
    expect(missing).toBeInstanceOf(NvcfError);
    expect(missing).toMatchObject({ status: 404, title: 'Not Found', detail: "Function 'f' version 'v' not found", requestId: 'r1' });
    await expect(client.listFunctions()).rejects.toMatchObject({ status: 429, title: 'Too Many Requests', detail: 'Too Many Requests' });
    expect(seen.at(-1)!.authorization).toBe('Bearer nvapi-test');
  });

  it('reads a 202 as pending with its percent and partial response, and a 302 as a large output it does not follow', async () => {
    answers.set('POST /v2/nvcf/pexec/functions/f', (res) => {
      res.writeHead(202, { 'nvcf-reqid': 'r2', 'nvcf-status': 'in-progress', 'nvcf-percent-complete': '40', 'content-type': 'application/json' });
      res.end('{"step":2}');
    });
    answers.set('GET /v2/nvcf/pexec/status/r2', (res) => {
      res.writeHead(302, { 'nvcf-reqid': 'r2', location: 'http://bucket.example/result.zip' });
      res.end();
    });
    const pending = await client.invoke('f', { body: { message: 'hi' }, pollSeconds: 0, assetIds: ['a1', 'a2'] });
    expect(pending).toEqual({ kind: 'pending', requestId: 'r2', invocationStatus: 'in-progress', percentComplete: 40, partialResponse: { step: 2 } });
    expect(seen.at(-1)!.headers).toMatchObject({ 'nvcf-poll-seconds': '0', 'nvcf-input-asset-references': 'a1,a2', 'content-type': 'application/json' });
    const seenProgress: unknown[] = [];
    const final = await client.awaitOutcome(pending, (update) => seenProgress.push(update.percentComplete));
    expect(final).toEqual({ kind: 'large-output', requestId: 'r2', location: 'http://bucket.example/result.zip' });
    expect(seenProgress).toEqual([40]);
  });

  it('parses server-sent events across chunk boundaries: multi-line data, names, ids, comments, CRLF', async () => {
    async function* chunks() {
      for (const text of ['data: one\n\n: keep-alive\n', 'event: update\r\nid: 7\r\ndata: a\r\nda', 'ta: b\r\n\r\n', 'data:last']) yield new TextEncoder().encode(text);
    }
    const events = [];
    for await (const event of readServerSentEvents(chunks())) events.push(event);
    expect(events).toEqual([{ data: 'one' }, { event: 'update', id: '7', data: 'a\nb' }, { data: 'last' }]);
  });

  it('sends the presigned upload the Content-Type and description headers it signs, with no API key', async () => {
    const file = join(tmpdir(), `nvcf-upload-${randomUUID()}`);
    await writeFile(file, 'twelve bytes');
    answers.set('PUT /upload?sig=1', (res) => {
      res.writeHead(200);
      res.end();
    });
    const { port } = server.address() as { port: number };
    const sent: number[] = [];
    const asset = { assetId: 'a', contentType: 'text/plain', description: 'notes', uploadUrl: `http://127.0.0.1:${port}/upload?sig=1`, uploadForm: { url: '', fields: {} } };
    await client.uploadAsset(asset, createReadStream(file), 12, (bytes) => sent.push(bytes));
    expect(seen.at(-1)).toMatchObject({ method: 'PUT', authorization: undefined, headers: { 'content-type': 'text/plain', 'x-amz-meta-nvcf-asset-description': 'notes', 'content-length': '12' } });
    expect(sent.at(-1)).toBe(12);
    await rm(file);
  });
});
