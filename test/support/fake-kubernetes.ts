/**
 * In-memory stand-ins for the controller's narrow Kubernetes and Helm
 * interfaces (gpu-agent/controller/k8s/api.ts, helm.ts). Apply keeps what the
 * "cluster" owns (status, creation time) as server-side apply would; tests
 * edit objects behind the controller's back and set pod statuses directly.
 */
import type { Kind, KubernetesApi, KubernetesObject } from '../../gpu-agent/controller/k8s/api';
import type { Helm, HelmError, HelmRelease } from '../../gpu-agent/controller/k8s/helm';

const id = (kind: string, namespace: string | undefined, name: string) => `${kind}/${namespace ?? ''}/${name}`;

function matches(object: KubernetesObject, selector: string | undefined): boolean {
  if (!selector) return true;
  return selector.split(',').every((term) => {
    const [key, value] = term.split('=');
    return object.metadata.labels?.[key!] === value;
  });
}

export class FakeKubernetes implements KubernetesApi {
  readonly objects = new Map<string, KubernetesObject>();
  /** Every apply, in order, as `Kind/namespace/name`. */
  readonly applied: string[] = [];
  readonly deleted: string[] = [];

  async apply(object: KubernetesObject): Promise<void> {
    const key = id(object.kind, object.metadata.namespace, object.metadata.name);
    const existing = this.objects.get(key);
    const copy = structuredClone(object);
    copy.metadata.creationTimestamp = existing?.metadata.creationTimestamp ?? new Date().toISOString();
    if (existing?.status) copy.status = existing.status;
    this.objects.set(key, copy);
    this.applied.push(key);
  }

  async list(kind: Kind, namespace: string | undefined, labelSelector?: string): Promise<KubernetesObject[]> {
    return [...this.objects.values()]
      .filter((object) => object.kind === kind && (namespace === undefined || object.metadata.namespace === namespace) && matches(object, labelSelector))
      .map((object) => structuredClone(object));
  }

  async delete(kind: Kind, namespace: string | undefined, name: string): Promise<void> {
    const key = id(kind, namespace, name);
    if (!this.objects.delete(key)) return;
    this.deleted.push(key);
    // Like the API server's garbage collection: a namespace takes its objects along.
    if (kind === 'Namespace') for (const [other, object] of this.objects) if (object.metadata.namespace === name) this.objects.delete(other);
  }

  get(kind: Kind, namespace: string | undefined, name: string): KubernetesObject | undefined {
    return this.objects.get(id(kind, namespace, name));
  }

  /** A pod as the Deployment controller and kubelet would make it: labels copied, status given. */
  addPod(name: string, namespace: string, labels: Record<string, string>, status: Record<string, unknown>, options: { createdAt?: string; nodeSelector?: Record<string, string> } = {}): void {
    this.objects.set(id('Pod', namespace, name), {
      apiVersion: 'v1',
      kind: 'Pod',
      metadata: { name, namespace, labels, creationTimestamp: options.createdAt ?? new Date().toISOString() },
      spec: { nodeSelector: options.nodeSelector ?? {} },
      status,
    });
  }
}

/** Helm with canned renderings per chart; records what would have been installed. */
export class FakeHelm implements Helm {
  readonly installed = new Map<string, HelmRelease>();
  readonly calls: string[] = [];
  /** Errors the next calls of a command throw, until the test clears them. */
  readonly errors: { template?: HelmError; upgrade?: HelmError; status?: HelmError } = {};

  constructor(private readonly renderings: Record<string, string>) {}

  async template(release: HelmRelease): Promise<string> {
    this.calls.push(`template ${release.release}`);
    if (this.errors.template) throw this.errors.template;
    const rendered = this.renderings[release.chart];
    if (rendered === undefined) throw new Error(`no rendering for ${release.chart} in this test`);
    return rendered;
  }

  async upgrade(release: HelmRelease): Promise<void> {
    this.calls.push(`upgrade ${release.release}`);
    if (this.errors.upgrade) throw this.errors.upgrade;
    this.installed.set(`${release.namespace}/${release.release}`, release);
  }

  async status({ release, namespace }: Pick<HelmRelease, 'release' | 'namespace'>): Promise<string | undefined> {
    this.calls.push(`status ${release}`);
    if (this.errors.status) throw this.errors.status;
    return this.installed.has(`${namespace}/${release}`) ? 'deployed' : undefined;
  }

  async uninstall({ release, namespace }: Pick<HelmRelease, 'release' | 'namespace'>): Promise<void> {
    this.calls.push(`uninstall ${release}`);
    this.installed.delete(`${namespace}/${release}`);
  }

  async rollback({ release }: Pick<HelmRelease, 'release' | 'namespace'>): Promise<void> {
    this.calls.push(`rollback ${release}`);
  }
}
