/**
 * The shared Controller over the Kubernetes runtime, against an in-memory
 * cluster: create, no-op, update, drift correction, delete, Helm functions,
 * and the pod failures that become a version's healthInfo.
 */
import { beforeEach, describe, expect, it } from 'vitest';
import type { FunctionVersionRecord } from '../../core/model';
import { K8S } from '../../core/names';
import { CRASH_LOOP_RESTARTS, podsFailure, UNSCHEDULABLE_GRACE_MS } from '../../gpu-agent/controller/k8s/failures';
import { KubernetesRuntime } from '../../gpu-agent/controller/kubernetes';
import { Controller } from '../../gpu-agent/controller/reconcile';
import { FakeHelm, FakeKubernetes } from '../support/fake-kubernetes';
import { workloadFingerprint } from '../../gpu-agent/controller/plan';
import { CONTEXT, testVersion, workloadOf } from '../support/k8s-fixtures';

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
  it('creates the TriggerAuthentication, Deployment and ScaledObject of a deployed version', async () => {
    versions = [testVersion()];
    await controller.reconcile();
    expect(api.applied).toEqual([`TriggerAuthentication/${NS}/${NAME}`, `Deployment/${NS}/${NAME}`, `ScaledObject/${NS}/${NAME}`]);
    expect(errors).toEqual([]);
  });

  it('changes nothing on a second pass over the same versions', async () => {
    versions = [testVersion()];
    await controller.reconcile();
    const before = api.applied.length;
    await controller.reconcile();
    expect(api.applied.length).toBe(before);
  });

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

  it('deletes every object of an undeployed version', async () => {
    versions = [testVersion()];
    await controller.reconcile();
    versions = [];
    await controller.reconcile();
    expect([...api.objects.keys()]).toEqual([]);
    expect(api.deleted.sort()).toEqual([`Deployment/${NS}/${NAME}`, `ScaledObject/${NS}/${NAME}`, `TriggerAuthentication/${NS}/${NAME}`].sort());
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

  it('names the image a pod cannot pull', () => {
    const pod = { apiVersion: 'v1', kind: 'Pod', metadata: { name: 'p', namespace: NS }, status: { containerStatuses: [{ name: 'inference', image: 'nvcr.io/nope:1', state: { waiting: { reason: 'ImagePullBackOff', message: 'Back-off pulling image "nvcr.io/nope:1"' } } }] } };
    expect(podsFailure([pod], clock)).toMatch(/^cannot pull image "nvcr.io\/nope:1" of container "inference" \(ImagePullBackOff: Back-off pulling/);
  });

  it('reports the fetcher’s own reason when models cannot be downloaded', () => {
    const pod = {
      apiVersion: 'v1',
      kind: 'Pod',
      metadata: { name: 'p', namespace: NS },
      status: { initContainerStatuses: [{ name: 'fetch-artifacts', restartCount: 3, state: { waiting: { reason: 'CrashLoopBackOff' } }, lastState: { terminated: { exitCode: 1, reason: 'Error', message: '"weights" has URI "ngc://x", which is not an s3:// URI' } } }] },
    };
    expect(podsFailure([pod], clock)).toBe(`downloading the version's models and resources failed 3 times (exit code 1): "weights" has URI "ngc://x", which is not an s3:// URI`);
  });

  it('calls a pod unschedulable for lack of GPUs a failure only after the grace for a new node', () => {
    const pod = (ageMs: number) => ({
      apiVersion: 'v1',
      kind: 'Pod',
      metadata: { name: 'p', namespace: NS, creationTimestamp: new Date(clock - ageMs).toISOString() },
      spec: { nodeSelector: { [K8S.gpuLabel]: 'L40S' } },
      status: { conditions: [{ type: 'PodScheduled', status: 'False', reason: 'Unschedulable', message: '0/3 nodes are available: 3 Insufficient nvidia.com/gpu.' }] },
    });
    expect(podsFailure([pod(UNSCHEDULABLE_GRACE_MS - 1000)], clock)).toBeUndefined();
    const failure = podsFailure([pod(UNSCHEDULABLE_GRACE_MS + 1000)], clock);
    expect(failure).toContain('Insufficient nvidia.com/gpu');
    expect(failure).toContain('GPU type L40S');
    expect(failure).toContain('raise its maxNodes');
  });

  it('reports nothing for running pods', () => {
    const pod = { apiVersion: 'v1', kind: 'Pod', metadata: { name: 'p', namespace: NS }, status: { conditions: [{ type: 'PodScheduled', status: 'True' }], containerStatuses: [{ name: 'inference', restartCount: 0, state: { running: {} } }] } };
    expect(podsFailure([pod], clock)).toBeUndefined();
  });
});

describe('Helm functions', () => {
  const helmVersion = (chart = ECHO_CHART, configuration?: Record<string, unknown>) =>
    testVersion({ containerImage: undefined, helmChart: chart, helmChartServiceName: 'echo' }, configuration ? { configuration } : {});
  const chartNamespace = `nvcf-fn-${KEY}`;

  it('checks the rendered kinds, installs the chart into the version namespace with the configuration as values, then starts the worker', async () => {
    versions = [helmVersion(ECHO_CHART, { replicaCount: 2 })];
    await controller.reconcile();
    expect(helm.calls).toEqual([`template ${NAME}`, `upgrade ${NAME}`]);
    expect(helm.installed.get(`${chartNamespace}/${NAME}`)).toMatchObject({ chart: ECHO_CHART, values: { replicaCount: 2 } });
    expect(api.get('Namespace', undefined, chartNamespace)).toBeDefined();
    expect(deployment().spec.template.spec.containers.map((c: { name: string }) => c.name)).toEqual(['worker']);
    await controller.reconcile();
    expect(helm.calls).toHaveLength(2);
  });

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

  it('reinstalls the chart when its namespace was deleted behind the controller’s back', async () => {
    versions = [helmVersion()];
    await controller.reconcile();
    await api.delete('Namespace', undefined, chartNamespace);
    await controller.reconcile();
    expect(api.get('Namespace', undefined, chartNamespace)).toBeDefined();
    expect(helm.calls).toEqual([`template ${NAME}`, `upgrade ${NAME}`, `template ${NAME}`, `upgrade ${NAME}`]);
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
