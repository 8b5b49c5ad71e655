/**
 * The Kubernetes runtime's paths that reach AWS, on the local emulators:
 * a crash-looping pod turns its DEPLOYING version into ERROR with healthInfo
 * (through the shared Controller and the real DynamoDB calls), and the
 * fetch-artifacts role downloads and unpacks models from the platform bucket
 * and from a stand-in for NGC's API with the owner's registry credential.
 */
import { execFileSync } from 'node:child_process';
import { chmodSync, mkdtempSync, mkdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PutObjectCommand } from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { s3 } from '../../core/aws';
import { bucketName } from '../../core/config';
import { getVersion } from '../../core/functions';
import { K8S } from '../../core/names';
import { createRegistryCredential, updateRegistryCredential } from '../../core/registry-credentials';
import { main as fetchArtifactsMain } from '../../gpu-agent/fetch-artifacts';
import { KubernetesRuntime, ownersChartLogin, ownersNgcPullLogin, ownersPullLogin } from '../../gpu-agent/controller/kubernetes';
import { Controller } from '../../gpu-agent/controller/reconcile';
import { FakeHelm, FakeKubernetes } from '../support/fake-kubernetes';
import { deployVersion, putVersion } from '../support/function-versions';
import { CONTEXT } from '../support/k8s-fixtures';
import { startTestStack, type TestStack } from '../support/stack';

let stack: TestStack;
let scratch: string;
beforeAll(async () => {
  stack = await startTestStack();
  scratch = mkdtempSync(join(tmpdir(), 'nvcf-artifacts-'));
});
afterAll(async () => {
  await stack.stop();
  rmSync(scratch, { recursive: true, force: true });
});

describe('failure reporting', () => {
  it('puts a DEPLOYING version whose container crash-loops into ERROR with an actionable healthInfo', async () => {
    const version = await deployVersion(await putVersion('acct-k8s'), { status: 'DEPLOYING' });
    const api = new FakeKubernetes();
    const controller = new Controller(new KubernetesRuntime({ ...CONTEXT, api, helm: new FakeHelm({}) }));
    await controller.reconcile();
    const key = `${version.versionId}-0`;
    api.addPod(`nvcf-${key}-abc`, K8S.functionsNamespace, { 'app.kubernetes.io/managed-by': 'nvcf-controller', [K8S.workloadLabel]: key }, {
      containerStatuses: [{ name: 'inference', restartCount: 4, state: { waiting: { reason: 'CrashLoopBackOff' } }, lastState: { terminated: { exitCode: 1, reason: 'Error' } } }],
    });

    await controller.reconcile();

    const stored = await getVersion(version.functionId, version.versionId);
    expect(stored!.status).toBe('ERROR');
    expect(stored!.deployment!.healthInfo).toEqual([
      {
        gpu: 'L40S',
        instanceType: 'g6e.xlarge',
        error: `container "inference" keeps crashing: restarted 4 times, last exit code 1; see its logs with kubectl logs -n nvcf-functions nvcf-${key}-abc -c inference --previous`,
      },
    ]);
    // ERROR keeps the workload, so the failure stays visible in the cluster.
    expect(api.get('Deployment', K8S.functionsNamespace, `nvcf-${key}`)).toBeDefined();
  });
});

