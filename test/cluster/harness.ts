/**
 * The controller loop on a real control plane, shared by the cluster suite's
 * controller tests: the emulators' stack as on EKS (deployment routes,
 * DynamoDB, SQS; EKS's own API is test/support/fake-eks.ts),
 * a control plane with the template's objects, KEDA's CRDs and kwok nodes
 * shaped like the nodegroups, our Controller with the Kubernetes runtime
 * acting with its own ServiceAccount's token (helm too), and a real gpu-agent
 * worker for each Ready pod (pod-workers.ts). KEDA's operator is not built
 * here (its module is refused by the Go proxy): where KEDA's HPA would set
 * replicas, tests set them through the scale subresource, as the HPA does.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as k8s from '@kubernetes/client-node';
import { getVersion } from '../../core/functions';
import type { FunctionVersionRecord, GpuSpecification } from '../../core/model';
import { ENV, K8S } from '../../core/names';
import { ClientNodeApi, type KubernetesApi } from '../../gpu-agent/controller/k8s/api';
import { HelmCli } from '../../gpu-agent/controller/k8s/helm';
import { agentEnvironment, workloadName } from '../../gpu-agent/controller/k8s/objects';
import { KubernetesRuntime } from '../../gpu-agent/controller/kubernetes';
import { Controller } from '../../gpu-agent/controller/reconcile';
import { startFakeEks, type FakeNodegroup } from '../support/fake-eks';
import { helmBinary } from '../support/helm-binary';
import { CONTEXT } from '../support/k8s-fixtures';
import { startEcho, stopAllProcesses } from '../support/processes';
import { newAccount, startTestStack, type TestStack } from '../support/stack';
import { startControlPlane, type ControlPlane } from './control-plane';
import { adminConfig, applyTemplateObjects, CONTROLLER, createReadyNodes, eventually, gpuNode, installKedaCrds, serviceAccountConfig, systemNode, writeKubeconfig } from './platform';
import { PodWorkers } from './pod-workers';

const CLUSTER = 'nvcf-gpus';
/** The CDK app's nodegroups as EKS describes them to the deployment routes; kwok's nodes below are theirs. */
const NODEGROUPS: FakeNodegroup[] = [
  { name: 'system', labels: { 'nvcf.io/node-role': 'system' }, instanceTypes: ['m7g.large'], scaling: { minSize: 1, maxSize: 2, desiredSize: 1 } },
  { name: 'gpu-l40s', labels: { 'nvcf.io/gpu': 'L40S' }, instanceTypes: ['g6e.xlarge'], scaling: { minSize: 0, maxSize: 2, desiredSize: 0 } },
  { name: 'gpu-l4', labels: { 'nvcf.io/gpu': 'L4' }, instanceTypes: ['g6.xlarge'], scaling: { minSize: 0, maxSize: 1, desiredSize: 0 } },
  // Offered by the platform, but no node of it joins the cluster.
  { name: 'gpu-a10g', labels: { 'nvcf.io/gpu': 'A10G' }, instanceTypes: ['g5.xlarge'], scaling: { minSize: 0, maxSize: 1, desiredSize: 0 } },
];
export const NS = K8S.functionsNamespace;

/** Everything a workload may leave in nvcf-functions, by kind, when nothing is left. */
export const NOTHING_LEFT = { Deployment: [], ReplicaSet: [], Pod: [], ScaledObject: [], TriggerAuthentication: [] };

