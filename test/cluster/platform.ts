/** What the CDK app puts on the cluster, applied to a test control plane, and clients of its identities. */
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import * as k8s from '@kubernetes/client-node';
import type { ControlPlane } from './control-plane';
import { templateObjects } from './template-objects';

/** The controller's ServiceAccount (K8S.controllerServiceAccount in K8S.systemNamespace). */
export const CONTROLLER = { name: 'nvcf-gpu-agent', namespace: 'nvcf-system' };

/** Retries while the API server's caches (RBAC, policies, service accounts) catch up with objects just written. */
export async function eventually<T>(action: () => Promise<T>, timeoutMs = 15_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      return await action();
    } catch (error) {
      if (Date.now() > deadline) throw error;
      await new Promise((resolve) => setTimeout(resolve, 250));
    }
  }
}

/** cluster-admin's client configuration. */
export function adminConfig(plane: ControlPlane): k8s.KubeConfig {
  const config = new k8s.KubeConfig();
  config.loadFromFile(plane.kubeconfigPath);
  return config;
}

/** Creates the template's Kubernetes objects (namespaces first, as the CDK app orders them); returns them. */
export async function applyTemplateObjects(admin: k8s.KubeConfig): Promise<ReturnType<typeof templateObjects>> {
  const objects = k8s.KubernetesObjectApi.makeApiClient(admin);
  const deployed = templateObjects();
  const ordered = [...deployed].sort((a, b) => Number(b.kind === 'Namespace') - Number(a.kind === 'Namespace'));
  for (const object of ordered) await eventually(() => objects.create(object as k8s.KubernetesObject));
  return deployed;
}

/** A client configuration that acts with a fresh token of the given ServiceAccount (TokenRequest API). */
export async function serviceAccountConfig(plane: ControlPlane, admin: k8s.KubeConfig, account: { name: string; namespace: string }): Promise<k8s.KubeConfig> {
  const core = admin.makeApiClient(k8s.CoreV1Api);
  const token = await eventually(() =>
    core.createNamespacedServiceAccountToken({ ...account, body: { spec: { audiences: ['https://kubernetes.default.svc'], expirationSeconds: 3600 } } }),
  );
  const config = new k8s.KubeConfig();
  config.loadFromOptions({
    clusters: [{ name: 'test', server: plane.server, caFile: `${plane.dir}/ca.crt` }],
    users: [{ name: account.name, token: token.status?.token }],
    contexts: [{ name: 'test', cluster: 'test', user: account.name }],
    currentContext: 'test',
  });
  return config;
}

/** A node as the CDK app's GPU nodegroups register them (kwok runs it): GPU label, instance type, GPU taint and capacity. */
export function gpuNode(name: string, gpu: string, instanceType: string, gpus: number): k8s.V1Node {
  return {
    metadata: {
      name,
      annotations: { 'kwok.x-k8s.io/node': 'fake' },
      labels: {
        'nvcf.io/gpu': gpu,
        'node.kubernetes.io/instance-type': instanceType,
        'kubernetes.io/arch': 'amd64',
        'kubernetes.io/os': 'linux',
        'kubernetes.io/hostname': name,
        type: 'kwok',
      },
    },
    spec: { taints: [{ key: 'nvidia.com/gpu', value: 'true', effect: 'NoSchedule' }] },
    status: {
      capacity: { cpu: '4', memory: '16Gi', pods: '110', 'nvidia.com/gpu': String(gpus) },
      allocatable: { cpu: '4', memory: '16Gi', pods: '110', 'nvidia.com/gpu': String(gpus) },
    },
  };
}

/** A node of the system nodegroup (kwok runs it), where the controller and Helm functions' workers run. */
export function systemNode(name: string): k8s.V1Node {
  return {
    metadata: {
      name,
      annotations: { 'kwok.x-k8s.io/node': 'fake' },
      labels: { 'nvcf.io/node-role': 'system', 'kubernetes.io/arch': 'amd64', 'kubernetes.io/os': 'linux', 'kubernetes.io/hostname': name, type: 'kwok' },
    },
    status: { capacity: { cpu: '4', memory: '16Gi', pods: '110' }, allocatable: { cpu: '4', memory: '16Gi', pods: '110' } },
  };
}

/** Creates the nodes and waits until kwok reports every one Ready. */
export async function createReadyNodes(admin: k8s.KubeConfig, nodes: k8s.V1Node[]): Promise<void> {
  const core = admin.makeApiClient(k8s.CoreV1Api);
  for (const node of nodes) await core.createNode({ body: node });
  await eventually(async () => {
    const listed = await core.listNode();
    const ready = listed.items.filter((n) => n.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True'));
    if (ready.length !== nodes.length) throw new Error(`${ready.length} of ${nodes.length} fake nodes Ready`);
  }, 60_000);
}

/** KEDA's CRDs (ScaledObject, TriggerAuthentication) from test/cluster/keda, applied and Established. */
export async function installKedaCrds(admin: k8s.KubeConfig): Promise<void> {
  const objects = k8s.KubernetesObjectApi.makeApiClient(admin);
  for (const file of ['keda.sh_scaledobjects.yaml', 'keda.sh_triggerauthentications.yaml']) {
    for (const crd of k8s.loadAllYaml(readFileSync(join(import.meta.dirname, 'keda', file), 'utf8')) as k8s.KubernetesObject[]) await objects.create(crd);
  }
  const extensions = admin.makeApiClient(k8s.ApiextensionsV1Api);
  await eventually(async () => {
    for (const name of ['scaledobjects.keda.sh', 'triggerauthentications.keda.sh']) {
      const crd = await extensions.readCustomResourceDefinition({ name });
      if (!crd.status?.conditions?.some((c) => c.type === 'Established' && c.status === 'True')) throw new Error(`${name} not established`);
    }
  }, 30_000);
}

/** Writes a token client configuration (serviceAccountConfig's) to a kubeconfig file, for helm and for clients that load KUBECONFIG. */
export function writeKubeconfig(config: k8s.KubeConfig, path: string): string {
  const cluster = config.getCurrentCluster()!;
  const user = config.getCurrentUser()!;
  writeFileSync(
    path,
    JSON.stringify({
      apiVersion: 'v1',
      kind: 'Config',
      clusters: [{ name: 'test', cluster: { server: cluster.server, 'certificate-authority': cluster.caFile } }],
      users: [{ name: user.name, user: { token: user.token } }],
      contexts: [{ name: 'test', context: { cluster: 'test', user: user.name } }],
      'current-context': 'test',
    }),
  );
  return path;
}
