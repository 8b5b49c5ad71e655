/**
 * The controller's fence on a real API server: the RBAC objects and the
 * ValidatingAdmissionPolicy come from the synthesized template, the controller
 * acts with a token of its own ServiceAccount, so every denial below is the real
 * RBAC authorizer or the real CEL evaluation of the deployed policy.
 */
import * as k8s from '@kubernetes/client-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { K8S } from '../../core/names';
import { ClientNodeApi } from '../../gpu-agent/controller/k8s/api';
import { helmSecretsObject, imagePullSecretObject } from '../../gpu-agent/controller/k8s/objects';
import { testVersion, workloadOf } from '../support/k8s-fixtures';
import { startControlPlane, type ControlPlane } from './control-plane';
import { adminConfig, applyTemplateObjects, CONTROLLER, eventually, serviceAccountConfig } from './platform';

const POLICY = 'nvcf-gpu-agent-controller-scope';
const HELM_FUNCTION_ROLE = 'nvcf-gpu-agent-controller-helm-function';

let plane: ControlPlane;
let admin: k8s.KubeConfig;
let controller: k8s.KubeConfig;

/** The HTTP status and message of a refused request (fails the test if it was accepted). */
async function refusal(request: Promise<unknown>): Promise<{ code: number; message: string }> {
  try {
    await request;
  } catch (error) {
    if (error instanceof k8s.ApiException) {
      const body = typeof error.body === 'string' ? (JSON.parse(error.body) as { message?: string }) : (error.body as { message?: string });
      return { code: error.code, message: body?.message ?? String(error.body) };
    }
    throw error;
  }
  throw new Error('expected the API server to refuse the request, it accepted it');
}

function namespace(name: string, enforce?: string): k8s.V1Namespace {
  return { metadata: { name, labels: enforce ? { 'pod-security.kubernetes.io/enforce': enforce } : {} } };
}

function helmRoleBinding(inNamespace: string): k8s.V1RoleBinding {
  return {
    metadata: { name: 'nvcf-helm-function', namespace: inNamespace },
    roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: HELM_FUNCTION_ROLE },
    subjects: [{ kind: 'ServiceAccount', ...CONTROLLER }],
  };
}

beforeAll(async () => {
  plane = await startControlPlane();
  admin = adminConfig(plane);
  const deployed = await applyTemplateObjects(admin);
  expect(deployed.map((o) => o.kind)).toEqual(expect.arrayContaining(['Namespace', 'ServiceAccount', 'ClusterRole', 'ValidatingAdmissionPolicy', 'ValidatingAdmissionPolicyBinding']));
  controller = await serviceAccountConfig(plane, admin, CONTROLLER);
  // The policy is enforced once the API server has compiled it: wait until it refuses a namespace it must refuse.
  await eventually(async () => {
    const { message } = await refusal(controller.makeApiClient(k8s.CoreV1Api).createNamespace({ body: namespace('nvcf-probe-not-fenced', 'baseline') }));
    if (!message.includes(POLICY)) throw new Error(`policy not yet enforced: ${message}`);
  }, 30_000);
});

afterAll(async () => {
  await plane?.stop();
});

