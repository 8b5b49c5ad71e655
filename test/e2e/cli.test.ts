/**
 * The nvcf CLI as a user runs it: spawned (`npx nvcf`, then its bin) against
 * one `npm start`, found with no settings through the stack's discovery file:
 * create → deploy --wait → invoke (sync, async with progress, stream, with an
 * asset, large output) → cancel → undeploy and delete; a deployment that
 * fails; bad flags and API errors; settings from `nvcf config set`; the
 * README's CLI quick start, run by bash as written; and the typed client itself.
 */
import { spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { NvcfClient, NvcfError } from '../../client';
import { ROOT, startNpmStart, type NpmStart } from '../support/npm-start';
import { waitFor } from '../support/processes';
const NVCF = join(ROOT, 'bin', 'nvcf.mjs');
const UUID = '[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}';
const apiKey = `nvapi-${randomBytes(32).toString('base64url')}`;

let stack: NpmStart;

/** The environment a user's shell has: the stack's PORT (and temp dir, where it publishes itself), nothing else of nvcf's. */
function userEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, PORT: String(stack.port), TMPDIR: stack.workDir, NVCF_CONFIG_DIR: join(stack.workDir, 'config'), ...extra };
  for (const name of ['NVCF_API_KEY', 'NVCF_BASE_URL', 'NVCF_INVOCATION_URL', 'NVCF_FORMAT']) if (!(name in extra)) delete env[name];
  return env;
}

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Starts `nvcf ...args` (or `command ...args`) in `cwd`; `done` resolves when it exits. */
function start(args: string[], env = userEnv(), command: string[] = [process.execPath, NVCF], cwd = ROOT) {
  const child = spawn(command[0]!, [...command.slice(1), ...args], { cwd, env, stdio: ['ignore', 'pipe', 'pipe'] });
  const run: Run = { code: null, stdout: '', stderr: '' };
  child.stdout!.on('data', (chunk: Buffer) => (run.stdout += chunk.toString()));
  child.stderr!.on('data', (chunk: Buffer) => (run.stderr += chunk.toString()));
  const done = new Promise<Run>((resolve) => child.once('close', (code) => resolve({ ...run, code })));
  return { child, run, done };
}

const nvcf = (args: string[], env?: NodeJS.ProcessEnv) => start(args, env).done;
const json = (run: Run) => JSON.parse(run.stdout);

beforeAll(async () => {
  stack = await startNpmStart({ NVCF_API_KEY: apiKey });
}, 90_000);
afterAll(() => stack?.stop(), 90_000);

