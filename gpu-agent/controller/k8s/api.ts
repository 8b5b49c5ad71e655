/**
 * The part of the Kubernetes API the controller uses, behind a narrow
 * interface: server-side apply, list by label, delete by name. One
 * implementation talks to the API server with @kubernetes/client-node; tests
 * use an in-memory fake (test/support/fake-kubernetes.ts).
 */
import { KubeConfig, KubernetesObjectApi, PatchStrategy, type KubernetesObject as ClientObject } from '@kubernetes/client-node';
import { K8S } from '../../../core/names';

/** The kinds the controller reads or writes, with where the API serves them. */
export const KINDS = {
  Namespace: { apiVersion: 'v1', namespaced: false },
  ServiceAccount: { apiVersion: 'v1', namespaced: true },
  Pod: { apiVersion: 'v1', namespaced: true },
  Secret: { apiVersion: 'v1', namespaced: true },
  Deployment: { apiVersion: 'apps/v1', namespaced: true },
  ScaledObject: { apiVersion: 'keda.sh/v1alpha1', namespaced: true },
  TriggerAuthentication: { apiVersion: 'keda.sh/v1alpha1', namespaced: true },
} as const;

export type Kind = keyof typeof KINDS;

export interface ObjectMeta {
  name: string;
  namespace?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
  /** A string in JSON; client-node turns it into a Date for built-in kinds. */
  creationTimestamp?: string | Date;
  /** Set once the object is being deleted (a terminating pod). */
  deletionTimestamp?: string | Date;
}

/** Any Kubernetes object; the controller builds them as plain data. */
export interface KubernetesObject {
  apiVersion: string;
  kind: string;
  metadata: ObjectMeta;
  [field: string]: unknown;
}

export interface KubernetesApi {
  /** Server-side apply with the controller's field manager, forcing ownership of the fields it sets. */
  apply(object: KubernetesObject): Promise<void>;
  /** Objects of `kind` whose labels match `labelSelector`; `namespace` undefined means every namespace. */
  list(kind: Kind, namespace: string | undefined, labelSelector?: string): Promise<KubernetesObject[]>;
  /** Deletes the object; a missing object is not an error. */
  delete(kind: Kind, namespace: string | undefined, name: string): Promise<void>;
}

/** Talks to the API server: in-cluster credentials in a pod, the kubeconfig elsewhere. */
export class ClientNodeApi implements KubernetesApi {
  private readonly client: KubernetesObjectApi;

  constructor(config: KubeConfig = defaultKubeConfig()) {
    this.client = KubernetesObjectApi.makeApiClient(config);
  }

  async apply(object: KubernetesObject): Promise<void> {
    await this.client.patch(object as ClientObject, undefined, undefined, K8S.controllerManager, true, PatchStrategy.ServerSideApply);
  }

  /**
   * One unpaginated list: client-node reads the `continue` token of built-in
   * kinds' lists only (it drops it from a ScaledObjectList), and the
   * controller's label-selected lists are small enough for one answer.
   */
  async list(kind: Kind, namespace: string | undefined, labelSelector?: string): Promise<KubernetesObject[]> {
    const page = await this.client.list(KINDS[kind].apiVersion, kind, namespace, undefined, undefined, undefined, undefined, labelSelector);
    // Lists carry apiVersion/kind on the list only; the controller reads them per item.
    return page.items.map((item) => ({ ...(item as KubernetesObject), apiVersion: KINDS[kind].apiVersion, kind }));
  }

  async delete(kind: Kind, namespace: string | undefined, name: string): Promise<void> {
    try {
      await this.client.delete({ apiVersion: KINDS[kind].apiVersion, kind, metadata: { name, ...(namespace ? { namespace } : {}) } });
    } catch (error) {
      if ((error as { code?: number }).code !== 404) throw error;
    }
  }
}

/**
 * What the API server said when it refused an object for what the object is,
 * so that it refuses the same object the same way every time: 400, 422
 * (Invalid: a schema, admission or CRD validation), and the 500 server-side
 * apply answers for a field of the wrong type ("failed to create typed patch
 * object"). Undefined for everything a later try may get past: no answer,
 * 403/404 (the platform's RBAC or namespaces), 409, 429, other 5xx.
 */
export function objectRefusal(error: unknown): string | undefined {
  if (!error || typeof error !== 'object') return undefined;
  const { code, body } = error as { code?: unknown; body?: unknown };
  if (typeof code !== 'number') return undefined;
  const message = statusMessage(body);
  if (code === 400 || code === 422) return message;
  if (code === 500 && /failed to create typed patch object/i.test(message)) return message;
  return undefined;
}

/** The message of a Kubernetes Status body (a JSON string or parsed), or the body as text. */
function statusMessage(body: unknown): string {
  let status = body;
  if (typeof body === 'string') {
    try {
      status = JSON.parse(body);
    } catch {
      return body;
    }
  }
  const message = (status as { message?: unknown } | undefined)?.message;
  return typeof message === 'string' ? message : String(body);
}

function defaultKubeConfig(): KubeConfig {
  const config = new KubeConfig();
  config.loadFromDefault();
  return config;
}
