/**
 * The controller's loop, shared by its runtimes: read the deployed versions,
 * make the runtime hold exactly their workloads, scale the workloads the
 * runtime does not autoscale by itself, and turn the failures the runtime
 * sees into the version's ERROR status with `healthInfo`.
 */
import { reportVersionFailure } from '../../core/functions';
import { listDeployedVersions } from '../../core/deployments';
import type { FunctionVersionRecord, HealthInfo } from '../../core/model';
import { queueCounts } from '../../core/queues';
import { desiredInstances, desiredWorkloads, isHalted, planWorkloads, workloadFingerprint, type Workload } from './plan';

/** A workload as the runtime finds it. */
export interface ObservedWorkload {
  /** The fingerprint (plan.ts) the workload was last applied with. */
  fingerprint: string;
  /** Why its instances cannot run (crash loop, image pull, no GPU capacity), in words a user can act on. */
  failure?: string;
}

/** Where workloads run: child processes on this machine, or Kubernetes objects on EKS. */
export interface Runtime {
  /** Every workload the runtime holds, by workload key. */
  observe(): Promise<Map<string, ObservedWorkload>>;
  /** Creates or updates the workload; applying the same workload twice changes nothing. */
  apply(workload: Workload): Promise<void>;
  /** Stops the workload's instances (letting in-flight jobs finish) and deletes what it made. */
  remove(key: string): Promise<void>;
  /** Present when the controller decides instance counts (process); absent when the runtime autoscales (KEDA). */
  scale?(workload: Workload, instances: number): Promise<void>;
}

export interface ControllerEvents {
  applied?(workload: Workload): void;
  removed?(key: string): void;
  failed?(workload: Workload, failure: string): void;
  /** A step failed; the next pass retries it. */
  error?(step: string, error: unknown): void;
}

export type VersionSource = () => Promise<FunctionVersionRecord[]>;

export class Controller {
  constructor(
    private readonly runtime: Runtime,
    private readonly events: ControllerEvents = {},
    private readonly versions: VersionSource = listDeployedVersions,
  ) {}

  /** One pass; every step is idempotent, and a failed step is retried by the next pass. */
  async reconcile(): Promise<void> {
    const desired = desiredWorkloads(await this.versions());
    const observed = await this.runtime.observe();
    const plan = planWorkloads(desired, new Map([...observed].map(([key, workload]) => [key, workload.fingerprint])));

    await Promise.all([
      ...plan.apply.map((workload) => this.step(`apply ${workload.key}`, async () => {
        await this.runtime.apply(workload);
        this.events.applied?.(workload);
      })),
      ...plan.remove.map((key) => this.step(`remove ${key}`, async () => {
        await this.runtime.remove(key);
        this.events.removed?.(key);
      })),
    ]);

    const scale = this.runtime.scale?.bind(this.runtime);
    if (scale) await Promise.all(desired.map((workload) => this.step(`scale ${workload.key}`, () => this.scaleToQueue(workload, scale))));

    await Promise.all(
      desired.map((workload) => {
        const failure = observed.get(workload.key)?.failure;
        return failure && observed.get(workload.key)?.fingerprint === workloadFingerprint(workload)
          ? this.step(`report ${workload.key}`, () => this.reportFailure(workload, failure))
          : undefined;
      }),
    );
  }

  private async scaleToQueue(workload: Workload, scale: NonNullable<Runtime['scale']>): Promise<void> {
    if (isHalted(workload)) return scale(workload, 0);
    const queueUrl = workload.version.deployment?.queueUrl;
    const counts = queueUrl ? await queueCounts(queueUrl) : undefined;
    const depth = counts ? counts.waiting + counts.inFlight : 0;
    await scale(workload, desiredInstances(workload.spec, depth));
  }

  /** DEPLOYING or ACTIVE → ERROR with the failure in `healthInfo`; an ERROR version is left as it is. */
  private async reportFailure(workload: Workload, failure: string): Promise<void> {
    const { version, spec } = workload;
    if (!version.deployment || version.status === 'ERROR') return;
    const info: HealthInfo = { gpu: spec.gpu, instanceType: spec.instanceType, ...(spec.backend ? { backend: spec.backend } : {}), error: failure };
    const changed = await reportVersionFailure({ ...version, deployment: version.deployment }, info, ['DEPLOYING', 'ACTIVE']);
    if (changed) this.events.failed?.(workload, failure);
  }

  private async step(name: string, run: () => Promise<void>): Promise<void> {
    try {
      await run();
    } catch (error) {
      this.events.error?.(name, error);
    }
  }
}