describe('image pull secrets', () => {
  it('give exactly the owner’s pods a pull Secret from the owner’s credential for the image’s registry, and no one else’s', async () => {
    const owner = 'acct-pull-owner';
    await createRegistryCredential(owner, { registryHostname: 'nvcr.io', secret: { name: '$oauthtoken', value: 'owner-pull-key' }, artifactTypes: ['CONTAINER'] });
    // A credential that does not list CONTAINER is no pull credential.
    await createRegistryCredential(owner, { registryHostname: 'docker.io', secret: { name: 'me', value: 'hub-key' }, artifactTypes: ['HELM'] });
    const own = await deployVersion(await putVersion(owner, { containerImage: 'nvcr.io/owner-org/echo:1' }), { status: 'DEPLOYING' });
    const ownEcr = await deployVersion(await putVersion(owner, { containerImage: '123456789012.dkr.ecr.us-east-1.amazonaws.com/echo:1' }), { status: 'DEPLOYING' });
    const ownHub = await deployVersion(await putVersion(owner, { containerImage: 'me/echo:1' }), { status: 'DEPLOYING' });
    // Another account, the same registry, no credential of its own: never the owner's.
    const stranger = await deployVersion(await putVersion('acct-pull-stranger', { containerImage: 'nvcr.io/owner-org/echo:1' }), { status: 'DEPLOYING' });
    const api = new FakeKubernetes();
    await new Controller(new KubernetesRuntime({ ...CONTEXT, api, helm: new FakeHelm({}), pullLogin: ownersPullLogin })).reconcile();

    const podSpec = (version: { versionId: string }) => (api.get('Deployment', K8S.functionsNamespace, `nvcf-${version.versionId}-0`)!.spec as any).template.spec;
    const pullSecret = (version: { versionId: string }) => api.get('Secret', K8S.functionsNamespace, `nvcf-pull-${version.versionId}-0`);
    expect(podSpec(own).imagePullSecrets).toEqual([{ name: `nvcf-pull-${own.versionId}-0` }]);
    const config = JSON.parse(Buffer.from((pullSecret(own)!.data as Record<string, string>)['.dockerconfigjson']!, 'base64').toString('utf8'));
    expect(config.auths).toEqual({ 'nvcr.io': { username: '$oauthtoken', password: 'owner-pull-key', auth: Buffer.from('$oauthtoken:owner-pull-key').toString('base64') } });
    for (const version of [ownEcr, ownHub, stranger]) {
      expect(podSpec(version)).not.toHaveProperty('imagePullSecrets');
      expect(pullSecret(version)).toBeUndefined();
    }
    expect(JSON.stringify(api.get('Deployment', K8S.functionsNamespace, `nvcf-${stranger.versionId}-0`))).not.toContain('owner-pull-key');
  });
});

describe('workloads that cannot be built', () => {
  it('put their DEPLOYING version into ERROR with the reason, instead of staying DEPLOYING forever', async () => {
    const version = await deployVersion(await putVersion('acct-k8s'), { status: 'DEPLOYING', specification: { gpu: 'T4G', instanceType: 'g5g.xlarge' } });
    const errors: unknown[] = [];
    const runtime = new KubernetesRuntime({ ...CONTEXT, agentImages: { amd64: CONTEXT.agentImages.amd64 }, api: new FakeKubernetes(), helm: new FakeHelm({}) });
    const controller = new Controller(runtime, { error: (_step, error) => errors.push(error) });

    await controller.reconcile();
    await controller.reconcile();

    const stored = await getVersion(version.functionId, version.versionId);
    expect(errors).toEqual([]);
    expect(stored!.status).toBe('ERROR');
    expect(stored!.deployment!.healthInfo![0]!.error).toMatch(/^no gpu-agent image for arm64 nodes/);
  });
});

