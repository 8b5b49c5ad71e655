/**
 * NGC models and resources on `npm start` as a user sees them, against a
 * stand-in for NGC's API (NVCF_NGC_API_URL) that answers the seeds' URIs only
 * to the right key and, as NGC does, redirects the download to a storage URL:
 * deploy refuses while the account has no NGC credential and names the one
 * missing; a wrong key turns the version ERROR with a healthInfo naming NGC
 * and the status it answered; with the right key the function's command
 * finds the model under `{config}/models/<name>` and the resource under
 * `{config}/resources/<name>` (examples/models in the shipped image map).
 */
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startNpmStart, type NpmStart } from '../support/npm-start';
import { waitFor } from '../support/processes';

const MODELS_IMAGE = 'nvcr.io/nvcf-examples/models:1.0';
const NGC_KEY = `nvapi-${randomBytes(24).toString('base64url')}`;
const WRONG_KEY = `nvapi-wrong-${randomBytes(8).toString('hex')}`;
const apiKey = `nvapi-${randomBytes(32).toString('base64url')}`;
// As the seeds write them (function-creation.txt).
const MODEL_PATH = '/v2/org/cf/my-org/models/simple_int8/versions/1/zip';
const RESOURCE_PATH = '/v2/org/cf/my-org/resources/simple_resource/versions/1/zip';

/** A zip of `files` (name → content), made with the zip the agent image also has. */
function zipOf(files: Record<string, string>): Buffer {
  const dir = mkdtempSync(join(tmpdir(), 'ngc-zip-'));
  for (const [name, content] of Object.entries(files)) {
    mkdirSync(join(dir, name, '..'), { recursive: true });
    writeFileSync(join(dir, name), content);
  }
  const made = spawnSync('zip', ['-q', '-r', join(dir, 'out.zip'), ...Object.keys(files)], { cwd: dir });
  if (made.status !== 0) throw new Error(`zip failed: ${made.stderr}`);
  return readFileSync(join(dir, 'out.zip'));
}

