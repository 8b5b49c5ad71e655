/**
 * The controller's decisions, shared by its runtimes (`process` locally,
 * `kubernetes` on EKS): which workloads should exist for the deployed
 * versions, and how many instances a workload should run for its queue.
 * Pure functions: the runtimes do the I/O.
 */
import { createHash } from 'node:crypto';
import type { FunctionVersionRecord, GpuSpecification } from '../../core/model';

/** One deployment specification of one version: a Kubernetes Deployment, or a set of local processes. */
export interface Workload {
  /** Stable name: `<versionId>-<specIndex>`. */
  key: string;
  version: FunctionVersionRecord;
  spec: GpuSpecification;
  specIndex: number;
}

/** Versions in these statuses keep their workloads; an ERROR version's stays, halted, so that its failure stays visible. */
const RUNNING_STATUSES = new Set(['DEPLOYING', 'ACTIVE', 'ERROR']);

/**
 * A workload of an ERROR version runs no instances until the version is
 * deployed again or its deployment updated (both leave ERROR): restarting
 * what failed would only occupy a GPU and repeat the failure.
 */
export function isHalted({ version }: Pick<Workload, 'version'>): boolean {
  return version.status === 'ERROR';
}

export function workloadKey(versionId: string, specIndex: number): string {
  return `${versionId}-${specIndex}`;
}

/** The workloads the deployed versions call for. */
export function desiredWorkloads(versions: readonly FunctionVersionRecord[]): Workload[] {
  return versions
    .filter((version) => RUNNING_STATUSES.has(version.status) && version.deployment)
    .flatMap((version) =>
      version.deployment!.specifications.map((spec, specIndex) => ({
        key: workloadKey(version.versionId, specIndex),
        version,
        spec,
        specIndex,
      })),
    );
}

export interface WorkloadChanges {
  /** Desired workloads that do not exist yet, or whose definition changed. */
  apply: Workload[];
  /** Existing workloads no deployed version calls for. */
  remove: string[];
}

/**
 * Compares what should run with what runs. `existing` maps each workload key
 * to the fingerprint it was applied with; a changed fingerprint means re-apply.
 */
export function planWorkloads(desired: readonly Workload[], existing: ReadonlyMap<string, string>): WorkloadChanges {
  const wanted = new Set(desired.map((workload) => workload.key));
  return {
    apply: desired.filter((workload) => existing.get(workload.key) !== workloadFingerprint(workload)),
    remove: [...existing.keys()].filter((key) => !wanted.has(key)),
  };
}

/**
 * What, in a workload, requires re-applying it when it changes, as a sha256
 * of its canonical JSON: the same definition gives the same fingerprint
 * whatever the order of keys in stored objects, and the annotation that
 * carries it (k8s/objects.ts) neither grows with a Helm configuration nor
 * shows the container's environment values to whoever may read annotations.
 */
export function workloadFingerprint(workload: Workload): string {
  const { version, spec } = workload;
  const definition = [
    version.containerImage,
    version.containerArgs,
    version.containerEnvironment,
    version.inferencePort,
    version.inferenceUrl,
    version.health,
    version.models,
    version.resources,
    version.helmChart,
    spec.minInstances,
    spec.maxInstances,
    spec.maxRequestConcurrency,
    spec.configuration,
    spec.gpu,
    spec.instanceType,
    version.helmChartServiceName,
    // A Helm function's secrets live in a Secret the controller writes (k8s/objects.ts): a new set means a new
    // apply, which restarts no pod. A container function's worker rewrites its file itself, so they stay out.
    ...(version.helmChart && version.secrets ? [version.secrets.revision] : []),
    // Only when halted, so that the fingerprints of running workloads stay as they were.
    ...(isHalted(workload) ? ['halted'] : []),
  ];
  return createHash('sha256').update(canonicalJson(definition)).digest('hex');
}

/** JSON with object keys sorted at every depth; array order is kept, since it means something (env order, arguments). */
function canonicalJson(value: unknown): string {
  return JSON.stringify(value, (_key, item: unknown) =>
    item && typeof item === 'object' && !Array.isArray(item)
      ? Object.fromEntries(Object.keys(item).sort().map((key) => [key, (item as Record<string, unknown>)[key]]))
      : item,
  );
}

/**
 * Instances a workload should run for its queue: enough to serve every queued
 * and in-flight request at `maxRequestConcurrency` each, within min..max.
 * This is the rule KEDA applies on EKS (queueLength = maxRequestConcurrency).
 */
export function desiredInstances(spec: Pick<GpuSpecification, 'minInstances' | 'maxInstances' | 'maxRequestConcurrency'>, queueDepth: number): number {
  const needed = Math.ceil(Math.max(0, queueDepth) / Math.max(1, spec.maxRequestConcurrency));
  return Math.min(spec.maxInstances, Math.max(spec.minInstances, needed));
}
