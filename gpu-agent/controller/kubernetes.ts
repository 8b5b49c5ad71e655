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
 * apply with force takes the fields back). A Helm release is upgraded only
 * when its namespace does not carry the workload's fingerprint (set after a
 * successful upgrade) or helm does not find it deployed: upgrading on every
 * resync would add a revision each time and restart the pods of charts that
 * render random or time-dependent values.
 *
 * A workload that cannot be applied (its objects cannot be built or are
 * refused by the API server for what they are, its chart is refused or
 * fails) is observed with the failure, which the Controller
 * reports as the version's ERROR; a transient Helm failure is retried with
 * backoff and reported only once it persists.
 */
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { FunctionVersionRecord } from '../../core/model';
import { K8S } from '../../core/names';
import { imageRegistryHost, openRegistryLogin, registryCredentialFor } from '../../core/registry-credentials';
import { openSecrets, SecretsUnavailable } from '../../core/secrets';
import { workloadFingerprint, type Workload } from './plan';
import type { ObservedWorkload, Runtime } from './reconcile';
import { objectRefusal, type KubernetesApi, type KubernetesObject } from './k8s/api';
import { workloadFailure } from './k8s/failures';
import { downloadChart, HELM_RETRY, HelmError, rejectRenderedChart, type ChartLogin, type Helm, type HelmRelease } from './k8s/helm';
import {
  HELM_FUNCTION_LABEL,
  helmAccessBinding,
  helmNamespace,
  helmNamespaceObject,
  helmSecretsObject,
  imagePullSecretObject,
  MANAGED_SELECTOR,
  pullSecretName,
  UnbuildableWorkload,
  workloadName,
  workloadObjects,
  type ImagePullLogin,
  type ObjectContext,
} from './k8s/objects';

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
  /**
   * The login a container function's pods pull its image with (ownersPullLogin on EKS); without it no pod gets an
   * image pull secret.
   */
  pullLogin?: (version: FunctionVersionRecord) => Promise<ImagePullLogin | undefined>;
  /**
   * The NGC login a Helm function's chart pulls its images with (ownersNgcPullLogin on EKS): written to the Secret
   * K8S.helmNgcPullSecret in its namespace, whose name the chart gets as the value `ngcImagePullSecretName` (NVCF's).
   */
  chartPullLogin?: (version: FunctionVersionRecord) => Promise<ImagePullLogin | undefined>;
  /** The login a Helm function's https:// chart is downloaded with (ownersChartLogin on EKS); without it helm fetches the URL itself. */
  chartLogin?: (version: FunctionVersionRecord) => Promise<ChartLogin | undefined>;
  /** Where charts downloaded with a login are kept for helm; default `<tmp>/nvcf-charts`. */
  chartsDir?: string;
}

/** The NGC host of images, which Helm charts name in their own manifests. */
const NGC_IMAGES_HOST = 'nvcr.io';

/** The owner's NGC credential listing CONTAINER, opened, for the images of a Helm function's chart (never another account's). */
export async function ownersNgcPullLogin(version: FunctionVersionRecord): Promise<ImagePullLogin | undefined> {
  if (!version.helmChart) return undefined;
  const credential = await registryCredentialFor(version.accountId, NGC_IMAGES_HOST, 'CONTAINER');
  return credential ? { host: NGC_IMAGES_HOST, ...(await openRegistryLogin(credential)) } : undefined;
}

/** The owner's registry credential for the host of a Helm function's https:// chart, listing HELM, opened (never another account's). */
export async function ownersChartLogin(version: FunctionVersionRecord): Promise<ChartLogin | undefined> {
  if (!version.helmChart?.startsWith('https://')) return undefined;
  const credential = await registryCredentialFor(version.accountId, new URL(version.helmChart).host, 'HELM');
  return credential ? openRegistryLogin(credential) : undefined;
}

/**
 * The owner's registry credential for the host of a container function's image, listing CONTAINER, opened (never
 * another account's); none for a Helm function, a model-only one (the platform's Triton image) or a host the owner
 * holds no credential for (a public image, the stack's own ECR, which the nodes' role pulls).
 */
export async function ownersPullLogin(version: FunctionVersionRecord): Promise<ImagePullLogin | undefined> {
  if (!version.containerImage || version.helmChart) return undefined;
  const host = imageRegistryHost(version.containerImage);
  const credential = await registryCredentialFor(version.accountId, host, 'CONTAINER');
  return credential ? { host, ...(await openRegistryLogin(credential)) } : undefined;
}

/** The kinds every workload has in nvcf-functions; one missing means the workload must be applied again. */
const WORKLOAD_KINDS = ['TriggerAuthentication', 'Deployment', 'ScaledObject'] as const;

