/**
 * Helm functions with the real helm binary: the example chart in
 * examples/helm/echo renders to allowed kinds only, values from the
 * deployment configuration reach the manifests, and a chart with a
 * forbidden kind is refused.
 */
import { cpSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadAllYaml } from '@kubernetes/client-node';
import { Deployment } from 'kubernetes-models/apps/v1';
import { Service } from 'kubernetes-models/v1';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { HelmCli, HelmError, rejectRenderedChart, type HelmRelease } from '../../gpu-agent/controller/k8s/helm';
import { helmBinary } from '../support/helm-binary';

const ECHO_CHART = fileURLToPath(new URL('../../examples/helm/echo', import.meta.url));
const NAMESPACE = 'nvcf-fn-v1-0';

let helm: HelmCli;
let scratch: string;
beforeAll(() => {
  helm = new HelmCli(helmBinary());
  scratch = mkdtempSync(join(tmpdir(), 'nvcf-helm-'));
});
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

const release = (chart: string, values: Record<string, unknown> = {}): HelmRelease => ({ release: 'nvcf-v1-0', chart, namespace: NAMESPACE, values });

describe('the echo example chart', () => {
  it('renders a Deployment and a Service only, which the kind check accepts and the Kubernetes schemas validate', async () => {
    const manifests = await helm.template(release(ECHO_CHART));
    expect(rejectRenderedChart(manifests, NAMESPACE)).toBeUndefined();
    const objects = loadAllYaml(manifests) as { kind: string }[];
    expect(objects.map((o) => o.kind).sort()).toEqual(['Deployment', 'Service']);
    new Deployment(objects.find((o) => o.kind === 'Deployment') as never).validate();
    new Service(objects.find((o) => o.kind === 'Service') as never).validate();
  });

  it('takes the deployment configuration as values overrides', async () => {
    const manifests = await helm.template(release(ECHO_CHART, { replicaCount: 3, gpu: 'L40S', serviceName: 'my-echo' }));
    const objects = loadAllYaml(manifests) as any[];
    const deployment = objects.find((o) => o.kind === 'Deployment');
    expect(deployment.spec.replicas).toBe(3);
    expect(deployment.spec.template.spec.nodeSelector).toEqual({ 'nvcf.io/gpu': 'L40S' });
    expect(objects.find((o) => o.kind === 'Service').metadata.name).toBe('my-echo');
  });
});

describe('a chart with a forbidden kind', () => {
  it('is refused, naming the object and the allowed kinds', async () => {
    const chart = join(scratch, 'rogue');
    cpSync(ECHO_CHART, chart, { recursive: true });
    writeFileSync(
      join(chart, 'templates', 'clusterrole.yaml'),
      'apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata:\n  name: everything\nrules:\n  - apiGroups: ["*"]\n    resources: ["*"]\n    verbs: ["*"]\n',
    );
    const rejection = rejectRenderedChart(await helm.template(release(chart)), NAMESPACE);
    expect(rejection).toContain('ClusterRole "everything" (kind not allowed)');
    expect(rejection).toContain('allowed kinds are Deployment, Service, ServiceAccount, Role, RoleBinding, ConfigMap, Secret');
  });

  it('is refused when it places an allowed kind in another namespace', () => {
    const manifests = 'apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: sneaky\n  namespace: kube-system\n';
    expect(rejectRenderedChart(manifests, NAMESPACE)).toContain('ConfigMap "sneaky" (in namespace "kube-system", not the release\'s)');
  });

  it('counts CRDs shipped in crds/ too', async () => {
    const chart = join(scratch, 'with-crd');
    cpSync(ECHO_CHART, chart, { recursive: true });
    mkdirSync(join(chart, 'crds'));
    writeFileSync(join(chart, 'crds', 'placeholder.yaml'), 'apiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\nmetadata:\n  name: widgets.example.com\n');
    expect(rejectRenderedChart(await helm.template(release(chart)), NAMESPACE)).toContain('CustomResourceDefinition "widgets.example.com"');
  });
});

it('reports what helm said when a chart cannot be rendered', async () => {
  await expect(helm.template(release(join(scratch, 'missing-chart')))).rejects.toThrow(HelmError);
  await expect(helm.template(release(join(scratch, 'missing-chart')))).rejects.toThrow(/helm template failed: .*missing-chart/);
});