describe('nvcf against npm start', () => {
  it('runs the README quick start with the CLI as written', async () => {
    const readme = await readFile(join(ROOT, 'README.md'), 'utf8');
    const section = readme.slice(readme.indexOf('<!-- quickstart-cli:start -->'), readme.indexOf('<!-- quickstart-cli:end -->'));
    const script = [...section.matchAll(/```sh\n([\s\S]*?)```/g)].map((match) => match[1]).join('\n');
    expect(script).toContain('npx nvcf invoke');
    // npx finds the package's bin from its directory: the script runs below it, in an ignored directory of its own.
    const cacheDir = join(ROOT, 'node_modules', '.cache');
    await mkdir(cacheDir, { recursive: true });
    const cwd = await mkdtemp(join(cacheDir, 'nvcf-e2e-cli-quickstart-'));
    try {
      const run = await start(['-c', `set -euo pipefail\n${script}`], userEnv(), ['bash'], cwd).done;
      expect(run.stderr).not.toMatch(/^nvcf: /m);
      expect(run.code).toBe(0);
      const { stdout, stderr } = run;
      expect(stdout).toMatch(/"functionStatus": "ACTIVE"/); // deploy --wait
      expect(stderr).toMatch(/deployment ACTIVE: 1 instance\(s\) ready/);
      expect(stdout).toContain('"hello hello "'); // sync: the answer alone
      expect(stdout).toContain('"slow"'); // async, followed to its result
      expect(stderr).toMatch(new RegExp(`^request ${UUID} \\d+% in-progress \\{"step":\\d\\}$`, 'm')); // NVCF-PERCENT-COMPLETE and the partial response
      expect(stderr).toMatch(new RegExp(`^request ${UUID} 100% fulfilled$`, 'm'));
      expect(stdout).toContain('{"data":"tick"}\n{"data":"tick"}\n{"data":"tick"}\n'); // stream, one JSON line per event
      // The asset, uploaded with progress first: the container saw its bytes.
      expect(stderr).toMatch(/^uploading input\.txt 100% of 38 bytes$/m);
      const inputDigest = createHash('sha256').update('an input too large for a request body\n').digest('hex');
      expect(stdout).toMatch(new RegExp(`"assets":\\{"${UUID}":"${inputDigest}"\\}`));
      // The large output, downloaded and unpacked: the file and the response beside it.
      const unpacked = await readdir(join(cwd, 'out'));
      expect(unpacked.sort()).toEqual([expect.stringMatching(new RegExp(`^${UUID}\\.response$`)), 'result.bin']);
      expect((await stat(join(cwd, 'out', 'result.bin'))).size).toBe(1048576);
      expect(await readFile(join(cwd, 'out', unpacked.find((name) => name.endsWith('.response'))!), 'utf8')).toBe('"big"');
      expect(stdout).toMatch(/"status": "canceled"/);
      expect(stdout).toMatch(/"status": "INACTIVE"[\s\S]*"deleted": true\s*\}\s*$/); // undeploy, delete
    } finally {
      await rm(cwd, { recursive: true, force: true });
    }
  }, 150_000);

  let target: string;
  let functionId: string;

  it('runs as npx nvcf and finds the local stack with no settings; piped, it answers JSON', async () => {
    const run = await start(['gpus'], userEnv(), ['npx', 'nvcf']).done;
    expect(run.stderr).toBe('');
    expect(run.code).toBe(0);
    expect(json(run)).toEqual([{ gpu: 'LOCAL', backend: 'AWS', instanceTypes: ['local.gpu'] }]);
  }, 60_000);

  it('creates a function with the NGC CLI flags and deploys it with --wait until ACTIVE', async () => {
    const created = await nvcf(['function', 'create', '--name', 'echo-cli', '--container-image', 'nvcr.io/nvcf-examples/echo:1.0', '--inference-url', '/echo', '--inference-port', '8000', '--health-uri', '/health', '--tag', 'cli']);
    expect(created.code).toBe(0);
    const fn = json(created);
    expect(fn).toMatchObject({ name: 'echo-cli', status: 'INACTIVE', inferenceUrl: '/echo', healthUri: '/health', tags: ['cli'] });
    functionId = fn.id;
    target = `${fn.id}:${fn.versionId}`;

    const deployed = await nvcf(['deploy', 'create', target, '--targeted-dep-spec', 'LOCAL:local.gpu:1:1', '--wait']);
    expect(deployed.stderr).toMatch(new RegExp(`deployment ${target} .*: \\d/1 instance\\(s\\) ready`));
    expect(deployed.stderr).toContain('deployment ACTIVE: 1 instance(s) ready');
    expect(deployed.code).toBe(0);
    expect(json(deployed)).toMatchObject({ functionId, functionStatus: 'ACTIVE', deploymentSpecifications: [{ gpu: 'LOCAL', instanceType: 'local.gpu', minInstances: 1, maxInstances: 1 }] });

    const logs = await nvcf(['deploy', 'log', target]);
    expect(logs.code).toBe(0);
    expect(json(logs).lines).toEqual(expect.arrayContaining([expect.objectContaining({ source: 'container', message: expect.stringMatching(/^echo server listening on /) })]));
    const secrets = await nvcf(['function', 'update-secret', target, '--secret', 'API_TOKEN:s3cr3t']);
    expect(json(secrets)).toEqual({ functionId, versionId: fn.versionId, secrets: ['API_TOKEN'] });
    expect(json(await nvcf(['function', 'info', target])).secrets).toEqual(['API_TOKEN']);

    const listed = await nvcf(['function', 'list', '--format', 'table']);
    expect(listed.stdout).toMatch(new RegExp(`^NAME +ID +VERSIONID +STATUS +CREATEDAT\\necho-cli +${functionId} +${UUID} +ACTIVE `));
  }, 90_000);

  it('serves the typed client the CLI is built on, every kind of answer typed (the same stack, the version the CLI deployed)', async () => {
    const client = new NvcfClient({ baseUrl: stack.url, apiKey });
    const [, versionId] = target.split(':') as [string, string];
    expect((await client.getVersion(functionId, versionId)).status).toBe('ACTIVE');
    expect(await client.watchDeployment(functionId, versionId, () => {})).toMatchObject({ status: 'ACTIVE', readyInstances: 1, minInstances: 1 });

    const result = await client.invoke(functionId, { versionId, body: { message: 'typed' } });
    expect(result.kind === 'result' && JSON.parse(result.body.toString())).toBe('typed');
    const pending = await client.invoke(functionId, { body: { message: 'later', delay: 2, progress: 1 }, pollSeconds: 0 });
    expect(pending).toMatchObject({ kind: 'pending', requestId: expect.stringMatching(new RegExp(`^${UUID}$`)) });
    const progress: (number | undefined)[] = [];
    const later = await client.awaitOutcome(pending, (update) => progress.push(update.percentComplete));
    expect(later.kind === 'result' && later.body.toString()).toBe('"later"');
    expect(progress).toContain(50);

    const stream = await client.invoke(functionId, { body: { message: 'e', stream: true, repeats: 2 }, stream: true });
    const events = [];
    if (stream.kind === 'stream') for await (const event of stream.events) events.push(event);
    expect(events).toEqual([{ data: 'e' }, { data: 'e' }]);

    const large = await client.invoke(functionId, { body: { message: 'big', responseBytes: 6 * 1024 * 1024 } });
    expect(large.kind).toBe('large-output');
    if (large.kind === 'large-output') {
      const zip = await client.downloadLargeOutput(large.location);
      let bytes = 0;
      for await (const chunk of zip.body) bytes += chunk.length;
      expect(bytes).toBe(zip.size);
    }

    const gone = await client.getVersion(functionId, '00000000-0000-4000-8000-000000000000').catch((error: unknown) => error);
    expect(gone).toBeInstanceOf(NvcfError);
    expect(gone).toMatchObject({ status: 404, title: 'Not Found' });
    expect(await client.clusterGroups()).toMatchObject([{ name: 'local', gpus: [{ name: 'LOCAL' }] }]);
    expect((await client.versionQueue(functionId, versionId)).queues).toMatchObject([{ functionVersionId: versionId, functionStatus: 'ACTIVE' }]);
  }, 60_000);

  it('changes the deployment and the tags, adds a version, shows queues, and manages assets', async () => {
    const updated = await nvcf(['deploy', 'update', target, '--targeted-dep-spec', 'LOCAL:local.gpu:1:2:4']);
    expect(json(updated).deploymentSpecifications).toMatchObject([{ minInstances: 1, maxInstances: 2, maxRequestConcurrency: 4 }]);
    expect(json(await nvcf(['deploy', 'info', target])).deploymentSpecifications).toMatchObject([{ maxInstances: 2 }]);
    expect(json(await nvcf(['function', 'update-metadata', target, '--tag', 'cli', '--tag', 'e2e'])).tags).toEqual(['cli', 'e2e']);
    expect(json(await nvcf(['queue', functionId])).queues).toMatchObject([{ functionName: 'echo-cli', functionStatus: 'ACTIVE', queueDepth: 0 }]);

    const second = json(await nvcf(['function', 'create', functionId, '--name', 'echo-cli', '--container-image', 'nvcr.io/nvcf-examples/echo:1.0', '--inference-url', '/echo']));
    expect(second).toMatchObject({ id: functionId, status: 'INACTIVE' });
    expect(json(await nvcf(['function', 'list', functionId])).map((version: { versionId: string }) => version.versionId)).toEqual([target.split(':')[1], second.versionId]);
    expect((await nvcf(['function', 'delete', `${functionId}:${second.versionId}`])).code).toBe(0);

    const file = join(stack.workDir, 'notes.txt');
    await writeFile(file, 'asset bytes');
    const { assetId } = json(await nvcf(['asset', 'upload', file]));
    expect(json(await nvcf(['asset', 'list']))).toEqual(expect.arrayContaining([{ assetId, contentType: 'text/plain', description: 'notes.txt' }]));
    expect(json(await nvcf(['asset', 'info', assetId]))).toMatchObject({ assetId, contentType: 'text/plain' });
    expect((await nvcf(['asset', 'delete', assetId])).code).toBe(0);
    expect(await nvcf(['asset', 'info', assetId])).toMatchObject({ code: 1, stderr: `nvcf: Not Found (404): Asset '${assetId}' not found\n` });
  }, 90_000);

  it('invokes --stream, printing each event as it arrives', async () => {
    const streaming = start(['invoke', functionId, '--stream', '--format', 'table', '--data', '{"message": "tick", "stream": true, "repeats": 3, "delay": 2}']);
    // The container writes an event every 2 s: the first output is the first event alone, not the whole stream at its end.
    const first = new Promise<string>((resolve) => streaming.child.stdout!.once('data', (chunk: Buffer) => resolve(chunk.toString())));
    const run = await streaming.done;
    expect(await first).toBe('tick\n');
    expect(run).toMatchObject({ code: 0, stdout: 'tick\ntick\ntick\n' });
  }, 60_000);

  it('cancels a call another nvcf follows: that one ends with the 410 and a non-zero exit', async () => {
    const following = start(['invoke', functionId, '--async', '--data', '{"message": "too slow", "delay": 120}']);
    const requestId = await waitFor('the request id on stderr', () => new RegExp(`^request (${UUID})`, 'm').exec(following.run.stderr)?.[1], 30_000);
    expect((await nvcf(['queue', '--request', requestId])).code).toBe(0);

    const canceled = await nvcf(['cancel', requestId]);
    expect(canceled.code).toBe(0);
    expect(json(canceled)).toEqual({ requestId, status: 'canceled' });
    const followed = await following.done;
    expect(followed.code).toBe(1);
    expect(followed.stderr).toContain(`nvcf: Gone (410): request ${requestId} was canceled`);

    const status = await nvcf(['status', requestId]);
    expect(status.code).toBe(1);
    expect(status.stderr).toContain('Gone (410)');
  }, 90_000);

  it('undeploys and deletes the version; then the API answers 404, printed with its title and detail', async () => {
    const removed = await nvcf(['deploy', 'remove', target]);
    expect(removed.code).toBe(0);
    expect(json(removed)).toMatchObject({ status: 'INACTIVE' });
    expect((await nvcf(['function', 'delete', target])).code).toBe(0);
    const info = await nvcf(['function', 'info', target]);
    expect(info.code).toBe(1);
    expect(info.stderr).toBe(`nvcf: Not Found (404): Function '${functionId}' version '${target.split(':')[1]}' not found\n`);
  }, 60_000);

  it('deploy --wait on a version that fails: the health info and exit code 1', async () => {
    const created = json(await nvcf(['function', 'create', '--name', 'missing', '--container-image', 'nvcr.io/nvcf-examples/not-in-the-map:1.0', '--inference-url', '/echo']));
    const failing = `${created.id}:${created.versionId}`;
    const run = await nvcf(['deploy', 'create', failing, '--targeted-dep-spec', 'LOCAL:local.gpu:1:1', '--wait']);
    expect(run.code).toBe(1);
    expect(run.stderr).toContain('deployment ERROR:');
    expect(run.stderr).toMatch(/LOCAL local\.gpu: container image "nvcr\.io\/nvcf-examples\/not-in-the-map:1\.0" is not in the local image map/);
    expect(json(run)).toMatchObject({ functionStatus: 'ERROR', healthInfo: [{ gpu: 'LOCAL' }] });
  }, 60_000);

  it('refuses bad flags with a clear message and exit code 2, and reports API errors with exit code 1', async () => {
    const badSpec = await nvcf(['deploy', 'create', 'f:v', '--targeted-dep-spec', 'LOCAL:local.gpu:x:1']);
    expect(badSpec).toMatchObject({ code: 2, stderr: 'nvcf: --targeted-dep-spec: minInstances must be a whole number, got "x"\n' });
    const unknown = await nvcf(['invoke', 'f', '--bogus']);
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toContain("error: unknown option '--bogus'");
    const missing = await nvcf(['function', 'create', '--name', 'x', '--container-image', 'nvcr.io/a/b:1']);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toContain("error: required option '--inference-url <path>' not specified");

    const invalid = await nvcf(['function', 'create', '--name', 'bad name', '--inference-url', '/echo', '--container-image', 'nvcr.io/a/b:1']);
    expect(invalid.code).toBe(1);
    expect(invalid.stderr).toMatch(/^nvcf: Bad Request \(400\): .*name: must start with a letter or digit/);
    const unauthorized = await nvcf(['function', 'list'], userEnv({ NVCF_API_KEY: 'nvapi-not-a-key-of-this-stack' }));
    expect(unauthorized).toMatchObject({ code: 1, stderr: 'nvcf: Unauthorized (401): the API key is unknown or has been revoked\n' });
  }, 60_000);

  it('uses the base URL and key of nvcf config set, with no local stack to find', async () => {
    const configDir = join(stack.workDir, 'configured');
    const env = userEnv({ NVCF_CONFIG_DIR: configDir, PORT: '1' }); // PORT of no stack: only the settings lead to it
    expect((await nvcf(['gpus'], env)).code).toBe(2);
    const set = await nvcf(['config', 'set', '--base-url', stack.url, '--api-key', apiKey, '--format', 'table'], env);
    expect(set).toMatchObject({ code: 0, stderr: `saved to ${join(configDir, 'config.json')}\n` });
    const gpus = await nvcf(['gpus'], env);
    expect(gpus).toMatchObject({ code: 0, stdout: 'GPU    BACKEND  INSTANCETYPES\nLOCAL  AWS      local.gpu\n' });
    expect(JSON.parse((await nvcf(['gpus', '--format', 'json'], env)).stdout)).toHaveLength(1);
  }, 60_000);
});