describe('NGC models on npm start', () => {
  let stack: NpmStart;
  let ngc: Server;
  /** What the stand-in was asked: path and Authorization header. */
  const asked: { path: string; authorization?: string }[] = [];
  const zips: Record<string, Buffer> = {
    '/storage/model.zip': zipOf({ '1/model.plan': 'weights of simple_int8\n', 'config.pbtxt': 'name: "simple_int8"\n' }),
    '/storage/resource.zip': zipOf({ 'labels.txt': 'cat\ndog\n' }),
  };

  beforeAll(async () => {
    ngc = createServer((request: IncomingMessage, response) => {
      asked.push({ path: request.url!, authorization: request.headers.authorization });
      const storage = { [MODEL_PATH]: '/storage/model.zip', [RESOURCE_PATH]: '/storage/resource.zip' }[request.url!];
      if (storage) {
        if (request.headers.authorization !== `Bearer ${NGC_KEY}`) return response.writeHead(401, { 'content-type': 'application/json' }).end('{"requestStatus":{"statusCode":"UNAUTHORIZED"}}');
        return response.writeHead(302, { location: storage }).end();
      }
      const zip = zips[request.url!];
      if (zip) return response.writeHead(200, { 'content-type': 'application/zip' }).end(zip);
      response.writeHead(404).end();
    });
    await new Promise<void>((resolve) => ngc.listen(0, '127.0.0.1', resolve));
    const ngcUrl = `http://127.0.0.1:${(ngc.address() as AddressInfo).port}`;

    stack = await startNpmStart({ NVCF_API_KEY: apiKey, NVCF_NGC_API_URL: ngcUrl });
  }, 90_000);

  afterAll(async () => {
    await stack?.stop();
    await new Promise((resolve) => ngc?.close(resolve));
  }, 90_000);

  const call = (method: string, path: string, body?: unknown) => stack.call(apiKey, method, path, body);

  it('refuses to deploy without an NGC credential, turns ERROR naming NGC and 401 with a wrong key, and places the model under {config} with the right one', async () => {
    const created = await call('POST', '/v2/nvcf/functions', {
      name: 'ngc-models-e2e',
      inferenceUrl: '/files',
      containerImage: MODELS_IMAGE,
      health: { protocol: 'HTTP', uri: '/health', port: 8000, timeout: 'PT10S', expectedStatusCode: 200 },
      models: [{ name: 'simple_int8', version: '1', uri: MODEL_PATH.slice(1) }],
      resources: [{ name: 'simple_resource', version: '1', uri: RESOURCE_PATH.slice(1) }],
    });
    expect(created.status, created.text).toBe(200);
    const { id, versionId } = created.json.function;
    const version = `${id}/versions/${versionId}`;
    const deploy = () => call('POST', `/v2/nvcf/deployments/functions/${version}`, { deploymentSpecifications: [{ gpu: 'LOCAL', instanceType: 'local.gpu', minInstances: 1, maxInstances: 1 }] });
    const status = async () => (await call('GET', `/v2/nvcf/deployments/functions/${version}`)).json.deployment;

    const refused = await deploy();
    expect(refused.status).toBe(400);
    expect(refused.json.detail).toContain('models[0]: "simple_int8" comes from NGC, and this account has no registry credential for NGC (api.ngc.nvidia.com) listing MODEL');
    expect(refused.json.detail).toContain('resources[0]: "simple_resource" comes from NGC');
    expect(asked).toEqual([]);

    const credential = await call('POST', '/v2/nvcf/registry-credentials', {
      registryHostname: 'nvcr.io',
      secret: { name: '$oauthtoken', value: WRONG_KEY },
      artifactTypes: ['CONTAINER', 'MODEL', 'RESOURCE'],
    });
    expect(credential.status, credential.text).toBe(200);
    const credentialId = credential.json.registryCredential.registryCredentialId;

    expect((await deploy()).status).toBe(200);
    const failed = await waitFor('the version to become ERROR', async () => {
      const deployment = await status();
      return deployment.functionStatus === 'ERROR' ? deployment : undefined;
    }, 60_000);
    const error = failed.healthInfo[0].error as string;
    expect(error).toMatch(/NGC \(127\.0\.0\.1:\d+\) answered HTTP 401 for "simple_int8"/);
    expect(error).toContain(`PATCH /v2/nvcf/registry-credentials/${credentialId}`);
    expect(error).not.toContain(WRONG_KEY);
    expect(asked[0]).toEqual({ path: MODEL_PATH, authorization: `Bearer ${WRONG_KEY}` });

    expect((await call('PATCH', `/v2/nvcf/registry-credentials/${credentialId}`, { secret: { name: '$oauthtoken', value: NGC_KEY } })).status).toBe(200);
    expect((await call('DELETE', `/v2/nvcf/deployments/functions/${version}`)).status).toBe(200);
    asked.length = 0;
    expect((await deploy()).status).toBe(200);
    await waitFor('the version to become ACTIVE', async () => (await status()).functionStatus === 'ACTIVE', 90_000);

    const listed = await call('POST', `/v2/nvcf/pexec/functions/${version}`, {});
    expect(listed.status, listed.text).toBe(200);
    expect(listed.json.config).toMatch(/\/instances\/local-[0-9a-f]+\/config$/);
    expect(listed.json.files).toEqual({
      'models/simple_int8/1/model.plan': { bytes: 23, firstLine: 'weights of simple_int8' },
      'models/simple_int8/config.pbtxt': { bytes: 20, firstLine: 'name: "simple_int8"' },
      'resources/simple_resource/labels.txt': { bytes: 8, firstLine: 'cat' },
    });
    // The key went to NGC's API only; the storage URL it redirected to got no Authorization.
    expect(asked).toEqual([
      { path: MODEL_PATH, authorization: `Bearer ${NGC_KEY}` },
      { path: '/storage/model.zip', authorization: undefined },
      { path: RESOURCE_PATH, authorization: `Bearer ${NGC_KEY}` },
      { path: '/storage/resource.zip', authorization: undefined },
    ]);
    for (const key of [NGC_KEY, WRONG_KEY]) expect(stack.output()).not.toContain(key);
  }, 240_000);
});
