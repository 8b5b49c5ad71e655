/**
 * The whole controller loop on a real control plane (harness.ts): versions
 * deployed, updated and undeployed through the real deployment routes, our
 * Controller applying them under its own ServiceAccount, the real scheduler
 * placing pods on kwok's GPU nodes, and real workers started from each Ready
 * pod's environment making the version ACTIVE and serving a call.
 */
import * as k8s from '@kubernetes/client-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { FunctionVersionRecord } from '../../core/model';
import { K8S } from '../../core/names';
import { UNSCHEDULABLE_GRACE_MS } from '../../gpu-agent/controller/k8s/failures';
import { MANAGED_SELECTOR, workloadName } from '../../gpu-agent/controller/k8s/objects';
import { putVersion } from '../support/function-versions';
import { isReady, NOTHING_LEFT, NS, startHarness, type Harness } from './harness';
import { eventually } from './platform';

let h: Harness;

beforeAll(async () => {
  h = await startHarness();
});

afterAll(async () => {
  await h?.stop();
});

async function expectNothingLeft(key: string): Promise<void> {
  await eventually(async () => {
    const left = await h.leftInFunctionsNamespace(key);
    if (JSON.stringify(left) !== JSON.stringify(NOTHING_LEFT)) throw new Error(`left behind: ${JSON.stringify(left)}`);
  }, 60_000);
}

describe('a container function, deployed, updated and undeployed through the controller', () => {
  let version: FunctionVersionRecord;
  const key = () => `${version.versionId}-0`;

  it('is applied as a Deployment, ScaledObject and TriggerAuthentication the real API accepts, runs on its GPU and becomes ACTIVE once its instances are Ready', async () => {
    version = await putVersion(h.owner.accountId);
    await h.deploy(version, { minInstances: 2, maxInstances: 2 });
    // The controller's RBAC reaches the authorizer's cache shortly after the template's objects are created.
    await eventually(() => h.reconcile());
    expect(h.applied).toEqual([key()]);
    const left = await h.leftInFunctionsNamespace(key());
    expect(left.Deployment).toEqual([workloadName(key())]);
    expect(left.ScaledObject).toEqual([workloadName(key())]);
    expect(left.TriggerAuthentication).toEqual([workloadName(key())]);

    await h.scaleAsKeda(key(), 2);
    const ready = await eventually(async () => {
      const current = (await h.podsOf(key())).filter(isReady);
      if (current.length !== 2) throw new Error(`${current.length} of 2 pods Ready`);
      return current;
    }, 60_000);
    expect(ready.map((pod) => pod.spec?.nodeName).sort()).toEqual(['l40s-a', 'l40s-b']);
    await eventually(async () => {
      if ((await h.statusOf(version)).status !== 'ACTIVE') throw new Error('not ACTIVE yet');
    }, 60_000);
    expect(h.pods.running().sort()).toEqual(ready.map((pod) => pod.metadata!.name!).sort());

    // Served through the queue by workers that the pods' own environment configured.
    const call = await h.stack.call('POST', `/v2/nvcf/pexec/functions/${version.functionId}`, { key: h.owner.key, body: { message: 'hello', repeats: 2 } });
    expect(call.statusCode).toBe(200);
    expect(call.json).toBe('hellohello');

    await h.reconcile();
    expect(h.applied).toEqual([]);
  });

  it('rolls a PUT of the deployment one instance at a time without a surge pod (maxSurge 0) on full nodes, and keeps the replicas KEDA set', async () => {
    const live = new Set<string>();
    let mostLive = 0;
    const watching = await new k8s.Watch(h.admin).watch(
      `/api/v1/namespaces/${NS}/pods`,
      { labelSelector: `${K8S.workloadLabel}=${key()}` },
      (type, pod: k8s.V1Pod) => {
        const name = pod.metadata!.name!;
        if (type === 'DELETED' || pod.metadata?.deletionTimestamp) live.delete(name);
        else live.add(name);
        mostLive = Math.max(mostLive, live.size);
      },
      () => undefined,
    );
    try {
      await h.deploy(version, { minInstances: 2, maxInstances: 2, maxRequestConcurrency: 3 }, 'PUT');
      await h.reconcile();
      expect(h.applied).toEqual([key()]);
      const rolled = await eventually(async () => {
        const current = (await h.podsOf(key())).filter(isReady);
        const updated = current.filter((pod) => pod.spec?.containers.find((c) => c.name === 'worker')?.env?.some((e) => e.name === 'NVCF_WORKER_MAX_CONCURRENCY' && e.value === '3'));
        if (current.length !== 2 || updated.length !== 2) throw new Error(`${updated.length} of ${current.length} Ready pods updated`);
        return updated;
      }, 90_000);
      expect(rolled.map((pod) => pod.spec?.nodeName).sort()).toEqual(['l40s-a', 'l40s-b']);
    } finally {
      watching.abort();
    }
    // Never a third pod beside the two (a replacement may wait a moment for the GPU its terminating predecessor still holds).
    expect(mostLive).toBe(2);
    const deployment = await h.admin.makeApiClient(k8s.AppsV1Api).readNamespacedDeployment({ name: workloadName(key()), namespace: NS });
    expect(deployment.spec?.strategy?.rollingUpdate).toMatchObject({ maxSurge: 0, maxUnavailable: 1 });
    // The controller's apply does not own replicas: what KEDA set stays.
    expect(deployment.spec?.replicas).toBe(2);
    expect((await h.statusOf(version)).status).toBe('ACTIVE');
  });

  it('removes on undeploy everything it made and everything Kubernetes made from it, and the workers stop', async () => {
    await h.undeploy(version);
    await h.reconcile();
    await expectNothingLeft(key());
    await eventually(async () => {
      if (h.pods.running().length > 0) throw new Error(`workers still running: ${h.pods.running().join(', ')}`);
    });
    expect((await h.admin.makeApiClient(k8s.CoreV1Api).listNamespacedPod({ namespace: NS, labelSelector: MANAGED_SELECTOR })).items).toEqual([]);
    await h.reconcile();
    expect(h.applied).toEqual([]);
  });
});