/** An apply that failed, kept for the definition it was tried with until that changes or an apply succeeds. */
interface ApplyFailure {
  fingerprint: string;
  message: string;
  /** Retried at `retryAt`, and reported only after HELM_RETRY.reportAfter failures in a row; otherwise reported at once and not retried. */
  transient: boolean;
  attempts: number;
  retryAt: number;
}

interface Found {
  objects: KubernetesObject[];
  pods: KubernetesObject[];
  chartPods: KubernetesObject[];
}

export class KubernetesRuntime implements Runtime {
  private readonly api: KubernetesApi;
  private readonly helm: Helm;
  private readonly resyncMs: number;
  private readonly now: () => number;
  /** When this process last applied each workload; a restarted controller re-applies everything once. */
  private readonly appliedAt = new Map<string, number>();
  private readonly failures = new Map<string, ApplyFailure>();

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

    const byKey = new Map<string, Found>();
    const entry = (object: KubernetesObject) => {
      const key = object.metadata.labels?.[K8S.workloadLabel];
      if (!key) return undefined;
      if (!byKey.has(key)) byKey.set(key, { objects: [], pods: [], chartPods: [] });
      return byKey.get(key)!;
    };
    for (const object of [...objects, ...helmNamespaces]) entry(object)?.objects.push(object);
    for (const pod of pods) entry(pod)?.pods.push(pod);
    helmNamespaces.forEach((ns, i) => entry(ns)?.chartPods.push(...chartPods[i]!));