describe('fetch-artifacts', () => {
  const put = (key: string, body: Buffer | string) => s3().send(new PutObjectCommand({ Bucket: bucketName(), Key: key, Body: body }));

  it('downloads models and resources into /config/models/<name> and /config/resources/<name>, unpacking archives', async () => {
    const source = join(scratch, 'source');
    mkdirSync(join(source, 'weights'), { recursive: true });
    writeFileSync(join(source, 'weights', 'layer0.bin'), 'tensor bytes');
    execFileSync('tar', ['-czf', join(scratch, 'weights.tar.gz'), '-C', source, 'weights']);
    execFileSync('zip', ['-q', '-r', join(scratch, 'tokenizer.zip'), 'weights'], { cwd: source });
    await put('models/acct/weights.tar.gz', readFileSync(join(scratch, 'weights.tar.gz')));
    await put('models/acct/tokenizer.zip', readFileSync(join(scratch, 'tokenizer.zip')));
    await put('models/acct/labels.txt', 'cat\ndog\n');
    const bucket = bucketName();
    const version = await putVersion('acct-artifacts', {
      models: [
        { name: 'weights', version: '1', uri: `s3://${bucket}/models/acct/weights.tar.gz` },
        { name: 'tokenizer', version: '1', uri: `s3://${bucket}/models/acct/tokenizer.zip` },
      ],
      resources: [{ name: 'labels', version: '1', uri: `s3://${bucket}/models/acct/labels.txt` }],
    });
    const config = join(scratch, 'config');

    const code = await fetchArtifactsMain({ ...process.env, NVCF_FUNCTION_ID: version.functionId, NVCF_FUNCTION_VERSION_ID: version.versionId, NVCF_ARTIFACTS_DIR: config });

    expect(code).toBe(0);
    expect(readFileSync(join(config, 'models', 'weights', 'weights', 'layer0.bin'), 'utf8')).toBe('tensor bytes');
    expect(readFileSync(join(config, 'models', 'tokenizer', 'weights', 'layer0.bin'), 'utf8')).toBe('tensor bytes');
    expect(readFileSync(join(config, 'resources', 'labels', 'labels.txt'), 'utf8')).toBe('cat\ndog\n');
  });

  it('makes what it fetched readable by the function container’s user, whatever modes the archive carries', async () => {
    const source = join(scratch, 'private');
    mkdirSync(join(source, 'secret-dir'), { recursive: true });
    writeFileSync(join(source, 'secret-dir', 'weights.bin'), 'owner only');
    chmodSync(join(source, 'secret-dir', 'weights.bin'), 0o600);
    chmodSync(join(source, 'secret-dir'), 0o700);
    execFileSync('tar', ['-czf', join(scratch, 'private.tar.gz'), '-C', source, 'secret-dir']);
    await put('models/acct/private.tar.gz', readFileSync(join(scratch, 'private.tar.gz')));
    const version = await putVersion('acct-artifacts', { models: [{ name: 'private', version: '1', uri: `s3://${bucketName()}/models/acct/private.tar.gz` }] });
    const config = join(scratch, 'config-modes');

    const code = await fetchArtifactsMain({ ...process.env, NVCF_FUNCTION_ID: version.functionId, NVCF_FUNCTION_VERSION_ID: version.versionId, NVCF_ARTIFACTS_DIR: config });

    expect(code).toBe(0);
    const dir = join(config, 'models', 'private', 'secret-dir');
    expect(statSync(dir).mode & 0o555).toBe(0o555);
    expect(statSync(join(dir, 'weights.bin')).mode & 0o444).toBe(0o444);
    // Read, not run: a data file does not become executable.
    expect(statSync(join(dir, 'weights.bin')).mode & 0o111).toBe(0);
  });

  it('refuses a URI outside the platform bucket’s models/ prefix with what to do instead', async () => {
    const version = await putVersion('acct-artifacts', {
      models: [{ name: 'llm', version: '1', uri: 'https://api.ngc.nvidia.com/v2/models/org/llm/versions/1/files' }],
    });
    const termination = join(scratch, 'termination-log');
    const code = await fetchArtifactsMain({ ...process.env, NVCF_FUNCTION_ID: version.functionId, NVCF_FUNCTION_VERSION_ID: version.versionId, NVCF_ARTIFACTS_DIR: join(scratch, 'c2'), NVCF_TERMINATION_LOG: termination });
    expect(code).toBe(1);
    expect(readFileSync(termination, 'utf8')).toBe(
      `"llm" has URI "https://api.ngc.nvidia.com/v2/models/org/llm/versions/1/files", which is neither an s3:// URI nor an NGC model or resource URI; upload it to s3://${bucketName()}/models/... and use that URI, or use an NGC URI v2/org/<org>/models/<name>/versions/<version>/zip`,
    );
  });

  it('fetches an NGC model with the owner’s credential, and names NGC and the status in the termination log when the key is refused', async () => {
    const zip = join(scratch, 'ngc.zip');
    execFileSync('zip', ['-q', '-r', zip, 'weights'], { cwd: join(scratch, 'source') });
    const asked: (string | undefined)[] = [];
    const ngc = createServer((request, response) => {
      asked.push(request.headers.authorization);
      if (request.headers.authorization !== 'Bearer right-key') return response.writeHead(401).end();
      response.writeHead(200, { 'content-type': 'application/zip' }).end(readFileSync(zip));
    });
    await new Promise<void>((resolve) => ngc.listen(0, '127.0.0.1', resolve));
    const ngcUrl = `http://127.0.0.1:${(ngc.address() as AddressInfo).port}`;
    try {
      const owner = 'acct-ngc-fetch';
      const credential = await createRegistryCredential(owner, { registryHostname: 'nvcr.io', secret: { name: '$oauthtoken', value: 'wrong-key' }, artifactTypes: ['MODEL'] });
      // Another account's credential for NGC, with the right key: never used for this owner's version.
      await createRegistryCredential('acct-ngc-other', { registryHostname: 'nvcr.io', secret: { name: '$oauthtoken', value: 'right-key' }, artifactTypes: ['MODEL'] });
      const version = await putVersion(owner, { models: [{ name: 'llm', version: '1', uri: 'v2/org/my-org/team/t/models/llm/versions/2/zip' }] });
      const env = { ...process.env, NVCF_NGC_API_URL: ngcUrl, NVCF_FUNCTION_ID: version.functionId, NVCF_FUNCTION_VERSION_ID: version.versionId };
      const termination = join(scratch, 'termination-log-ngc');

      expect(await fetchArtifactsMain({ ...env, NVCF_ARTIFACTS_DIR: join(scratch, 'c-ngc1'), NVCF_TERMINATION_LOG: termination })).toBe(1);
      const reason = readFileSync(termination, 'utf8');
      expect(reason).toMatch(/^NGC \(127\.0\.0\.1:\d+\) answered HTTP 401 for "llm" \(v2\/org\/my-org\/team\/t\/models\/llm\/versions\/2\/zip\)/);
      expect(reason).toContain(`PATCH /v2/nvcf/registry-credentials/${credential.registryCredentialId}`);
      expect(reason).not.toContain('wrong-key');
      expect(asked).toEqual(['Bearer wrong-key']);

      await updateRegistryCredential(owner, credential.registryCredentialId, { secret: { name: '$oauthtoken', value: 'right-key' } });
      const config = join(scratch, 'c-ngc2');
      expect(await fetchArtifactsMain({ ...env, NVCF_ARTIFACTS_DIR: config })).toBe(0);
      expect(readFileSync(join(config, 'models', 'llm', 'weights', 'layer0.bin'), 'utf8')).toBe('tensor bytes');
    } finally {
      await new Promise((resolve) => ngc.close(resolve));
    }
  });

  it('names the object it cannot read', async () => {
    const version = await putVersion('acct-artifacts', { models: [{ name: 'gone', version: '1', uri: `s3://${bucketName()}/models/acct/missing.tar.gz` }] });
    const termination = join(scratch, 'termination-log-2');
    const code = await fetchArtifactsMain({ ...process.env, NVCF_FUNCTION_ID: version.functionId, NVCF_FUNCTION_VERSION_ID: version.versionId, NVCF_ARTIFACTS_DIR: join(scratch, 'c3'), NVCF_TERMINATION_LOG: termination });
    expect(code).toBe(1);
    expect(readFileSync(termination, 'utf8')).toMatch(/^cannot read s3:\/\/.*\/models\/acct\/missing.tar.gz for "gone": NoSuchKey/);
  });
});