describe('a container function whose GPU has no node in the cluster', () => {
  it('is reported in healthInfo with the scheduler’s words once its instance has waited out the grace for a new node', async () => {
    const version = await putVersion(h.owner.accountId);
    await h.deploy(version, { gpu: 'A10G', instanceType: 'g5.xlarge' });
    const key = `${version.versionId}-0`;
    await h.reconcile();
    await eventually(async () => {
      const waiting = (await h.podsOf(key)).filter((p) => p.status?.conditions?.some((c) => c.type === 'PodScheduled' && c.reason === 'Unschedulable'));
      if (waiting.length !== 1) throw new Error('no unschedulable pod yet');
    }, 60_000);
    // Within the grace the nodegroup may still bring a node: no failure yet.
    await h.reconcile();
    expect((await h.statusOf(version)).status).toBe('DEPLOYING');

    h.clockSkewMs = UNSCHEDULABLE_GRACE_MS;
    try {
      // The grace is as long as the resync period: the first pass re-applies the workload, the next reports.
      await h.reconcile();
      await h.reconcile();
    } finally {
      h.clockSkewMs = 0;
    }
    const stored = await h.statusOf(version);
    expect(stored.status).toBe('ERROR');
    expect(stored.deployment!.healthInfo).toHaveLength(1);
    expect(stored.deployment!.healthInfo![0]).toMatchObject({ gpu: 'A10G', instanceType: 'g5.xlarge' });
    expect(stored.deployment!.healthInfo![0]!.error).toMatch(
      /^an instance has waited 1\d min for a node \(scheduler: 0\/4 nodes are available: .*didn't match Pod's node affinity\/selector.*\); the nodegroup of GPU type A10G has no node with a free nvidia\.com\/gpu of this instance type: raise its maxNodes/,
    );

    await h.undeploy(version);
    await h.reconcile();
    await expectNothingLeft(key);
  });
});
