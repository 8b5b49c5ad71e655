/**
 * The controller's `kubernetes` runtime, for EKS: a workload is a set of
 * Kubernetes objects (k8s/objects.ts) applied server-side, and KEDA scales
 * its instances, so there is no `scale`. Helm functions also get their chart
 * installed into a namespace of their own (k8s/helm.ts).
 *
 * Drift: a workload whose objects are not all there, or carry another
 * fingerprint, is reported with an empty fingerprint and so re-applied. An
 * edit made behind the controller's back that leaves the annotation alone is
 * undone by re-applying every workload once per `resyncSeconds` (server-side
 * apply with force takes the fields back).
 */
import { K8S } from '../../core/names';
import { workloadFingerprint, type Workload } from './plan';
import type { ObservedWorkload, Runtime } from './reconcile';
import type { KubernetesApi, KubernetesObject } from './k8s/api';
import { podsFailure } from './k8s/failures';
import { HelmError, rejectRenderedChart, type Helm, type HelmRelease } from './k8s/helm';
import { HELM_FUNCTION_LABEL, helmNamespace, helmNamespaceObject, MANAGED_SELECTOR, workloadName, workloadObjects, type ObjectContext } from './k8s/objects';

export interface KubernetesRuntimeOptions extends ObjectContext {
  api: KubernetesApi;
  helm: Helm;
  /**
   * Every workload is re-applied at least this often, which undoes edits made to its objects by hand.
   * @default 600
   */
  resyncSeconds?: number;
  /** @default Date.now */
  now?: () => number;
}

/** The kinds every workload has in nvcf-functions; one missing means the workload must be applied again. */
const WORKLOAD_KINDS = ['TriggerAuthentication', 'Deployment', 'ScaledObject'] as const;

export class KubernetesRuntime implements Runtime {
  private readonly api: KubernetesApi;
  private readonly helm: Helm;
  private readonly resyncMs: number;
  private readonly now: () => number;
  /** When this process last applied each workload; a restarted controller re-applies everything once. */
  private readonly appliedAt = new Map<string, number>();
  /** Helm functions whose chart was refused or failed to install, with the fingerprint it was tried with. */
  private readonly helmFailures = new Map<string, Required<ObservedWorkload>>();

  constructor(private readonly options: KubernetesRuntimeOptions) {
    this.api = options.api;
    this.helm = options.helm;
    this.resyncMs = (options.resyncSeconds ?? 600) * 1000;
    this.now = options.now ?? Date.now;
  }

  async observe(): Promise<Map<string, ObservedWorkload>> {
    const namespace = K8S.functionsNamespace;
    const [objects, helmNamespaces, pods] = await Promise.all([
      Promise.all(WORKLOAD_KINDS.map((kind) => this.api.list(kind, namespace, MANAGED_SELECTOR))).then((lists) => lists.flat()),
      this.api.list('Namespace', undefined, MANAGED_SELECTOR),
      this.api.list('Pod', namespace, MANAGED_SELECTOR),
    ]);
    const chartPods = await Promise.all(helmNamespaces.map((ns) => this.api.list('Pod', ns.metadata.name)));

    const byKey = new Map<string, { objects: KubernetesObject[]; pods: KubernetesObject[] }>();
    const entry = (object: KubernetesObject) => {
      const key = object.metadata.labels?.[K8S.workloadLabel];
      if (!key) return undefined;
      if (!byKey.has(key)) byKey.set(key, { objects: [], pods: [] });
      return byKey.get(key)!;
    };
    for (const object of [...objects, ...helmNamespaces]) entry(object)?.objects.push(object);
    for (const pod of pods) entry(pod)?.pods.push(pod);
    helmNamespaces.forEach((ns, i) => entry(ns)?.pods.push(...chartPods[i]!));

    const now = this.now();
    const observed = new Map<string, ObservedWorkload>();
    for (const [key, found] of byKey) {
      const failure = podsFailure(found.pods, now);
      observed.set(key, { fingerprint: this.fingerprintOf(key, found.objects, now), ...(failure ? { failure } : {}) });
    }
    for (const [key, failed] of this.helmFailures) observed.set(key, failed);
    return observed;
  }

  /** The fingerprint all of the workload's objects agree on, or '' when it must be applied again. */
  private fingerprintOf(key: string, objects: KubernetesObject[], now: number): string {
    const helm = objects.some((object) => object.metadata.labels?.[HELM_FUNCTION_LABEL] === 'true');
    const kinds = helm ? [...WORKLOAD_KINDS, 'Namespace'] : WORKLOAD_KINDS;
    const complete = kinds.every((kind) => objects.some((object) => object.kind === kind));
    const fingerprints = new Set(objects.map((object) => object.metadata.annotations?.[K8S.fingerprintAnnotation] ?? ''));
    const fresh = now - (this.appliedAt.get(key) ?? Number.NEGATIVE_INFINITY) < this.resyncMs;
    return complete && fresh && fingerprints.size === 1 ? [...fingerprints][0]! : '';
  }

  async apply(workload: Workload): Promise<void> {
    const objects = workloadObjects(workload, this.options);
    if (workload.version.helmChart && !(await this.installChart(workload))) return;
    for (const object of objects) await this.api.apply(object);
    this.appliedAt.set(workload.key, this.now());
  }

  /**
   * Renders the chart, checks its kinds, then installs it. A refusal or a
   * helm error is kept as the workload's failure (reported as the version's
   * ERROR) until the version changes; other errors throw and are retried.
   */
  private async installChart(workload: Workload): Promise<boolean> {
    const { version, spec, key } = workload;
    const release: HelmRelease = { release: workloadName(key), chart: version.helmChart!, namespace: helmNamespace(key), values: spec.configuration ?? {} };
    const fail = (reason: string) => {
      this.helmFailures.set(key, { fingerprint: workloadFingerprint(workload), failure: `Helm chart ${release.chart}: ${reason}` });
      return false;
    };
    if (!version.helmChartServiceName) return fail('the function has no helmChartServiceName, so the worker cannot reach the chart');
    try {
      const rejection = rejectRenderedChart(await this.helm.template(release), release.namespace);
      if (rejection) return fail(rejection);
      await this.api.apply(helmNamespaceObject(workload));
      await this.helm.upgrade(release);
    } catch (error) {
      if (error instanceof HelmError) return fail(error.message);
      throw error;
    }
    this.helmFailures.delete(key);
    return true;
  }

  /**
   * Deletes the workload's objects; pods stop within their termination grace
   * period, during which the worker finishes or releases its jobs. A Helm
   * chart is uninstalled only once its workers are gone, on a later pass if
   * need be (its namespace keeps the workload visible until then).
   */
  async remove(key: string): Promise<void> {
    const name = workloadName(key);
    const namespace = K8S.functionsNamespace;
    this.helmFailures.delete(key);
    this.appliedAt.delete(key);
    // The ScaledObject first, so that KEDA does not scale the Deployment while it goes.
    await this.api.delete('ScaledObject', namespace, name);
    await this.api.delete('Deployment', namespace, name);
    await this.api.delete('TriggerAuthentication', namespace, name);

    const chartNamespace = helmNamespace(key);
    const installed = await this.api.list('Namespace', undefined, `${K8S.workloadLabel}=${key}`);
    if (installed.length === 0) return;
    const draining = await this.api.list('Pod', namespace, `${K8S.workloadLabel}=${key}`);
    if (draining.length > 0) return;
    await this.helm.uninstall({ release: name, namespace: chartNamespace });
    await this.api.delete('Namespace', undefined, chartNamespace);
  }
}