export const isReady = (pod: k8s.V1Pod): boolean => !pod.metadata?.deletionTimestamp && Boolean(pod.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True'));

export interface Harness {
  stack: TestStack;
  plane: ControlPlane;
  admin: k8s.KubeConfig;
  owner: { accountId: string; key: string };
  pods: PodWorkers;
  controller: Controller;
  /** The controller's own client (its ServiceAccount), unwrapped. */
  controllerApi: ClientNodeApi;
  /** Workload keys applied and step errors of the last `reconcile()`. */
  applied: string[];
  errors: string[];
  /** Added to the runtime's clock, to pass the graces of failures.ts without waiting for them. */
  clockSkewMs: number;
  /** Another controller over the same cluster and tables (a second replica, or one restarted), reporting step errors to `errors`. */
  newController(errors: string[]): Controller;
  /** One controller pass; throws on any step error unless `allowErrors`. */
  reconcile(options?: { allowErrors?: boolean }): Promise<void>;
  deploy(version: FunctionVersionRecord, specification: Partial<GpuSpecification>, method?: 'POST' | 'PUT'): Promise<void>;
  undeploy(version: FunctionVersionRecord): Promise<void>;
  statusOf(version: FunctionVersionRecord): Promise<FunctionVersionRecord>;
  podsOf(key: string, namespace?: string): Promise<k8s.V1Pod[]>;
  /** What KEDA's HPA does: set the Deployment's replicas through its scale subresource. */
  scaleAsKeda(key: string, replicas: number): Promise<void>;
  /** What the workload left in nvcf-functions, by kind: what the controller creates and what Kubernetes makes from it. */
  leftInFunctionsNamespace(key: string): Promise<Record<string, string[]>>;
  stop(): Promise<void>;
}

const deploymentPath = (version: Pick<FunctionVersionRecord, 'functionId' | 'versionId'>) => `/v2/nvcf/deployments/functions/${version.functionId}/versions/${version.versionId}`;

export async function startHarness(options: { wrapApi?: (api: KubernetesApi) => KubernetesApi } = {}): Promise<Harness> {
  // EKS's API is the one fake left here: the routes read the GPU offers from it and size nodegroups through it.
  const eks = await startFakeEks(CLUSTER, NODEGROUPS);
  const stack = await startTestStack({ [ENV.clusterName]: CLUSTER, AWS_ENDPOINT_URL_EKS: eks.url });
  delete process.env[ENV.gpus];
  const owner = await newAccount();
  const plane = await startControlPlane();
  const admin = adminConfig(plane);
  await applyTemplateObjects(admin);
  await installKedaCrds(admin);
  plane.startFakeNodes();
  await createReadyNodes(admin, [gpuNode('l40s-a', 'L40S', 'g6e.xlarge', 1), gpuNode('l40s-b', 'L40S', 'g6e.xlarge', 1), gpuNode('l4-a', 'L4', 'g6.xlarge', 1), systemNode('system-a')]);
  // As in its pod: the controller's client and helm both load the ServiceAccount's credentials.
  process.env.KUBECONFIG = writeKubeconfig(await serviceAccountConfig(plane, admin, CONTROLLER), join(plane.dir, 'controller.kubeconfig'));
  const controllerApi = new ClientNodeApi();
  const echo = await startEcho();
  const scratch = mkdtempSync(join(tmpdir(), 'nvcf-pods-'));
  const pods = new PodWorkers(admin, stack.env, echo.url, scratch);
  pods.start();

  const apps = admin.makeApiClient(k8s.AppsV1Api);
  const core = admin.makeApiClient(k8s.CoreV1Api);
  const custom = admin.makeApiClient(k8s.CustomObjectsApi);
  const podsOf = async (key: string, namespace = NS) => (await core.listNamespacedPod({ namespace, labelSelector: `${K8S.workloadLabel}=${key}` })).items;
  const names = (items: { metadata?: { name?: string } }[]) => items.map((item) => item.metadata!.name!);

  const harness: Harness = {
    stack,
    plane,
    admin,
    owner,
    pods,
    controllerApi,
    controller: undefined as unknown as Controller,
    newController: undefined as unknown as Harness['newController'],
    applied: [],
    errors: [],
    clockSkewMs: 0,
    async reconcile({ allowErrors = false } = {}) {
      harness.errors.length = 0;
      harness.applied.length = 0;
      await harness.controller.reconcile();
      if (!allowErrors && harness.errors.length > 0) throw new Error(`controller pass failed: ${harness.errors.join('; ')}`);
    },
    async deploy(version, specification, method = 'POST') {
      const spec = { gpu: 'L40S', instanceType: 'g6e.xlarge', minInstances: 1, maxInstances: 1, maxRequestConcurrency: 1, ...specification };
      const response = await stack.call(method, deploymentPath(version), { key: owner.key, body: { deploymentSpecifications: [spec] } });
      if (response.statusCode !== 200) throw new Error(`${method} deployment: ${response.statusCode} ${response.body.toString()}`);
    },
    async undeploy(version) {
      const response = await stack.call('DELETE', deploymentPath(version), { key: owner.key });
      if (response.statusCode !== 200) throw new Error(`DELETE deployment: ${response.statusCode} ${response.body.toString()}`);
    },
    async statusOf(version) {
      return (await getVersion(version.functionId, version.versionId))!;
    },
    podsOf,
    async scaleAsKeda(key, replicas) {
      await apps.patchNamespacedDeploymentScale({ name: workloadName(key), namespace: NS, body: { spec: { replicas } } }, k8s.setHeaderOptions('Content-Type', k8s.PatchStrategy.MergePatch));
    },
    async leftInFunctionsNamespace(key) {
      const labelSelector = `${K8S.workloadLabel}=${key}`;
      const kedaList = async (plural: string) =>
        names(((await custom.listNamespacedCustomObject({ group: 'keda.sh', version: 'v1alpha1', namespace: NS, plural, labelSelector })) as { items: { metadata?: { name?: string } }[] }).items);
      return {
        Deployment: names((await apps.listNamespacedDeployment({ namespace: NS, labelSelector })).items),
        ReplicaSet: names((await apps.listNamespacedReplicaSet({ namespace: NS, labelSelector })).items),
        Pod: names(await podsOf(key)),
        ScaledObject: await kedaList('scaledobjects'),
        TriggerAuthentication: await kedaList('triggerauthentications'),
      };
    },
    async stop() {
      await pods.stop();
      await stopAllProcesses();
      await plane.stop();
      await stack.stop();
      await eks.close();
      rmSync(scratch, { recursive: true, force: true });
    },
  };
  const runtimeOptions = {
    ...CONTEXT,
    // The agents' tables, bucket and region are the emulators', as the CDK app gives the controller its stack's.
    agentEnv: agentEnvironment(process.env),
    api: options.wrapApi ? options.wrapApi(controllerApi) : controllerApi,
    helm: new HelmCli(helmBinary()),
    now: () => Date.now() + harness.clockSkewMs,
  };
  const describe = (step: string, error: unknown) => `${step}: ${(error as { body?: string }).body ?? String(error)}`;
  harness.controller = new Controller(new KubernetesRuntime(runtimeOptions), {
    applied: (workload) => harness.applied.push(workload.key),
    error: (step, error) => harness.errors.push(describe(step, error)),
  });
  harness.newController = (errors) => new Controller(new KubernetesRuntime({ ...runtimeOptions, api: controllerApi }), { error: (step, error) => errors.push(describe(step, error)) });
  // The first passes may meet caches still filling (RBAC, a CRD's storage answering 429): start from a clean pass.
  await eventually(() => harness.reconcile(), 30_000);
  return harness;
}
