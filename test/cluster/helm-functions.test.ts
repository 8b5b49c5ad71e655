/**
 * Helm functions through the whole loop on a real control plane (harness.ts):
 * the real helm binary renders and installs examples/helm/echo and a chart of
 * our own with a ServiceAccount, Role and RoleBinding, acting with the
 * controller's ServiceAccount token under the template's fenced RBAC and
 * admission policy. The same chart written outside nvcf-fn-* is refused by
 * the policy's real CEL evaluation; a chart whose Role asks for more than the
 * controller holds is refused by RBAC and reported in healthInfo; a chart
 * namespace deleted behind the controller's back comes back; a release a
 * dying helm left pending-upgrade is rolled back and upgraded.
 */
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import * as k8s from '@kubernetes/client-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { FunctionVersionRecord } from '../../core/model';
import { K8S } from '../../core/names';
import { HelmCli, HelmError } from '../../gpu-agent/controller/k8s/helm';
import { helmNamespace, workloadName } from '../../gpu-agent/controller/k8s/objects';
import { putVersion } from '../support/function-versions';
import { helmBinary } from '../support/helm-binary';
import { isReady, NOTHING_LEFT, startHarness, type Harness } from './harness';
import { CONTROLLER, eventually } from './platform';

const ECHO_CHART = fileURLToPath(new URL('../../examples/helm/echo', import.meta.url));
const RBAC_CHART = fileURLToPath(new URL('./charts/with-rbac', import.meta.url));
const POLICY = 'nvcf-gpu-agent-controller-scope';

let h: Harness;
let core: k8s.CoreV1Api;
let apps: k8s.AppsV1Api;
let rbac: k8s.RbacAuthorizationV1Api;

beforeAll(async () => {
  h = await startHarness();
  core = h.admin.makeApiClient(k8s.CoreV1Api);
  apps = h.admin.makeApiClient(k8s.AppsV1Api);
  rbac = h.admin.makeApiClient(k8s.RbacAuthorizationV1Api);
});

afterAll(async () => {
  await h?.stop();
});

const helmVersion = (chart: string, serviceName: string) => putVersion(h.owner.accountId, { containerImage: undefined, helmChart: chart, helmChartServiceName: serviceName });
const keyOf = (version: FunctionVersionRecord) => `${version.versionId}-0`;
const names = (items: { metadata?: { name?: string } }[]) => items.map((item) => item.metadata!.name!).sort();

async function namespaceGone(name: string): Promise<void> {
  await eventually(async () => {
    const found = await core.readNamespace({ name }).catch((error: { code?: number }) => (error.code === 404 ? undefined : Promise.reject(error)));
    if (found) throw new Error(`namespace ${name} still there (${found.status?.phase})`);
  }, 90_000);
}

/** Undeploys and runs controller passes until the chart's namespace and everything in nvcf-functions are gone. */
async function undeployAndExpectNothingLeft(version: FunctionVersionRecord): Promise<void> {
  await h.undeploy(version);
  const key = keyOf(version);
  await eventually(async () => {
    await h.reconcile();
    const left = await h.leftInFunctionsNamespace(key);
    if (JSON.stringify(left) !== JSON.stringify(NOTHING_LEFT)) throw new Error(`left behind: ${JSON.stringify(left)}`);
    const charts = await core.listNamespace({ labelSelector: `${K8S.workloadLabel}=${key}` });
    if (charts.items.some((ns) => !ns.metadata?.deletionTimestamp)) throw new Error('chart namespace not deleted yet');
  }, 90_000);
  await namespaceGone(helmNamespace(key));
}

async function expectActive(version: FunctionVersionRecord): Promise<void> {
  await eventually(async () => {
    if ((await h.statusOf(version)).status !== 'ACTIVE') throw new Error('not ACTIVE yet');
  }, 60_000);
}