describe('the gpu-agent controller under its deployed RBAC and admission policy', () => {
  it('creates a nvcf-fn-* namespace at the baseline pod-security level', async () => {
    const created = await controller.makeApiClient(k8s.CoreV1Api).createNamespace({ body: namespace('nvcf-fn-echo', 'baseline') });
    expect(created.metadata?.name).toBe('nvcf-fn-echo');
  });

  it('is refused a namespace outside nvcf-fn-* by the policy, though RBAC would allow it', async () => {
    const { code, message } = await refusal(controller.makeApiClient(k8s.CoreV1Api).createNamespace({ body: namespace('team-a', 'baseline') }));
    expect(code).toBe(403);
    expect(message).toContain(`ValidatingAdmissionPolicy '${POLICY}'`);
    expect(message).toContain('may only create, change or delete namespaces named nvcf-fn-*');
  });

  it('is refused a nvcf-fn-* namespace without a baseline or restricted enforce label', async () => {
    const core = controller.makeApiClient(k8s.CoreV1Api);
    for (const body of [namespace('nvcf-fn-unlabelled'), namespace('nvcf-fn-privileged', 'privileged')]) {
      const { code, message } = await refusal(core.createNamespace({ body }));
      expect(code).toBe(403);
      expect(message).toContain('pod-security.kubernetes.io/enforce level is baseline or restricted');
    }
  });

  it('binds the Helm-function role in its nvcf-fn-* namespace and then writes a chart\'s ServiceAccount and Role there', async () => {
    const rbac = controller.makeApiClient(k8s.RbacAuthorizationV1Api);
    await rbac.createNamespacedRoleBinding({ namespace: 'nvcf-fn-echo', body: helmRoleBinding('nvcf-fn-echo') });
    // The binding reaches the authorizer through its informer: retry until it grants.
    const account = await eventually(() =>
      controller.makeApiClient(k8s.CoreV1Api).createNamespacedServiceAccount({ namespace: 'nvcf-fn-echo', body: { metadata: { name: 'echo' } } }),
    );
    expect(account.metadata?.namespace).toBe('nvcf-fn-echo');
    const role = await rbac.createNamespacedRole({
      namespace: 'nvcf-fn-echo',
      body: { metadata: { name: 'echo' }, rules: [{ apiGroups: [''], resources: ['configmaps'], verbs: ['get', 'list'] }] },
    });
    expect(role.metadata?.name).toBe('echo');
  });

  it("server-side applies a Helm function's nvcf-secrets Secret, as the controller builds it, in its nvcf-fn-* namespace only", async () => {
    const version = testVersion({ containerImage: undefined, helmChart: 'https://charts.example.com/echo-0.1.0.tgz', helmChartServiceName: 'echo' });
    const workload = workloadOf(version);
    const secret = helmSecretsObject(workload, '{"TOKEN":"cluster-marker"}');
    const chartNamespace = secret.metadata.namespace!;
    const core = controller.makeApiClient(k8s.CoreV1Api);
    await core.createNamespace({ body: namespace(chartNamespace, 'baseline') });
    await controller.makeApiClient(k8s.RbacAuthorizationV1Api).createNamespacedRoleBinding({ namespace: chartNamespace, body: helmRoleBinding(chartNamespace) });
    const api = new ClientNodeApi(controller);
    await eventually(() => api.apply(secret));
    const stored = await admin.makeApiClient(k8s.CoreV1Api).readNamespacedSecret({ name: K8S.helmSecretsSecret, namespace: chartNamespace });
    expect(Buffer.from(stored.data!['secrets.json']!, 'base64').toString('utf8')).toBe('{"TOKEN":"cluster-marker"}');
    // The same object aimed at a namespace that is neither a Helm function's nor nvcf-functions: RBAC grants no Secrets there.
    const { code } = await refusal(api.apply({ ...secret, metadata: { ...secret.metadata, namespace: 'default' } }));
    expect(code).toBe(403);
  });

  it("server-side applies a container function's image pull Secret, as the controller builds it, in nvcf-functions", async () => {
    const workload = workloadOf(testVersion());
    const secret = imagePullSecretObject(workload, { host: 'nvcr.io', username: '$oauthtoken', password: 'cluster-pull-key' });
    const api = new ClientNodeApi(controller);
    await eventually(() => api.apply(secret));
    const stored = await admin.makeApiClient(k8s.CoreV1Api).readNamespacedSecret({ name: secret.metadata.name, namespace: K8S.functionsNamespace });
    expect(stored.type).toBe('kubernetes.io/dockerconfigjson');
    await api.delete('Secret', K8S.functionsNamespace, secret.metadata.name);
  });

  it('is refused the same role binding in nvcf-functions and kube-system by the policy (RBAC alone would allow it)', async () => {
    const rbac = controller.makeApiClient(k8s.RbacAuthorizationV1Api);
    for (const target of ['nvcf-functions', 'kube-system']) {
      const { code, message } = await refusal(rbac.createNamespacedRoleBinding({ namespace: target, body: helmRoleBinding(target) }));
      expect(code).toBe(403);
      expect(message).toContain(`ValidatingAdmissionPolicy '${POLICY}'`);
      expect(message).toContain('may only write RBAC objects in nvcf-fn-* namespaces');
    }
  });

  it('is refused by RBAC what its roles do not grant (a Secret in kube-system)', async () => {
    const { code, message } = await refusal(
      controller.makeApiClient(k8s.CoreV1Api).createNamespacedSecret({ namespace: 'kube-system', body: { metadata: { name: 'x' }, stringData: { a: 'b' } } }),
    );
    expect(code).toBe(403);
    expect(message).toContain('system:serviceaccount:nvcf-system:nvcf-gpu-agent');
    expect(message).not.toContain(POLICY);
  });

  it('leaves other users alone: cluster-admin creates a namespace outside nvcf-fn-*', async () => {
    const created = await admin.makeApiClient(k8s.CoreV1Api).createNamespace({ body: namespace('team-a') });
    expect(created.metadata?.name).toBe('team-a');
  });
});
