/**
 * What a real cluster does to the controller (harness.ts): the API server
 * restarting in the middle of a pass, two controllers reconciling at once,
 * another field manager taking the controller's fields, its own RBAC taken
 * away, its namespace deleted, and an object the API server refuses for a
 * field of the wrong type.
 * After each, the workload's objects exist exactly once or not at all.
 *
 * Not here: a watch that expires (410 Gone). The controller does not watch;
 * every pass lists what it manages afresh (api.ts), so there is no
 * resourceVersion to expire.
 */
import * as k8s from '@kubernetes/client-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { FunctionVersionRecord } from '../../core/model';
import { K8S } from '../../core/names';
import type { KubernetesApi, KubernetesObject } from '../../gpu-agent/controller/k8s/api';
import { workloadName } from '../../gpu-agent/controller/k8s/objects';
import { deployVersion, putVersion } from '../support/function-versions';
import { isReady, NOTHING_LEFT, NS, startHarness, type Harness } from './harness';
import { eventually } from './platform';
import { templateObjects } from './template-objects';

let h: Harness;
/** The kind after whose apply the wrapped client stops kube-apiserver, once. */
let stopApiServerAfter: string | undefined;

beforeAll(async () => {
  h = await startHarness({
    wrapApi: (api): KubernetesApi => ({
      list: (...args) => api.list(...args),
      delete: (...args) => api.delete(...args),
      async apply(object: KubernetesObject) {
        await api.apply(object);
        if (object.kind !== stopApiServerAfter) return;
        stopApiServerAfter = undefined;
        await h.plane.stopApiServer();
      },
    }),
  });
});

afterAll(async () => {
  await h?.stop();
});

const keyOf = (version: FunctionVersionRecord) => `${version.versionId}-0`;

async function expectNothingLeft(key: string): Promise<void> {
  await eventually(async () => {
    const left = await h.leftInFunctionsNamespace(key);
    if (JSON.stringify(left) !== JSON.stringify(NOTHING_LEFT)) throw new Error(`left behind: ${JSON.stringify(left)}`);
  }, 60_000);
}

/** Exactly one of each object of a container function, and one ReplicaSet with its Ready pod. */
async function expectOneOfEach(key: string): Promise<void> {
  const name = workloadName(key);
  await eventually(async () => {
    const left = await h.leftInFunctionsNamespace(key);
    const ready = (await h.podsOf(key)).filter(isReady);
    const expected = { Deployment: [name], ScaledObject: [name], TriggerAuthentication: [name] };
    const got = { Deployment: left.Deployment, ScaledObject: left.ScaledObject, TriggerAuthentication: left.TriggerAuthentication };
    if (JSON.stringify(got) !== JSON.stringify(expected) || left.ReplicaSet!.length !== 1 || left.Pod!.length !== 1 || ready.length !== 1) {
      throw new Error(`not one of each yet: ${JSON.stringify(left)}, ${ready.length} Ready`);
    }
  }, 60_000);
}

async function undeployAndExpectNothingLeft(version: FunctionVersionRecord): Promise<void> {
  await h.undeploy(version);
  await h.reconcile();
  await expectNothingLeft(keyOf(version));
}

describe('kube-apiserver restarting in the middle of a pass', () => {
  it('fails that step, and the passes after the restart finish the workload once, with no object twice', async () => {
    const version = await putVersion(h.owner.accountId);
    await h.deploy(version, {});
    stopApiServerAfter = 'TriggerAuthentication';
    try {
      await h.reconcile({ allowErrors: true });
    } finally {
      stopApiServerAfter = undefined;
    }
    expect(h.errors).toHaveLength(1);
    expect(h.errors[0]).toMatch(new RegExp(`^apply ${keyOf(version)}: .*(ECONNREFUSED|socket hang up|ECONNRESET)`));
    // While it is down, a pass fails as a whole (nothing can be observed) and changes nothing.
    await expect(h.controller.reconcile()).rejects.toThrow();

    await h.plane.startApiServer();
    await eventually(() => h.reconcile(), 30_000);
    expect(h.applied).toEqual([keyOf(version)]);
    await expectOneOfEach(keyOf(version));
    await eventually(async () => {
      if ((await h.statusOf(version)).status !== 'ACTIVE') throw new Error('not ACTIVE yet');
    }, 60_000);
    await undeployAndExpectNothingLeft(version);
  });
});

describe('two controllers reconciling at once (its Deployment is one replica, Recreate, but one can be run by hand beside it)', () => {
  it('make one set of objects between them, and neither meets a conflict', async () => {
    const version = await putVersion(h.owner.accountId);
    await h.deploy(version, {});
    const otherErrors: string[] = [];
    const other = h.newController(otherErrors);
    await Promise.all([h.reconcile(), other.reconcile()]);
    expect(otherErrors).toEqual([]);
    await expectOneOfEach(keyOf(version));
    await Promise.all([h.undeploy(version)]);
    await Promise.all([h.reconcile(), other.reconcile()]);
    expect(otherErrors).toEqual([]);
    await expectNothingLeft(keyOf(version));
  });
});