describe('the example chart examples/helm/echo', () => {
  it('is installed by the controller through its fenced role into nvcf-fn-<key>, its pod runs on its GPU, the worker on a system node, and the version becomes ACTIVE', async () => {
    const version = await helmVersion(ECHO_CHART, 'echo');
    await h.deploy(version, { gpu: 'L4', instanceType: 'g6.xlarge', configuration: { gpu: 'L4' } });
    const key = keyOf(version);
    const namespace = helmNamespace(key);
    await eventually(() => h.reconcile());

    const created = await core.readNamespace({ name: namespace });
    expect(created.metadata?.labels?.['pod-security.kubernetes.io/enforce']).toBe('baseline');
    expect(names((await apps.listNamespacedDeployment({ namespace })).items)).toEqual([`${workloadName(key)}-echo`]);
    expect(names((await core.listNamespacedService({ namespace })).items)).toEqual(['echo']);
    // helm keeps its release record as a Secret there, beside the version's secrets file; the controller may write Secrets in that namespace only.
    expect(names((await core.listNamespacedSecret({ namespace })).items)).toEqual(['nvcf-secrets', `sh.helm.release.v1.${workloadName(key)}.v1`]);
    const chartPods = await eventually(async () => {
      const ready = (await core.listNamespacedPod({ namespace })).items.filter(isReady);
      if (ready.length !== 1) throw new Error('chart pod not Ready');
      return ready;
    }, 60_000);
    expect(chartPods[0]!.spec?.nodeName).toBe('l4-a');
    const [worker] = await eventually(async () => {
      const ready = (await h.podsOf(key)).filter(isReady);
      if (ready.length !== 1) throw new Error('worker pod not Ready');
      return ready;
    }, 60_000);
    expect(worker!.spec?.nodeName).toBe('system-a');
    await expectActive(version);

    // Current release: a second pass neither upgrades nor re-applies.
    await h.reconcile();
    expect(h.applied).toEqual([]);
    expect(names((await core.listNamespacedSecret({ namespace })).items)).toEqual(['nvcf-secrets', `sh.helm.release.v1.${workloadName(key)}.v1`]);

    await undeployAndExpectNothingLeft(version);
  });
});

describe('a chart of our own with a ServiceAccount, a Role and a RoleBinding', () => {
  let version: FunctionVersionRecord;

  it('is installed with its identity in the chart namespace, and its pod runs as that ServiceAccount', async () => {
    version = await helmVersion(RBAC_CHART, 'api');
    await h.deploy(version, { configuration: { gpu: 'L40S' } });
    const namespace = helmNamespace(keyOf(version));
    await eventually(() => h.reconcile());
    const release = workloadName(keyOf(version));
    // Less `default`, which the controller-manager adds to every namespace in its own time.
    const accounts = names((await core.listNamespacedServiceAccount({ namespace })).items).filter((name) => name !== 'default');
    expect(accounts).toEqual([`${release}-api`]);
    expect(names((await rbac.listNamespacedRole({ namespace })).items)).toEqual([`${release}-api`]);
    // The chart's binding, and the controller's own one to the Helm-function role.
    expect(names((await rbac.listNamespacedRoleBinding({ namespace })).items)).toEqual([`${release}-api`, K8S.controllerName].sort());
    const [pod] = await eventually(async () => {
      const ready = (await core.listNamespacedPod({ namespace })).items.filter(isReady);
      if (ready.length !== 1) throw new Error('chart pod not Ready');
      return ready;
    }, 60_000);
    expect(pod!.spec?.serviceAccountName).toBe(`${release}-api`);
    expect(['l40s-a', 'l40s-b']).toContain(pod!.spec?.nodeName);
    await expectActive(version);
  });

  it('is installed again when its namespace is deleted behind the controller’s back, without failing the version while the namespace terminates', async () => {
    const namespace = helmNamespace(keyOf(version));
    const release = workloadName(keyOf(version));
    await core.deleteNamespace({ name: namespace });
    // Passes while the namespace terminates may fail a step (nothing can be created in it), but never the version.
    await h.reconcile({ allowErrors: true });
    await namespaceGone(namespace);
    await eventually(async () => {
      await h.reconcile({ allowErrors: true });
      if ((await rbac.listNamespacedRole({ namespace }).then((roles) => roles.items.length, () => 0)) === 0) throw new Error('chart not reinstalled yet');
    }, 60_000);
    await h.reconcile();
    expect(names((await rbac.listNamespacedRole({ namespace })).items)).toEqual([`${release}-api`]);
    expect(names((await core.listNamespacedSecret({ namespace })).items)).toEqual(['nvcf-secrets', `sh.helm.release.v1.${release}.v1`]);
    expect((await h.statusOf(version)).status).toBe('ACTIVE');
  });

  it('is refused by the admission policy outside nvcf-fn-*, even where RBAC would allow the controller every write', async () => {
    await core.createNamespace({ body: { metadata: { name: 'team-a' } } });
    // A binding RBAC allows: cluster-admin grants the controller the Helm-function role in team-a.
    await rbac.createNamespacedRoleBinding({
      namespace: 'team-a',
      body: { metadata: { name: 'mistake' }, roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: K8S.helmFunctionRole }, subjects: [{ kind: 'ServiceAccount', ...CONTROLLER }] },
    });
    const helm = new HelmCli(helmBinary());
    const refused = await eventually(async () => {
      const error = await helm.upgrade({ release: 'stray', chart: RBAC_CHART, namespace: 'team-a', values: {} }).then(
        () => new Error('helm installed the chart into team-a'),
        (caught: unknown) => caught,
      );
      // Until the binding reaches the authorizer, RBAC refuses first; the policy's refusal is what must stay.
      if (!(error instanceof HelmError) || !error.message.includes(POLICY)) throw error;
      return error;
    });
    expect(refused.message).toContain(`ValidatingAdmissionPolicy '${POLICY}'`);
    expect(refused.transient).toBe(false);
    expect(names((await core.listNamespacedServiceAccount({ namespace: 'team-a' })).items).filter((name) => name !== 'default')).toEqual([]);
    expect((await rbac.listNamespacedRole({ namespace: 'team-a' })).items).toEqual([]);
  });

  it('leaves nothing behind on undeploy: worker objects, chart objects, release records and the namespace', async () => {
    await undeployAndExpectNothingLeft(version);
  });
});

