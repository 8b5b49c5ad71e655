/** What the CDK app puts on the cluster, applied to a test control plane, and clients of its identities. */
import * as k8s from '@kubernetes/client-node';
import type { ControlPlane } from './control-plane';
import { templateObjects } from './template-objects';

/** The controller's ServiceAccount (K8S.controllerServiceAccount in K8S.systemNamespace). */
export const CONTROLLER = { name: 'nvcf-gpu-agent', namespace: 'nvcf-system' };

/** Retries while the API server's caches (RBAC, policies, service accounts) catch up with objects just written. */
export async function eventually<T>(action: () => Promise<T>, timeoutMs = 15_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      return await action();
    } catch (error) {
      if (Date.now() > deadline) throw error;
      await new Promise((resolve) => setTimeout(resolve, 250));
    }
  }
}

/** cluster-admin's client configuration. */
export function adminConfig(plane: ControlPlane): k8s.KubeConfig {
  const config = new k8s.KubeConfig();
  config.loadFromFile(plane.kubeconfigPath);
  return config;
}

/** Creates the template's Kubernetes objects (namespaces first, as the CDK app orders them); returns them. */
export async function applyTemplateObjects(admin: k8s.KubeConfig): Promise<ReturnType<typeof templateObjects>> {
  const objects = k8s.KubernetesObjectApi.makeApiClient(admin);
  const deployed = templateObjects();
  const ordered = [...deployed].sort((a, b) => Number(b.kind === 'Namespace') - Number(a.kind === 'Namespace'));
  for (const object of ordered) await eventually(() => objects.create(object as k8s.KubernetesObject));
  return deployed;
}

/** A client configuration that acts with a fresh token of the given ServiceAccount (TokenRequest API). */
export async function serviceAccountConfig(plane: ControlPlane, admin: k8s.KubeConfig, account: { name: string; namespace: string }): Promise<k8s.KubeConfig> {
  const core = admin.makeApiClient(k8s.CoreV1Api);
  const token = await eventually(() =>
    core.createNamespacedServiceAccountToken({ ...account, body: { spec: { audiences: ['https://kubernetes.default.svc'], expirationSeconds: 3600 } } }),
  );
  const config = new k8s.KubeConfig();
  config.loadFromOptions({
    clusters: [{ name: 'test', server: plane.server, caFile: `${plane.dir}/ca.crt` }],
    users: [{ name: account.name, token: token.status?.token }],
    contexts: [{ name: 'test', cluster: 'test', user: account.name }],
    currentContext: 'test',
  });
  return config;
}