// Last: its Helm versions stay deployed, and the controllers above would apply them too.
describe('private Helm charts', () => {
  it('are downloaded with the owner’s HELM credential (Basic), installed from the file, and a refused key is the failure naming the registry and status', async () => {
    const chartBytes = Buffer.from('a chart archive');
    const asked: (string | undefined)[] = [];
    const registry = createServer((request, response) => {
      asked.push(request.headers.authorization);
      if (request.headers.authorization !== `Basic ${Buffer.from('$oauthtoken:chart-key').toString('base64')}`) return response.writeHead(401).end();
      response.writeHead(200, { 'content-type': 'application/gzip' }).end(chartBytes);
    });
    await new Promise<void>((resolve) => registry.listen(0, '127.0.0.1', resolve));
    const chartUrl = `http://127.0.0.1:${(registry.address() as AddressInfo).port}/my-org/charts/echo-0.1.0.tgz`;
    try {
      // Whose login: the owner's credential for the chart's host listing HELM (an NGC one for nvcr.io serves helm.ngc.nvidia.com).
      const owner = 'acct-chart-owner';
      await createRegistryCredential(owner, { registryHostname: 'nvcr.io', secret: { name: '$oauthtoken', value: 'chart-key' }, artifactTypes: ['HELM'] });
      const ngcChart = { helmChart: 'https://helm.ngc.nvidia.com/my-org/charts/echo-0.1.0.tgz', helmChartServiceName: 'echo', containerImage: undefined };
      expect(await ownersChartLogin(await putVersion(owner, ngcChart))).toEqual({ username: '$oauthtoken', password: 'chart-key' });
      expect(await ownersChartLogin(await putVersion('acct-chart-stranger', ngcChart))).toBeUndefined();
      // The chart's images (ngcImagePullSecretName) need a CONTAINER one: this HELM-only credential is none.
      expect(await ownersNgcPullLogin(await putVersion(owner, ngcChart))).toBeUndefined();
      await createRegistryCredential('acct-chart-images', { registryHostname: 'nvcr.io', secret: { name: '$oauthtoken', value: 'image-key' }, artifactTypes: ['CONTAINER'] });
      expect(await ownersNgcPullLogin(await putVersion('acct-chart-images', ngcChart))).toEqual({ host: 'nvcr.io', username: '$oauthtoken', password: 'image-key' });

      const version = await deployVersion(await putVersion(owner, { ...ngcChart, helmChart: chartUrl }), { status: 'DEPLOYING' });
      const release = `nvcf-${version.versionId}-0`;
      const chartsDir = join(scratch, 'charts');
      const downloaded = join(chartsDir, `${release}.tgz`);
      const renderings: Record<string, string> = { [downloaded]: 'kind: Service\nmetadata:\n  name: echo' };
      const helm = new FakeHelm(renderings);
      let login = { username: '$oauthtoken', password: 'wrong-key' };
      const runtime = new KubernetesRuntime({ ...CONTEXT, api: new FakeKubernetes(), helm, chartsDir, chartLogin: async () => login });
      const controller = new Controller(runtime);

      await controller.reconcile();
      await controller.reconcile();
      const failed = await getVersion(version.functionId, version.versionId);
      expect(failed!.status).toBe('ERROR');
      expect(failed!.deployment!.healthInfo![0]!.error).toMatch(new RegExp(`^Helm chart ${chartUrl.replaceAll('.', '\\.')}: the chart registry 127\\.0\\.0\\.1:\\d+ answered HTTP 401 \\(the key`));
      expect(failed!.deployment!.healthInfo![0]!.error).not.toContain('wrong-key');
      // Refused before helm rendered or installed anything.
      expect(helm.calls.filter((call) => call.startsWith('template') || call.startsWith('upgrade'))).toEqual([]);

      login = { username: '$oauthtoken', password: 'chart-key' };
      const fixed = await deployVersion(await putVersion(owner, { ...ngcChart, helmChart: chartUrl }), { status: 'DEPLOYING' });
      renderings[join(chartsDir, `nvcf-${fixed.versionId}-0.tgz`)] = renderings[downloaded]!;
      await controller.reconcile();
      const installed = helm.installed.get(`nvcf-fn-${fixed.versionId}-0/nvcf-${fixed.versionId}-0`);
      expect(installed?.chart).toBe(join(chartsDir, `nvcf-${fixed.versionId}-0.tgz`));
      expect(readFileSync(installed!.chart)).toEqual(chartBytes);
      expect(asked.at(-1)).toBe(`Basic ${Buffer.from('$oauthtoken:chart-key').toString('base64')}`);
    } finally {
      await new Promise((resolve) => registry.close(resolve));
    }
  });
});