describe('a chart whose Role grants more than the controller holds', () => {
  it('is refused by RBAC (no escalation), reported in healthInfo, and leaves nothing behind on undeploy', async () => {
    const version = await helmVersion(RBAC_CHART, 'api');
    await h.deploy(version, { configuration: { gpu: 'L40S', extraRules: [{ apiGroups: [''], resources: ['persistentvolumeclaims'], verbs: ['create'] }] } });
    await eventually(async () => {
      await h.reconcile();
      if ((await h.statusOf(version)).status !== 'ERROR') throw new Error('not reported yet');
    });
    const [info] = (await h.statusOf(version)).deployment!.healthInfo!;
    expect(info!.error).toMatch(/^Helm chart .*with-rbac: helm upgrade failed: .*is forbidden: .*attempting to grant RBAC permissions not currently held/s);
    // No worker for a chart that did not install.
    expect((await h.leftInFunctionsNamespace(keyOf(version))).Deployment).toEqual([]);
    await undeployAndExpectNothingLeft(version);
  });
});

describe('a release left pending-upgrade by a helm that died mid-upgrade (its controller pod replaced)', () => {
  it('is rolled back and upgraded by the next pass instead of refusing every upgrade for ever', async () => {
    const version = await helmVersion(ECHO_CHART, 'echo');
    await h.deploy(version, { gpu: 'L4', instanceType: 'g6.xlarge', configuration: { gpu: 'L4' } });
    await eventually(() => h.reconcile());
    const release = { release: workloadName(keyOf(version)), namespace: helmNamespace(keyOf(version)) };
    const helm = new HelmCli(helmBinary());
    // An upgrade that waits for a pod that cannot be scheduled, killed while it waits, as the controller's pod would be.
    const dying = spawn(helmBinary(), ['upgrade', release.release, ECHO_CHART, '--namespace', release.namespace, '--wait', '--timeout', '5m', '--set', 'gpu=none'], { env: process.env, stdio: 'ignore' });
    await eventually(async () => {
      if ((await helm.status(release)) !== 'pending-upgrade') throw new Error('upgrade not pending yet');
    });
    dying.kill('SIGKILL');
    await new Promise((resolve) => dying.once('close', resolve));

    // The next pass that must upgrade (here the resync; on EKS also the restarted controller's first pass).
    h.clockSkewMs = 601_000;
    try {
      await h.reconcile();
    } finally {
      h.clockSkewMs = 0;
    }
    expect(h.applied).toEqual([keyOf(version)]);
    expect(await helm.status(release)).toBe('deployed');
    const chart = await apps.readNamespacedDeployment({ name: `${release.release}-echo`, namespace: release.namespace });
    expect(chart.spec?.template.spec?.nodeSelector).toEqual({ 'nvcf.io/gpu': 'L4' });
    await h.reconcile();
    expect((await h.statusOf(version)).status).not.toBe('ERROR');
    await undeployAndExpectNothingLeft(version);
  });
});
