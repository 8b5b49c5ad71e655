/**
 * The shared Controller over the Kubernetes runtime, against an in-memory
 * cluster: update, drift correction, Helm release decisions and retries, and
 * the pod and Deployment failures that become a version's healthInfo. Create,
 * no-op passes, delete, chart installs and reinstalls run on a real API server
 * in the cluster suite (test/cluster/controller-loop.test.ts, helm-functions.test.ts).
 */
import { beforeEach, describe, expect, it } from 'vitest';
import type { FunctionVersionRecord } from '../../core/model';
import { K8S } from '../../core/names';
import type { KubernetesObject } from '../../gpu-agent/controller/k8s/api';
import { CRASH_LOOP_RESTARTS, IMAGE_PULL_GRACE_MS, POD_CREATION_GRACE_MS, UNSCHEDULABLE_GRACE_MS, workloadFailure } from '../../gpu-agent/controller/k8s/failures';
import { HELM_RETRY, HelmError } from '../../gpu-agent/controller/k8s/helm';
import { KubernetesRuntime } from '../../gpu-agent/controller/kubernetes';
import { Controller } from '../../gpu-agent/controller/reconcile';
import { FakeHelm, FakeKubernetes } from '../support/fake-kubernetes';
import { workloadFingerprint } from '../../gpu-agent/controller/plan';
import { CONTEXT, testVersion, workloadOf } from '../support/k8s-fixtures';

type Pod = KubernetesObject;

const NS = K8S.functionsNamespace;
const KEY = `${testVersion().versionId}-0`;
const NAME = `nvcf-${KEY}`;

const ECHO_CHART = 'https://charts.example.com/echo-0.1.0.tgz';
const ROGUE_CHART = 'https://charts.example.com/rogue-0.1.0.tgz';
const RENDERINGS = {
  [ECHO_CHART]: ['kind: Deployment\nmetadata:\n  name: echo', 'kind: Service\nmetadata:\n  name: echo'].join('\n---\n'),
  [ROGUE_CHART]: ['kind: Deployment\nmetadata:\n  name: echo', 'kind: ClusterRole\nmetadata:\n  name: everything'].join('\n---\n'),
};

let api: FakeKubernetes;
let helm: FakeHelm;
let clock: number;
let versions: FunctionVersionRecord[];
let errors: string[];
let runtime: KubernetesRuntime;
let controller: Controller;

beforeEach(() => {
  api = new FakeKubernetes();
  helm = new FakeHelm(RENDERINGS);
  clock = Date.parse('2026-03-01T12:00:00Z');
  versions = [];
  errors = [];
  runtime = new KubernetesRuntime({ ...CONTEXT, api, helm, resyncSeconds: 600, now: () => clock });
  controller = new Controller(
    runtime,
    { error: (step, error) => errors.push(`${step}: ${String(error)}`) },
    async () => versions,
  );
});

const deployment = () => api.get('Deployment', NS, NAME) as any;
const scaledObject = () => api.get('ScaledObject', NS, NAME) as any;
const image = () => deployment().spec.template.spec.containers.find((c: { name: string }) => c.name === 'inference').image;

describe('container functions', () => {
  it('re-applies a version whose deployment changed (PUT): new limits on the ScaledObject, new image on the Deployment', async () => {
    versions = [testVersion()];
    await controller.reconcile();
    versions = [testVersion({ containerImage: 'nvcr.io/example/echo:2.0' }, { maxInstances: 7 })];
    await controller.reconcile();
    expect(scaledObject().spec.maxReplicaCount).toBe(7);
    expect(image()).toBe('nvcr.io/example/echo:2.0');
  });

  it('moves a specification to another GPU type when the deployment asks for one', async () => {
    versions = [testVersion()];
    await controller.reconcile();
    versions = [testVersion({}, { gpu: 'L4', instanceType: 'g6.xlarge' })];
    await controller.reconcile();
    expect(deployment().spec.template.spec.nodeSelector[K8S.gpuLabel]).toBe('L4');
  });

  it('puts back an object deleted behind its back on the next pass', async () => {
    versions = [testVersion()];
    await controller.reconcile();
    await api.delete('ScaledObject', NS, NAME);
    await controller.reconcile();
    expect(scaledObject()).toBeDefined();
  });

  it('re-applies an object whose fingerprint annotation was changed', async () => {
    versions = [testVersion()];
    await controller.reconcile();
    deployment().metadata.annotations[K8S.fingerprintAnnotation] = 'edited';
    await controller.reconcile();
    expect(deployment().metadata.annotations[K8S.fingerprintAnnotation]).not.toBe('edited');
  });

  it('undoes a hand edit that kept the annotation at the next resync, not before', async () => {
    versions = [testVersion()];
    await controller.reconcile();
    deployment().spec.template.spec.containers[0].image = 'attacker/image:latest';
    clock += 60_000;
    await controller.reconcile();
    expect(image()).toBe('attacker/image:latest');
    clock += 600_000;
    await controller.reconcile();
    expect(image()).toBe('nvcr.io/example/echo:1.0');
  });

  it('leaves other controllers’ objects in the namespace alone', async () => {
    await api.apply({ apiVersion: 'apps/v1', kind: 'Deployment', metadata: { name: 'someone-else', namespace: NS, labels: { app: 'x' } } });
    await controller.reconcile();
    expect(api.get('Deployment', NS, 'someone-else')).toBeDefined();
  });
});

