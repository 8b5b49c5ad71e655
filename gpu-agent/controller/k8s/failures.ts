/**
 * Why a workload cannot serve, read from its pods and its Deployment's
 * status, in words a user can act on. This becomes the version's
 * `healthInfo` error (and ERROR status) through the shared Controller, and
 * ERROR is final for the deployment: hiccups (a registry that fails one pull,
 * a webhook that times out once) must not get here, and neither must a
 * version that serves but cannot grow (KEDA asked for more instances than
 * the nodegroup holds).
 */
import { K8S } from '../../../core/names';
import { imageRegistryHost } from '../../../core/registry-credentials';
import type { KubernetesObject } from './api';
import { FETCH_ARTIFACTS_CONTAINER, WRITE_SECRETS_CONTAINER } from './objects';

/** Restarts after which a crashing container (or failing init container) is a failure, not a hiccup. */
export const CRASH_LOOP_RESTARTS = 3;
/**
 * How long a pod may wait for a node before that is a failure: a GPU
 * nodegroup scaled up at deploy time needs a few minutes to bring a node.
 */
export const UNSCHEDULABLE_GRACE_MS = 10 * 60_000;
/** How long pulling an image may keep failing (kubelet retries with backoff) before that is a failure. */
export const IMAGE_PULL_GRACE_MS = 5 * 60_000;
/** How long the Deployment may fail to create pods (admission, quota) before that is a failure. */
export const POD_CREATION_GRACE_MS = 2 * 60_000;

const PULL_ERRORS = new Set(['ErrImagePull', 'ImagePullBackOff']);
/**
 * The registry's refusal in kubelet's pull message (containerd words it
 * `... 401 Unauthorized`, `403 Forbidden`, or `... failed to authorize ...`
 * with one of those): a wrong or missing credential, which retries cannot
 * mend, so it is reported at once.
 */
const REFUSED_PULL = /\b(401|403)\b(?: (Unauthorized|Forbidden))?/;
const CREATE_ERRORS = new Set(['CreateContainerConfigError', 'CreateContainerError', 'RunContainerError']);

interface ContainerState {
  waiting?: { reason?: string; message?: string };
  terminated?: { exitCode?: number; reason?: string; message?: string };
}

interface ContainerStatus {
  name: string;
  image?: string;
  restartCount?: number;
  state?: ContainerState;
  lastState?: ContainerState;
}

interface Condition {
  type: string;
  status: string;
  reason?: string;
  message?: string;
  /** A string in JSON, a Date from client-node's built-in kinds. */
  lastTransitionTime?: string | Date;
}

interface PodStatus {
  conditions?: Condition[];
  initContainerStatuses?: ContainerStatus[];
  containerStatuses?: ContainerStatus[];
}

/** What the runtime observed of one workload. */
export interface WorkloadState {
  /** The workload's Deployment in nvcf-functions, if it exists. */
  deployment?: KubernetesObject;
  /** Pods of that Deployment, whose number KEDA sets. */
  pods: readonly KubernetesObject[];
  /** Pods of a Helm function's chart, in the chart's namespace; the chart sets their number. */
  chartPods: readonly KubernetesObject[];
  /** Instances the version keeps ready at least (the ScaledObject's minReplicaCount). */
  minInstances: number;
}

/** Epoch ms of a Kubernetes timestamp; NaN when absent. */
function timeOf(value: string | Date | undefined): number {
  return value instanceof Date ? value.getTime() : Date.parse(value ?? '');
}

const conditionOf = (object: KubernetesObject, type: string) => ((object.status ?? {}) as { conditions?: Condition[] }).conditions?.find((condition) => condition.type === type);

const isReady = (pod: KubernetesObject) => !pod.metadata.deletionTimestamp && conditionOf(pod, 'Ready')?.status === 'True';

/**
 * The workload's failure, or undefined when there is none. What is wrong
 * with a pod's containers counts at once (after its grace); what is only
 * missing capacity (a pod waiting for a node, pods the Deployment cannot
 * create or bring up) counts only while fewer than minInstances instances,
 * or none, are ready: a version that serves is not failed.
 */
export function workloadFailure(state: WorkloadState, now: number): string | undefined {
  for (const pod of [...state.pods, ...state.chartPods]) {
    const failure = containersFailure(pod, now);
    if (failure) return failure;
  }
  // The chart's own pods are not scaled by KEDA: any of them left without a node is a failure.
  for (const pod of state.chartPods) {
    const failure = unschedulable(pod, now);
    if (failure) return failure;
  }
  const ready = state.pods.filter(isReady).length;
  if (ready >= Math.max(1, state.minInstances)) return undefined;
  for (const pod of state.pods) {
    const failure = unschedulable(pod, now);
    if (failure) return failure;
  }
  return state.deployment ? deploymentFailure(state.deployment, now) : undefined;
}