describe('another field manager editing what the controller set', () => {
  it('meets the conflict itself (409), and the controller takes the field back at resync without one', async () => {
    const version = await putVersion(h.owner.accountId);
    await h.deploy(version, {});
    const key = keyOf(version);
    await h.reconcile();
    const objects = k8s.KubernetesObjectApi.makeApiClient(h.admin);
    const edit = {
      apiVersion: 'apps/v1',
      kind: 'Deployment',
      metadata: { name: workloadName(key), namespace: NS },
      spec: { template: { spec: { containers: [{ name: 'worker', image: 'example.com/hand-edited:1' }] } } },
    };
    const conflict = await objects.patch(edit, undefined, undefined, 'kubectl', false, k8s.PatchStrategy.ServerSideApply).then(
      () => undefined,
      (error: { code?: number }) => error.code,
    );
    expect(conflict).toBe(409);
    await objects.patch(edit, undefined, undefined, 'kubectl', true, k8s.PatchStrategy.ServerSideApply);
    const workerImage = async () =>
      (await h.admin.makeApiClient(k8s.AppsV1Api).readNamespacedDeployment({ name: workloadName(key), namespace: NS })).spec!.template.spec!.containers.find((c) => c.name === 'worker')!.image;
    expect(await workerImage()).toBe('example.com/hand-edited:1');

    h.clockSkewMs = 601_000;
    try {
      await h.reconcile();
    } finally {
      h.clockSkewMs = 0;
    }
    expect(h.applied).toEqual([key]);
    expect(await workerImage()).not.toBe('example.com/hand-edited:1');
    await undeployAndExpectNothingLeft(version);
  });
});

describe('the controller’s own RBAC taken away (its RoleBinding in nvcf-functions deleted)', () => {
  it('fails its passes without failing the version or making half a workload, and catches up once the binding is back', async () => {
    const rbac = h.admin.makeApiClient(k8s.RbacAuthorizationV1Api);
    const binding = await rbac.readNamespacedRoleBinding({ name: K8S.controllerName, namespace: NS });
    await rbac.deleteNamespacedRoleBinding({ name: K8S.controllerName, namespace: NS });
    const version = await putVersion(h.owner.accountId);
    await h.deploy(version, {});
    await eventually(async () => {
      const refused = await h.controller.reconcile().then(() => undefined, (error: { code?: number; body?: unknown }) => error);
      if (refused?.code !== 403) throw new Error(`not yet refused: ${JSON.stringify(refused)}`);
      expect(String(refused.body)).toContain('system:serviceaccount:nvcf-system:nvcf-gpu-agent');
    });
    expect((await h.statusOf(version)).status).toBe('DEPLOYING');
    expect(await h.leftInFunctionsNamespace(keyOf(version))).toEqual(NOTHING_LEFT);

    await rbac.createNamespacedRoleBinding({ namespace: NS, body: { metadata: { name: binding.metadata!.name, labels: binding.metadata!.labels }, roleRef: binding.roleRef, subjects: binding.subjects } });
    await eventually(() => h.reconcile());
    await expectOneOfEach(keyOf(version));
    await undeployAndExpectNothingLeft(version);
  });
});

describe('nvcf-functions deleted, with the platform objects in it, and created again by the CDK app', () => {
  it('fails the passes in between without failing the version, then makes the workload again once', async () => {
    const version = await putVersion(h.owner.accountId);
    await h.deploy(version, {});
    await h.reconcile();
    await expectOneOfEach(keyOf(version));
    const core = h.admin.makeApiClient(k8s.CoreV1Api);
    await core.deleteNamespace({ name: NS });
    await eventually(async () => {
      const left = await core.readNamespace({ name: NS }).then(() => true, (error: { code?: number }) => (error.code === 404 ? false : Promise.reject(error)));
      if (left) throw new Error(`${NS} still terminating`);
    }, 90_000);
    // Its Role there went with it, and it may not create nvcf-functions (RBAC and the admission policy): passes fail until the platform is back.
    const refused = await h.controller.reconcile().then(() => undefined, (error: { code?: number }) => error.code);
    expect(refused).toBe(403);
    expect((await h.statusOf(version)).status).not.toBe('ERROR');

    const objects = k8s.KubernetesObjectApi.makeApiClient(h.admin);
    for (const object of templateObjects().filter((o) => (o.kind === 'Namespace' && o.metadata.name === NS) || o.metadata.namespace === NS)) {
      await objects.create(object as k8s.KubernetesObject);
    }
    await eventually(() => h.reconcile(), 30_000);
    await expectOneOfEach(keyOf(version));
    expect((await h.statusOf(version)).status).not.toBe('ERROR');
    await undeployAndExpectNothingLeft(version);
  });
});

describe('an object the API server refuses for a field of the wrong type', () => {
  it('is reported in healthInfo once (server-side apply answers 500 for it), not retried on every pass', async () => {
    // What the API server answers such an apply: 500, not 422 (so a status code alone would call it transient).
    const typed = { apiVersion: 'apps/v1', kind: 'Deployment', metadata: { name: 'typed', namespace: NS } };
    const spec = { selector: { matchLabels: { a: 'b' } }, template: { metadata: { labels: { a: 'b' } }, spec: { containers: [{ name: 'c', image: 'x', ports: [{ containerPort: '8000' }] }] } } };
    const answer = await h.controllerApi.apply({ ...typed, spec }).then(() => undefined, (error: { code?: number }) => error.code);
    expect(answer).toBe(500);
    // A record that bypassed the API's validation: its port is a string.
    const record = await putVersion(h.owner.accountId, { inferencePort: '8000' as unknown as number });
    const version = await deployVersion(record, { status: 'DEPLOYING', specification: { minInstances: 1, maxInstances: 1 } });
    const key = keyOf(version);
    // The pass that meets the refusal records it (no step error); the next one reports it and does not apply again.
    await h.reconcile();
    expect(h.applied).toEqual([key]);
    await h.reconcile();
    expect(h.applied).toEqual([]);
    const stored = await h.statusOf(version);
    expect(stored.status).toBe('ERROR');
    expect(stored.deployment!.healthInfo![0]!.error).toMatch(new RegExp(`^Kubernetes refuses the workload's Deployment ${workloadName(key)}: .*failed to create typed patch object.*containerPort: expected numeric`));
    expect((await h.leftInFunctionsNamespace(key)).Deployment).toEqual([]);
    await undeployAndExpectNothingLeft(version);
  });
});
