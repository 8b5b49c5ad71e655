/**
 * Secrets of Helm functions: the controller writes the version's secrets file
 * into the Secret `nvcf-secrets` of the chart's namespace (after the RoleBinding
 * that lets it, before helm installs the chart), rewrites it when the secrets
 * change without restarting the worker, and reports a set it cannot open as
 * the version's failure without naming a value. Against the in-memory cluster,
 * with the local key standing in for KMS.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { FunctionVersionRecord } from '../../core/model';
import { ENV, K8S } from '../../core/names';
import { LocalDataKeys, resetDataKeyProvider, sealSecrets, type SecretEntry } from '../../core/secrets';
import { KubernetesRuntime } from '../../gpu-agent/controller/kubernetes';
import { Controller } from '../../gpu-agent/controller/reconcile';
import { FakeHelm, FakeKubernetes } from '../support/fake-kubernetes';
import { CONTEXT, testVersion } from '../support/k8s-fixtures';

const CHART = 'https://charts.example.com/echo-0.1.0.tgz';
const RENDERINGS = { [CHART]: ['kind: Deployment\nmetadata:\n  name: echo', 'kind: Service\nmetadata:\n  name: echo'].join('\n---\n') };
const MARKER = 'helm-marker-61f0d3';
const KEY = `${testVersion().versionId}-0`;
const NAME = `nvcf-${KEY}`;
const CHART_NAMESPACE = `nvcf-fn-${KEY}`;
const SECRET = `Secret/${CHART_NAMESPACE}/${K8S.helmSecretsSecret}`;

let keyDir: string;
let keys: LocalDataKeys;
beforeAll(async () => {
  keyDir = await mkdtemp(join(tmpdir(), 'nvcf-helm-secrets-'));
  const file = join(keyDir, 'secrets.key');
  await writeFile(file, LocalDataKeys.newKeyFileContent());
  process.env[ENV.secretsLocalKeyFile] = file;
  resetDataKeyProvider();
  keys = LocalDataKeys.fromFile(file);
});
afterAll(async () => {
  delete process.env[ENV.secretsLocalKeyFile];
  resetDataKeyProvider();
  await rm(keyDir, { recursive: true, force: true });
});

let api: FakeKubernetes;
let helm: FakeHelm;
let versions: FunctionVersionRecord[];
let controller: Controller;
let runtime: KubernetesRuntime;
beforeEach(() => {
  api = new FakeKubernetes();
  helm = new FakeHelm(RENDERINGS);
  versions = [];
  runtime = new KubernetesRuntime({ ...CONTEXT, api, helm });
  controller = new Controller(runtime, {}, async () => versions);
});

const helmVersion = async (secrets?: SecretEntry[], owner = testVersion()) => {
  const version = testVersion({ containerImage: undefined, containerArgs: undefined, helmChart: CHART, helmChartServiceName: 'echo' });
  return secrets ? { ...version, secrets: await sealSecrets(secrets, owner, keys) } : version;
};
const secretsFile = () => {
  const secret = api.objects.get(SECRET) as { data: Record<string, string> } | undefined;
  return secret ? JSON.parse(Buffer.from(secret.data['secrets.json']!, 'base64').toString('utf8')) : undefined;
};

describe('Helm function secrets', () => {
  it('are written into nvcf-secrets in the chart’s namespace, after the binding that allows it and in the pass that installs the chart', async () => {
    versions = [await helmVersion([{ name: 'TOKEN', value: MARKER }, { name: 'cfg', value: { a: 1 } }])];
    await controller.reconcile();
    expect(secretsFile()).toEqual({ TOKEN: MARKER, cfg: { a: 1 } });
    expect(api.objects.get(SECRET)).toMatchObject({ type: 'Opaque', metadata: { labels: { [K8S.workloadLabel]: KEY } } });
    expect(api.applied.indexOf(SECRET)).toBeGreaterThan(api.applied.lastIndexOf(`RoleBinding/${CHART_NAMESPACE}/${K8S.controllerName}`));
    expect(helm.calls).toEqual([`template ${NAME}`, `upgrade ${NAME}`]);
  });

  it('are {} for a version without secrets', async () => {
    versions = [await helmVersion()];
    await controller.reconcile();
    expect(secretsFile()).toEqual({});
  });

  it('are rewritten when they change, without touching the worker’s pods', async () => {
    versions = [await helmVersion([{ name: 'TOKEN', value: 'first' }])];
    await controller.reconcile();
    const template = JSON.stringify((api.get('Deployment', K8S.functionsNamespace, NAME) as any).spec.template);
    await controller.reconcile();
    expect(api.applied.filter((key) => key === SECRET)).toHaveLength(1);

    versions = [await helmVersion([{ name: 'TOKEN', value: MARKER }])];
    await controller.reconcile();
    expect(secretsFile()).toEqual({ TOKEN: MARKER });
    expect(JSON.stringify((api.get('Deployment', K8S.functionsNamespace, NAME) as any).spec.template)).toBe(template);
  });

  it('that do not open for the version are its failure, naming no value, and the chart is not installed', async () => {
    const other = { ...testVersion(), versionId: 'a0a0a0a0-0000-4000-8000-00000000000f' };
    versions = [await helmVersion([{ name: 'TOKEN', value: MARKER }], other)];
    await controller.reconcile();
    const failure = (await runtime.observe()).get(KEY)?.failure ?? '';
    expect(failure).toMatch(/cannot be opened/);
    expect(failure).not.toContain(MARKER);
    expect(helm.calls).toEqual([`template ${NAME}`]);
    expect(api.objects.get(SECRET)).toBeUndefined();
  });

  it('are no Kubernetes object for a container function: its pods get the file', async () => {
    versions = [{ ...testVersion(), secrets: await sealSecrets([{ name: 'TOKEN', value: MARKER }], testVersion(), keys) }];
    await controller.reconcile();
    expect([...api.objects.keys()].filter((key) => key.startsWith('Secret/'))).toEqual([]);
    expect(JSON.stringify([...api.objects.values()])).not.toContain(MARKER);
  });
});

describe('Helm function image pulls from NGC', () => {
  const PULL_SECRET = `Secret/${CHART_NAMESPACE}/${K8S.helmNgcPullSecret}`;

  it('write the owner’s NGC login to nvcf-ngc-pull in the chart’s namespace and name it to the chart as ngcImagePullSecretName, as NVCF does', async () => {
    runtime = new KubernetesRuntime({ ...CONTEXT, api, helm, chartPullLogin: async () => ({ host: 'nvcr.io', username: '$oauthtoken', password: 'ngc-pull-key' }) });
    controller = new Controller(runtime, {}, async () => versions);
    versions = [await helmVersion()];
    await controller.reconcile();
    const secret = api.objects.get(PULL_SECRET) as unknown as { type: string; data: Record<string, string> };
    expect(secret.type).toBe('kubernetes.io/dockerconfigjson');
    expect(JSON.parse(Buffer.from(secret.data['.dockerconfigjson']!, 'base64').toString('utf8')).auths['nvcr.io']).toMatchObject({ username: '$oauthtoken', password: 'ngc-pull-key' });
    expect(helm.installed.get(`${CHART_NAMESPACE}/${NAME}`)!.values).toMatchObject({ ngcImagePullSecretName: K8S.helmNgcPullSecret });
  });

  it('add neither the Secret nor the value when the owner has no NGC credential for containers', async () => {
    runtime = new KubernetesRuntime({ ...CONTEXT, api, helm, chartPullLogin: async () => undefined });
    controller = new Controller(runtime, {}, async () => versions);
    versions = [await helmVersion()];
    await controller.reconcile();
    expect(api.objects.get(PULL_SECRET)).toBeUndefined();
    expect(helm.installed.get(`${CHART_NAMESPACE}/${NAME}`)!.values).not.toHaveProperty('ngcImagePullSecretName');
  });
});
