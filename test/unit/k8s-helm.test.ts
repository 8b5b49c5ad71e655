/**
 * Helm functions with the real helm binary: the example chart in
 * examples/helm/echo renders to allowed kinds only, values from the
 * deployment configuration reach the manifests, and a chart with a
 * forbidden kind is refused.
 */
import { execFileSync } from 'node:child_process';
import { chmodSync, cpSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
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

describe('a chart made by helm create', () => {
  it('is accepted: its test Pod (run only by helm test) is not rendered', async () => {
    execFileSync(helmBinary(), ['create', join(scratch, 'created')]);
    const manifests = await helm.template(release(join(scratch, 'created')));
    expect((loadAllYaml(manifests) as { kind: string }[]).map((o) => o.kind).sort()).toEqual(['Deployment', 'Service', 'ServiceAccount']);
    expect(rejectRenderedChart(manifests, NAMESPACE)).toBeUndefined();
  });

  it('is refused with a hook that an install would run, of a forbidden kind', async () => {
    const chart = join(scratch, 'with-hook');
    cpSync(ECHO_CHART, chart, { recursive: true });
    writeFileSync(
      join(chart, 'templates', 'migrate.yaml'),
      'apiVersion: batch/v1\nkind: Job\nmetadata:\n  name: migrate\n  annotations:\n    "helm.sh/hook": pre-install,pre-upgrade\nspec:\n  template:\n    spec:\n      restartPolicy: Never\n      containers:\n        - name: m\n          image: busybox\n',
    );
    expect(rejectRenderedChart(await helm.template(release(chart)), NAMESPACE)).toContain('Job "migrate" (kind not allowed)');
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

describe('helm failures', () => {
  /** A stand-in helm that prints `stdout`, says `stderr` and exits with `code`, whatever it is asked. */
  function scriptedHelm(name: string, { stdout = '', stderr = '', code = 1 }: { stdout?: string; stderr?: string; code?: number }): HelmCli {
    const path = join(scratch, name);
    writeFileSync(path, `#!/bin/sh\ncat >/dev/null\nprintf '%s' '${stdout}'\nprintf '%s' '${stderr}' >&2\nexit ${code}\n`);
    chmodSync(path, 0o755);
    return new HelmCli(path);
  }

  it.each([
    { what: 'a chart URL that answers 404', command: 'template', stderr: 'Error: failed to fetch https://charts.example.com/echo-0.1.0.tgz : 404 Not Found', transient: false },
    { what: 'a template that does not render', command: 'template', stderr: 'Error: template: echo/templates/deployment.yaml:12:20: executing "x" at <.Values.nope.deep>: nil pointer', transient: false },
    { what: 'a chart repository that times out', command: 'template', stderr: 'Error: Get "https://charts.example.com/echo-0.1.0.tgz": dial tcp 10.0.0.1:443: i/o timeout', transient: true },
    { what: 'an API server that cannot be reached', command: 'upgrade', stderr: 'Error: UPGRADE FAILED: kubernetes cluster unreachable: Get "https://10.100.0.1:443/version": dial tcp: connection refused', transient: true },
    { what: 'a release busy with another operation', command: 'upgrade', stderr: 'Error: UPGRADE FAILED: another operation (install/upgrade/rollback) is in progress', transient: true },
    { what: 'an admission webhook that denies the chart', command: 'upgrade', stderr: 'Error: UPGRADE FAILED: admission webhook "validate.example.com" denied the request: no', transient: false },
    { what: 'an immutable field the chart changes', command: 'upgrade', stderr: 'Error: UPGRADE FAILED: cannot patch "echo" with kind Deployment: Deployment.apps "echo" is invalid: spec.selector: field is immutable', transient: false },
  ])('calls $what (helm $command) transient: $transient', async ({ command, stderr, transient }) => {
    const cli = scriptedHelm(`helm-${command}-${transient}`, { stderr });
    const run = command === 'template' ? cli.template(release(ECHO_CHART)) : cli.upgrade(release(ECHO_CHART));
    const error = await run.catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(HelmError);
    expect(error).toMatchObject({ transient, message: expect.stringContaining(stderr) });
  });

  it('reads a release’s status, and no release as undefined', async () => {
    expect(await scriptedHelm('helm-status', { stdout: '{"name":"nvcf-v1-0","info":{"status":"deployed"}}', code: 0 }).status(release(ECHO_CHART))).toBe('deployed');
    expect(await scriptedHelm('helm-status-missing', { stderr: 'Error: release: not found' }).status(release(ECHO_CHART))).toBeUndefined();
  });

  it('runs helm with a writable HOME, not the image’s read-only one', async () => {
    const path = join(scratch, 'helm-home');
    writeFileSync(path, '#!/bin/sh\ncat >/dev/null\nprintf "%s" "$HOME"\n');
    chmodSync(path, 0o755);
    const home = await new HelmCli(path).template(release(ECHO_CHART));
    expect(home.startsWith(tmpdir())).toBe(true);
  });
});
