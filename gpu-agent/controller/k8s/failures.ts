/**
 * Why a workload's pods cannot serve, read from their status, in words a
 * user can act on. This becomes the version's `healthInfo` error (and ERROR
 * status) through the shared Controller.
 */
import { K8S } from '../../../core/names';
import type { KubernetesObject } from './api';
import { FETCH_ARTIFACTS_CONTAINER } from './objects';

/** Restarts after which a crashing container (or failing init container) is a failure, not a hiccup. */
export const CRASH_LOOP_RESTARTS = 3;
/**
 * How long a pod may wait for a node before that is a failure: a GPU
 * nodegroup scaled up at deploy time needs a few minutes to bring a node.
 */
export const UNSCHEDULABLE_GRACE_MS = 10 * 60_000;

const PULL_ERRORS = new Set(['ErrImagePull', 'ImagePullBackOff', 'InvalidImageName']);
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

interface PodStatus {
  conditions?: { type: string; status: string; reason?: string; message?: string }[];
  initContainerStatuses?: ContainerStatus[];
  containerStatuses?: ContainerStatus[];
}

/** The first failure among the pods, or undefined when none has one. */
export function podsFailure(pods: readonly KubernetesObject[], now: number): string | undefined {
  for (const pod of pods) {
    const failure = podFailure(pod, now);
    if (failure) return failure;
  }
  return undefined;
}

function podFailure(pod: KubernetesObject, now: number): string | undefined {
  const status = (pod.status ?? {}) as PodStatus;
  const { name, namespace } = pod.metadata;
  const logs = (container: string) => `kubectl logs -n ${namespace} ${name} -c ${container} --previous`;

  for (const container of [...(status.initContainerStatuses ?? []), ...(status.containerStatuses ?? [])]) {
    const waiting = container.state?.waiting;
    const crashes = container.restartCount ?? 0;
    if (waiting?.reason && PULL_ERRORS.has(waiting.reason)) {
      return `cannot pull image "${container.image}" of container "${container.name}" (${waiting.reason}${waiting.message ? `: ${waiting.message}` : ''}); check the image name and tag, and that the cluster's nodes may pull from its registry`;
    }
    if (waiting?.reason && CREATE_ERRORS.has(waiting.reason)) {
      return `container "${container.name}" cannot start (${waiting.reason}${waiting.message ? `: ${waiting.message}` : ''})`;
    }
    const exit = container.state?.terminated ?? container.lastState?.terminated;
    if (crashes < CRASH_LOOP_RESTARTS || !exit || exit.exitCode === 0) continue;
    const how = `exit code ${exit.exitCode}${exit.reason && exit.reason !== 'Error' ? `, ${exit.reason}` : ''}`;
    if (container.name === FETCH_ARTIFACTS_CONTAINER) {
      return `downloading the version's models and resources failed ${crashes} times (${how})${exit.message ? `: ${exit.message.trim()}` : `; see ${logs(container.name)}`}`;
    }
    return `container "${container.name}" keeps crashing: restarted ${crashes} times, last ${how}; see its logs with ${logs(container.name)}`;
  }

  const unscheduled = status.conditions?.find((condition) => condition.type === 'PodScheduled' && condition.status === 'False' && condition.reason === 'Unschedulable');
  const waitingMs = now - Date.parse(pod.metadata.creationTimestamp ?? '');
  if (unscheduled && waitingMs >= UNSCHEDULABLE_GRACE_MS) {
    const gpu = (pod.spec as { nodeSelector?: Record<string, string> } | undefined)?.nodeSelector?.[K8S.gpuLabel];
    const hint = gpu
      ? `the nodegroup of GPU type ${gpu} has no node with a free ${K8S.gpuResource} of this instance type: raise its maxNodes (nvcf:gpus in the CDK app) or lower minInstances/maxInstances`
      : 'no node has room for it';
    return `an instance has waited ${Math.floor(waitingMs / 60_000)} min for a node (scheduler: ${unscheduled.message ?? 'Unschedulable'}); ${hint}`;
  }
  return undefined;
}