describe('failure surfacing', () => {
  const podLabels = { 'app.kubernetes.io/managed-by': 'nvcf-controller', [K8S.workloadLabel]: KEY };
  const crashLooping = (restartCount: number) => ({
    containerStatuses: [
      { name: 'inference', image: 'nvcr.io/example/echo:1.0', restartCount, state: { waiting: { reason: 'CrashLoopBackOff' } }, lastState: { terminated: { exitCode: 137, reason: 'OOMKilled' } } },
      { name: 'worker', restartCount: 0, state: { running: {} } },
    ],
  });

  // Reporting the failure (ERROR + healthInfo in DynamoDB) is in test/integration/gpu-agent-kubernetes.test.ts.
  it('observes a crash-looping function container as the workload’s failure, naming the restarts, exit and the logs command', async () => {
    versions = [testVersion()];
    await controller.reconcile();
    api.addPod(`${NAME}-abc`, NS, podLabels, crashLooping(CRASH_LOOP_RESTARTS));
    const observed = (await runtime.observe()).get(KEY)!;
    expect(observed.fingerprint).toBe(workloadFingerprint(workloadOf(testVersion())));
    expect(observed.failure).toContain('container "inference" keeps crashing: restarted 3 times, last exit code 137, OOMKilled');
    expect(observed.failure).toContain(`kubectl logs -n ${NS} ${NAME}-abc -c inference --previous`);
  });

  it('does not call one or two restarts a failure', async () => {
    versions = [testVersion()];
    await controller.reconcile();
    api.addPod(`${NAME}-abc`, NS, podLabels, crashLooping(CRASH_LOOP_RESTARTS - 1));
    expect((await runtime.observe()).get(KEY)!.failure).toBeUndefined();
  });

  const at = (ageMs: number) => new Date(clock - ageMs).toISOString();
  const pod = (status: Record<string, unknown>, options: { ageMs?: number; gpu?: string } = {}): Pod => ({
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name: 'p', namespace: NS, creationTimestamp: at(options.ageMs ?? 0) },
    spec: { nodeSelector: options.gpu ? { [K8S.gpuLabel]: options.gpu } : {} },
    status,
  });
  const failureOf = (pods: Pod[], more: { minInstances?: number; deployment?: KubernetesObject; chartPods?: Pod[] } = {}) =>
    workloadFailure({ pods, chartPods: more.chartPods ?? [], minInstances: more.minInstances ?? 1, ...(more.deployment ? { deployment: more.deployment } : {}) }, clock);
  const pulling = (reason: string, ageMs: number, container: 'init' | 'app' = 'app', initializedAgoMs = ageMs) =>
    pod(
      {
        conditions: [
          { type: 'PodScheduled', status: 'True', lastTransitionTime: at(ageMs) },
          ...(container === 'app' ? [{ type: 'Initialized', status: 'True', lastTransitionTime: at(initializedAgoMs) }] : []),
        ],
        [container === 'app' ? 'containerStatuses' : 'initContainerStatuses']: [
          { name: container === 'app' ? 'inference' : 'fetch-artifacts', image: 'nvcr.io/nope:1', state: { waiting: { reason, message: 'Back-off pulling image "nvcr.io/nope:1"' } } },
        ],
      },
      { ageMs },
    );
  const unschedulable = (ageMs: number) =>
    pod({ conditions: [{ type: 'PodScheduled', status: 'False', reason: 'Unschedulable', message: '0/3 nodes are available: 3 Insufficient nvidia.com/gpu.' }] }, { ageMs, gpu: 'L40S' });
  const ready = () => pod({ conditions: [{ type: 'PodScheduled', status: 'True' }, { type: 'Ready', status: 'True' }], containerStatuses: [{ name: 'inference', restartCount: 0, state: { running: {} } }] });

  it('names the image a pod cannot pull once pulling has failed for a while', () => {
    expect(failureOf([pulling('ImagePullBackOff', IMAGE_PULL_GRACE_MS + 1000)])).toMatch(/^cannot pull image "nvcr.io\/nope:1" of container "inference" \(ImagePullBackOff: Back-off pulling/);
  });

  it('does not call a registry hiccup a failure: a fresh pull error waits for kubelet’s retries', () => {
    expect(failureOf([pulling('ErrImagePull', 30_000)])).toBeUndefined();
    expect(failureOf([pulling('ImagePullBackOff', IMAGE_PULL_GRACE_MS - 1000)])).toBeUndefined();
  });

  it('counts the pull of the function container from when the init container finished, not from pod creation', () => {
    const afterLongDownload = pulling('ImagePullBackOff', 30 * 60_000, 'app', 60_000);
    expect(failureOf([afterLongDownload])).toBeUndefined();
    expect(failureOf([pulling('ImagePullBackOff', IMAGE_PULL_GRACE_MS + 1000, 'init')])).toContain('container "fetch-artifacts"');
  });

  it('reports a pull the registry refuses (401/403: a wrong or missing credential) at once, naming the registry and the status', () => {
    const refused = (message: string) =>
      pod({ conditions: [{ type: 'PodScheduled', status: 'True', lastTransitionTime: at(1000) }, { type: 'Initialized', status: 'True', lastTransitionTime: at(1000) }], containerStatuses: [{ name: 'inference', image: 'nvcr.io/my-org/echo:1', state: { waiting: { reason: 'ErrImagePull', message } } }] }, { ageMs: 1000 });
    const failure = failureOf([refused('failed to pull and unpack image "nvcr.io/my-org/echo:1": failed to resolve reference "nvcr.io/my-org/echo:1": unexpected status from HEAD request to https://nvcr.io/v2/my-org/echo/manifests/1: 401 Unauthorized')]);
    expect(failure).toMatch(/^cannot pull image "nvcr.io\/my-org\/echo:1" of container "inference": the registry nvcr.io answered HTTP 401 Unauthorized \(ErrImagePull: /);
    expect(failure).toContain('registry credential for nvcr.io listing CONTAINER');
    expect(failureOf([refused('failed to authorize: failed to fetch anonymous token: unexpected status: 403 Forbidden')])).toContain('the registry nvcr.io answered HTTP 403 Forbidden');
    // Anything else is still given kubelet's retries first.
    expect(failureOf([refused('failed to do request: dial tcp: i/o timeout')])).toBeUndefined();
  });

  it('reports a malformed image name at once', () => {
    expect(failureOf([pulling('InvalidImageName', 1000)])).toContain('InvalidImageName');
  });

  it('reports the fetcher’s own reason when models cannot be downloaded', () => {
    const fetcher = pod({ initContainerStatuses: [{ name: 'fetch-artifacts', restartCount: 3, state: { waiting: { reason: 'CrashLoopBackOff' } }, lastState: { terminated: { exitCode: 1, reason: 'Error', message: '"weights" has URI "ngc://x", which is not an s3:// URI' } } }] });
    expect(failureOf([fetcher])).toBe(`downloading the version's models and resources failed 3 times (exit code 1): "weights" has URI "ngc://x", which is not an s3:// URI`);
  });

  it('calls a pod unschedulable for lack of GPUs a failure only after the grace for a new node', () => {
    expect(failureOf([unschedulable(UNSCHEDULABLE_GRACE_MS - 1000)])).toBeUndefined();
    const failure = failureOf([unschedulable(UNSCHEDULABLE_GRACE_MS + 1000)]);
    expect(failure).toContain('Insufficient nvidia.com/gpu');
    expect(failure).toContain('GPU type L40S');
    expect(failure).toContain('raise its maxNodes');
  });

  it('does not fail a version that serves its minInstances when KEDA asks for more instances than the nodes hold', () => {
    const waiting = unschedulable(UNSCHEDULABLE_GRACE_MS + 1000);
    expect(failureOf([ready(), ready(), waiting], { minInstances: 2 })).toBeUndefined();
    expect(failureOf([ready(), waiting], { minInstances: 2 })).toContain('waited');
    expect(failureOf([waiting], { minInstances: 0 })).toContain('waited');
  });

  it('fails a Helm function whose chart pods wait for a node, whatever its workers do', () => {
    expect(failureOf([ready()], { chartPods: [unschedulable(UNSCHEDULABLE_GRACE_MS + 1000)] })).toContain('waited');
  });

  describe('from the Deployment’s status', () => {
    const withCondition = (condition: Record<string, unknown>): KubernetesObject => ({
      apiVersion: 'apps/v1',
      kind: 'Deployment',
      metadata: { name: NAME, namespace: NS, labels: { [K8S.workloadLabel]: KEY } },
      status: { conditions: [condition] },
    });
    const rejected = (sinceMs: number) =>
      withCondition({ type: 'ReplicaFailure', status: 'True', reason: 'FailedCreate', message: 'pods "x" is forbidden: violates PodSecurity "baseline:latest": hostPath volumes', lastTransitionTime: at(sinceMs) });
    const stuck = () => withCondition({ type: 'Progressing', status: 'False', reason: 'ProgressDeadlineExceeded', message: `ReplicaSet "${NAME}-abc" has timed out progressing.`, lastTransitionTime: at(0) });

    it('reports pods Kubernetes refuses to create, once the refusal lasts', () => {
      expect(failureOf([], { deployment: rejected(POD_CREATION_GRACE_MS - 1000) })).toBeUndefined();
      expect(failureOf([], { deployment: rejected(POD_CREATION_GRACE_MS + 1000) })).toMatch(/refuses to create the instances' pods \(FailedCreate: pods "x" is forbidden: violates PodSecurity/);
    });

    it('reports a rollout whose instances never became ready', () => {
      expect(failureOf([pod({ conditions: [{ type: 'Ready', status: 'False' }] })], { deployment: stuck() })).toContain('did not become ready in time');
    });

    it('leaves both alone while the version serves its minInstances', () => {
      expect(failureOf([ready()], { deployment: rejected(POD_CREATION_GRACE_MS + 1000) })).toBeUndefined();
      expect(failureOf([ready()], { deployment: stuck() })).toBeUndefined();
    });
  });

  it('reports nothing for running pods', () => {
    expect(failureOf([ready()])).toBeUndefined();
  });

  it('observes a Deployment that cannot create pods as the workload’s failure', async () => {
    versions = [testVersion()];
    await controller.reconcile();
    deployment().status = { conditions: [{ type: 'ReplicaFailure', status: 'True', reason: 'FailedCreate', message: 'exceeded quota', lastTransitionTime: new Date(clock - POD_CREATION_GRACE_MS - 1000) }] };
    expect((await runtime.observe()).get(KEY)!.failure).toContain('exceeded quota');
  });
});

describe('workloads that cannot be built', () => {
  it('runs a model-only version on Triton instead of failing to apply it', async () => {
    versions = [testVersion({ containerImage: undefined, models: [{ name: 'resnet', version: '1', uri: 's3://platform-bucket/models/resnet.tar.gz' }] })];
    await controller.reconcile();
    expect(errors).toEqual([]);
    expect(image()).toBe(CONTEXT.tritonImage);
    expect((await runtime.observe()).get(KEY)).toEqual({ fingerprint: workloadFingerprint(workloadOf(versions[0]!)) });
  });

  it('reports a workload whose objects cannot be made as its failure, instead of throwing on every pass', async () => {
    runtime = new KubernetesRuntime({ ...CONTEXT, agentImages: { amd64: 'x' }, api, helm, now: () => clock });
    controller = new Controller(runtime, { error: (step, error) => errors.push(`${step}: ${String(error)}`) }, async () => versions);
    const version = testVersion({}, { gpu: 'T4G', instanceType: 'g5g.xlarge' });
    versions = [version];
    await controller.reconcile();
    expect(errors).toEqual([]);
    expect(api.applied).toEqual([]);
    expect((await runtime.observe()).get(KEY)).toEqual({ fingerprint: workloadFingerprint(workloadOf(version)), failure: expect.stringContaining('no gpu-agent image for arm64') });
  });
});

describe('Helm functions', () => {
  const helmVersion = (chart = ECHO_CHART, configuration?: Record<string, unknown>) =>
    testVersion({ containerImage: undefined, helmChart: chart, helmChartServiceName: 'echo' }, configuration ? { configuration } : {});
  const chartNamespace = `nvcf-fn-${KEY}`;

  it('refuses a chart with a kind outside the allowed list and reports it as the version’s failure', async () => {
    versions = [helmVersion(ROGUE_CHART)];
    await controller.reconcile();
    expect(helm.calls).toEqual([`template ${NAME}`]);
    expect(deployment()).toBeUndefined();
    const observed = (await runtime.observe()).get(KEY)!;
    expect(observed.fingerprint).toBe(workloadFingerprint(workloadOf(helmVersion(ROGUE_CHART))));
    expect(observed.failure).toContain('ClusterRole "everything" (kind not allowed)');
    await controller.reconcile();
    expect(helm.calls).toEqual([`template ${NAME}`]);
  });

  it('does not upgrade a current release on resync or after a controller restart, but still re-applies the worker’s objects', async () => {
    versions = [helmVersion()];
    await controller.reconcile();
    clock += 600_000;
    const applied = api.applied.length;
    await controller.reconcile();
    expect(api.applied.length).toBeGreaterThan(applied);
    const restarted = new Controller(new KubernetesRuntime({ ...CONTEXT, api, helm, now: () => clock }), {}, async () => versions);
    await restarted.reconcile();
    expect(helm.calls).toEqual([`template ${NAME}`, `upgrade ${NAME}`, `status ${NAME}`, `status ${NAME}`]);
  });

  it('upgrades again when the release has gone or the version changed', async () => {
    versions = [helmVersion(ECHO_CHART, { replicaCount: 1 })];
    await controller.reconcile();
    helm.installed.clear();
    clock += 600_000;
    await controller.reconcile();
    expect(helm.installed.size).toBe(1);
    versions = [helmVersion(ECHO_CHART, { replicaCount: 2 })];
    await controller.reconcile();
    expect(helm.calls.filter((call) => call.startsWith('upgrade'))).toHaveLength(3);
    expect(helm.installed.get(`${chartNamespace}/${NAME}`)!.values).toEqual({ replicaCount: 2 });
  });

  it('retries a transient helm failure with backoff and reports it only once it persists', async () => {
    versions = [helmVersion()];
    helm.errors.upgrade = new HelmError('helm upgrade failed: kubernetes cluster unreachable', true);
    const failures: (string | undefined)[] = [];
    for (let pass = 0; pass < 60 && failures.at(-1) === undefined; pass++) {
      await controller.reconcile();
      failures.push((await runtime.observe()).get(KEY)?.failure);
      clock += 10_000;
    }
    const upgrades = helm.calls.filter((call) => call.startsWith('upgrade')).length;
    expect(upgrades).toBe(HELM_RETRY.reportAfter);
    // Backoff: far fewer upgrades than passes before the failure is reported.
    expect(failures.length).toBeGreaterThan(2 * upgrades);
    expect(failures.at(-1)).toContain('kubernetes cluster unreachable');
    expect(errors).toEqual([]);

    delete helm.errors.upgrade;
    clock += HELM_RETRY.maxDelayMs;
    await controller.reconcile();
    expect(helm.installed.size).toBe(1);
    expect((await runtime.observe()).get(KEY)!.failure).toBeUndefined();
  });

  it('reports a chart that cannot be rendered at once and does not retry it', async () => {
    versions = [helmVersion()];
    helm.errors.template = new HelmError('helm template failed: Error: failed to fetch https://charts.example.com/echo-0.1.0.tgz : 404 Not Found', false);
    await controller.reconcile();
    expect((await runtime.observe()).get(KEY)!.failure).toContain('404 Not Found');
    clock += HELM_RETRY.maxDelayMs;
    await controller.reconcile();
    expect(helm.calls).toEqual([`template ${NAME}`]);
  });

  it('uninstalls the chart on undeploy only once the workers have drained', async () => {
    versions = [helmVersion()];
    await controller.reconcile();
    api.addPod(`${NAME}-w1`, NS, { 'app.kubernetes.io/managed-by': 'nvcf-controller', [K8S.workloadLabel]: KEY }, { containerStatuses: [] });
    versions = [];
    await controller.reconcile();
    expect(deployment()).toBeUndefined();
    expect(helm.installed.size).toBe(1);
    await api.delete('Pod', NS, `${NAME}-w1`);
    await controller.reconcile();
    expect(helm.installed.size).toBe(0);
    expect(api.get('Namespace', undefined, chartNamespace)).toBeUndefined();
  });
});