    const now = this.now();
    const observed = new Map<string, ObservedWorkload>();
    for (const [key, found] of byKey) {
      const failure = workloadFailure({ ...found, deployment: found.objects.find((object) => object.kind === 'Deployment'), minInstances: minInstancesOf(found.objects) }, now);
      observed.set(key, { fingerprint: this.fingerprintOf(key, found.objects, now), ...(failure ? { failure } : {}) });
    }
    for (const [key, failed] of this.failures) observed.set(key, observedFailure(failed, now));
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
    let objects: KubernetesObject[];
    try {
      // A credential's new secret reaches the pull Secret when the workload is next applied (at the latest, the resync).
      objects = workloadObjects(workload, this.options, { pullLogin: await this.options.pullLogin?.(workload.version) });
    } catch (error) {
      if (!(error instanceof UnbuildableWorkload) && !(error instanceof SecretsUnavailable)) throw error;
      return this.recordFailure(workload, error.message, false);
    }
    if (workload.version.helmChart && !(await this.installChart(workload))) return;
    for (const object of objects) {
      try {
        await this.api.apply(object);
      } catch (error) {
        // Refused for what it is: the same objects fail the same way, so report instead of retrying every pass.
        const refusal = objectRefusal(error);
        if (refusal === undefined) throw error;
        return this.recordFailure(workload, `Kubernetes refuses the workload's ${object.kind} ${object.metadata.name}: ${refusal}`, false);
      }
    }
    this.appliedAt.set(workload.key, this.now());
    this.failures.delete(workload.key);
  }

  /**
   * Makes the chart's release current: nothing when it is (see the module
   * comment); otherwise renders the chart, checks its kinds and installs it.
   * False when it failed (recorded); errors other than helm's throw and are
   * retried by the next pass.
   */
  private async installChart(workload: Workload): Promise<boolean> {
    const { version, spec, key } = workload;
    const release: HelmRelease = { release: workloadName(key), chart: version.helmChart!, namespace: helmNamespace(key), values: spec.configuration ?? {} };
    try {
      const [installed] = await this.api.list('Namespace', undefined, `${K8S.workloadLabel}=${key}`);
      // helm reads its release records (Secrets) through this binding, from `helm status` on.
      if (installed) await this.api.apply(helmAccessBinding(workload));
      const current = installed?.metadata.annotations?.[K8S.fingerprintAnnotation] === workloadFingerprint(workload);
      const status = installed ? await this.helm.status(release) : undefined;
      if (current && status === 'deployed') return true;
      // A private chart is fetched with the owner's login first; helm installs the file.
      const login = await this.options.chartLogin?.(version);
      const pullLogin = await this.options.chartPullLogin?.(version);
      const values = pullLogin ? { ...release.values, ngcImagePullSecretName: K8S.helmNgcPullSecret } : release.values;
      const source = { ...release, values, ...(login ? { chart: join(this.options.chartsDir ?? join(tmpdir(), 'nvcf-charts'), `${release.release}.tgz`) } : {}) };
      if (login) await downloadChart(release.chart, login, source.chart);
      const rejection = rejectRenderedChart(await this.helm.template(source), release.namespace);
      if (rejection) {
        this.recordFailure(workload, `Helm chart ${release.chart}: ${rejection}`, false);
        return false;
      }
      // Without the fingerprint until the upgrade succeeds: an interrupted upgrade is tried again.
      await this.api.apply(helmNamespaceObject(workload, { chartInstalled: false }));
      await this.api.apply(helmAccessBinding(workload));
      // Before the chart, which may mount it; a change of the secrets changes the fingerprint and comes here again.
      await this.api.apply(helmSecretsObject(workload, await this.secretsFileOf(workload)));
      if (pullLogin) await this.api.apply(imagePullSecretObject(workload, pullLogin, { name: K8S.helmNgcPullSecret, namespace: release.namespace }));
      await this.clearInterruptedRelease(release, status);
      await this.helm.upgrade(source);
      await this.api.apply(helmNamespaceObject(workload, { chartInstalled: true }));
      return true;
    } catch (error) {
      if (error instanceof SecretsUnavailable) {
        this.recordFailure(workload, error.message, false);
        return false;
      }
      if (!(error instanceof HelmError)) throw error;
      this.recordFailure(workload, `Helm chart ${release.chart}: ${error.message}`, error.transient);
      return false;
    }
  }

  /**
   * A release helm left `pending-*` refuses every later upgrade ("another
   * operation is in progress") for ever. helm runs only inside this
   * controller's passes, one at a time, and the controller is one replica
   * (Recreate): a pending release seen here was left by a helm that died with
   * its controller (the pod replaced mid-upgrade). Back to the last deployed
   * revision, or for a first install that never finished, away.
   */
  private async clearInterruptedRelease(release: HelmRelease, status: string | undefined): Promise<void> {
    if (status === 'pending-upgrade' || status === 'pending-rollback') await this.helm.rollback(release);
    else if (status === 'pending-install') await this.helm.uninstall(release);
  }

  /** The version's secrets file for its chart (`{}` without secrets); the controller's identity may open them for this. */
  private async secretsFileOf({ version }: Workload): Promise<string> {
    return version.secrets ? openSecrets(version.secrets, { accountId: version.accountId, functionId: version.functionId, versionId: version.versionId }) : '{}';
  }

  private recordFailure(workload: Workload, message: string, transient: boolean): void {
    const fingerprint = workloadFingerprint(workload);
    const previous = this.failures.get(workload.key);
    const attempts = previous?.fingerprint === fingerprint ? previous.attempts + 1 : 1;
    const retryAt = this.now() + Math.min(HELM_RETRY.firstDelayMs * 2 ** (attempts - 1), HELM_RETRY.maxDelayMs);
    this.failures.set(workload.key, { fingerprint, message, transient, attempts, retryAt });
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
    this.failures.delete(key);
    this.appliedAt.delete(key);
    // The ScaledObject first, so that KEDA does not scale the Deployment while it goes.
    await this.api.delete('ScaledObject', namespace, name);
    await this.api.delete('Deployment', namespace, name);
    await this.api.delete('TriggerAuthentication', namespace, name);
    await this.api.delete('Secret', namespace, pullSecretName(key));

    const chartNamespace = helmNamespace(key);
    const installed = await this.api.list('Namespace', undefined, `${K8S.workloadLabel}=${key}`);
    if (installed.length === 0) return;
    const draining = await this.api.list('Pod', namespace, `${K8S.workloadLabel}=${key}`);
    if (draining.length > 0) return;
    await this.helm.uninstall({ release: name, namespace: chartNamespace });
    await this.api.delete('Namespace', undefined, chartNamespace);
  }
}

/** The ScaledObject's minReplicaCount: the instances the version keeps ready. */
function minInstancesOf(objects: readonly KubernetesObject[]): number {
  const scaled = objects.find((object) => object.kind === 'ScaledObject')?.spec as { minReplicaCount?: number } | undefined;
  return scaled?.minReplicaCount ?? 0;
}

/**
 * A failed apply as the Controller should see it: a lasting failure with its
 * fingerprint (reported, not applied again); a transient one with an empty
 * fingerprint once its retry is due (so it is applied again), and with the
 * failure only once it has failed HELM_RETRY.reportAfter times in a row.
 */
function observedFailure(failed: ApplyFailure, now: number): ObservedWorkload {
  if (!failed.transient) return { fingerprint: failed.fingerprint, failure: failed.message };
  const fingerprint = now >= failed.retryAt ? '' : failed.fingerprint;
  return failed.attempts >= HELM_RETRY.reportAfter ? { fingerprint, failure: `${failed.message} (failed ${failed.attempts} times in a row; still retrying)` } : { fingerprint };
}