function containersFailure(pod: KubernetesObject, now: number): string | undefined {
  const status = (pod.status ?? {}) as PodStatus;
  const { name, namespace } = pod.metadata;
  const logs = (container: string) => `kubectl logs -n ${namespace} ${name} -c ${container} --previous`;
  // Pulls start once the pod has a node, and an app container's once the init containers are done.
  const scheduledAt = [pod.metadata.creationTimestamp, conditionOf(pod, 'PodScheduled')?.lastTransitionTime].map(timeOf);
  const initializedAt = timeOf(conditionOf(pod, 'Initialized')?.lastTransitionTime);
  const initContainers = (status.initContainerStatuses ?? []).map((container) => ({ container, init: true }));
  const containers = (status.containerStatuses ?? []).map((container) => ({ container, init: false }));

  for (const { container, init } of [...initContainers, ...containers]) {
    const waiting = container.state?.waiting;
    const crashes = container.restartCount ?? 0;
    const reason = waiting?.reason ? `${waiting.reason}${waiting.message ? `: ${waiting.message}` : ''}` : '';
    // A malformed name never pulls; other pull errors may be the registry's hiccup until they last.
    const pullingSince = Math.max(...[...scheduledAt, init ? Number.NaN : initializedAt].filter((time) => !Number.isNaN(time)), Number.NEGATIVE_INFINITY);
    const refused = waiting?.reason && PULL_ERRORS.has(waiting.reason) ? REFUSED_PULL.exec(waiting.message ?? '') : null;
    if (refused && container.image) {
      const host = imageRegistryHost(container.image);
      return (
        `cannot pull image "${container.image}" of container "${container.name}": the registry ${host} answered HTTP ${refused[1]}${refused[2] ? ` ${refused[2]}` : ''} (${reason}); ` +
        `the function's account needs a registry credential for ${host} listing CONTAINER with a key that may pull this image: see GET /v2/nvcf/registry-credentials, and replace a wrong secret with PATCH`
      );
    }
    if (waiting?.reason === 'InvalidImageName' || (waiting?.reason && PULL_ERRORS.has(waiting.reason) && now - pullingSince >= IMAGE_PULL_GRACE_MS)) {
      return `cannot pull image "${container.image}" of container "${container.name}" (${reason}); check the image name and tag, and that the cluster's nodes may pull from its registry`;
    }
    if (waiting?.reason && CREATE_ERRORS.has(waiting.reason)) return `container "${container.name}" cannot start (${reason})`;
    const exit = container.state?.terminated ?? container.lastState?.terminated;
    if (crashes < CRASH_LOOP_RESTARTS || !exit || exit.exitCode === 0) continue;
    const how = `exit code ${exit.exitCode}${exit.reason && exit.reason !== 'Error' ? `, ${exit.reason}` : ''}`;
    if (container.name === FETCH_ARTIFACTS_CONTAINER) {
      return `downloading the version's models and resources failed ${crashes} times (${how})${exit.message ? `: ${exit.message.trim()}` : `; see ${logs(container.name)}`}`;
    }
    if (container.name === WRITE_SECRETS_CONTAINER) {
      return `writing the version's secrets file failed ${crashes} times (${how})${exit.message ? `: ${exit.message.trim()}` : `; see ${logs(container.name)}`}`;
    }
    return `container "${container.name}" keeps crashing: restarted ${crashes} times, last ${how}; see its logs with ${logs(container.name)}`;
  }
  return undefined;
}

function unschedulable(pod: KubernetesObject, now: number): string | undefined {
  const scheduled = conditionOf(pod, 'PodScheduled');
  if (scheduled?.status !== 'False' || scheduled.reason !== 'Unschedulable') return undefined;
  const waitingMs = now - timeOf(pod.metadata.creationTimestamp);
  if (!(waitingMs >= UNSCHEDULABLE_GRACE_MS)) return undefined;
  const gpu = (pod.spec as { nodeSelector?: Record<string, string> } | undefined)?.nodeSelector?.[K8S.gpuLabel];
  const hint = gpu
    ? `the nodegroup of GPU type ${gpu} has no node with a free ${K8S.gpuResource} of this instance type: raise its maxNodes (nvcf:gpus in the CDK app) or lower minInstances/maxInstances`
    : 'no node has room for it';
  return `an instance has waited ${Math.floor(waitingMs / 60_000)} min for a node (scheduler: ${scheduled.message ?? 'Unschedulable'}); ${hint}`;
}

/** Pods Kubernetes refuses to create (admission, quota), or a rollout that never became available. */
function deploymentFailure(deployment: KubernetesObject, now: number): string | undefined {
  const { name, namespace } = deployment.metadata;
  const rejected = conditionOf(deployment, 'ReplicaFailure');
  if (rejected?.status === 'True' && now - timeOf(rejected.lastTransitionTime) >= POD_CREATION_GRACE_MS) {
    return `Kubernetes refuses to create the instances' pods (${rejected.reason ?? 'ReplicaFailure'}: ${rejected.message ?? 'no message'}); see kubectl describe deployment -n ${namespace} ${name}`;
  }
  const progressing = conditionOf(deployment, 'Progressing');
  if (progressing?.status === 'False' && progressing.reason === 'ProgressDeadlineExceeded') {
    return `the instances did not become ready in time (${progressing.message ?? 'ProgressDeadlineExceeded'}); check that the health endpoint answers, and see kubectl describe pods -n ${namespace} -l ${K8S.workloadLabel}=${deployment.metadata.labels?.[K8S.workloadLabel] ?? ''}`;
  }
  return undefined;
}
