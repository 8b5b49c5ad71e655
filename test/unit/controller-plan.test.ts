import { testVersion } from '../support/k8s-fixtures';
import { describe, expect, it } from 'vitest';
import type { FunctionVersionRecord, GpuSpecification } from '../../core/model';
import { desiredInstances, desiredWorkloads, isHalted, planWorkloads, workloadFingerprint } from '../../gpu-agent/controller/plan';

const spec = (overrides: Partial<GpuSpecification> = {}): GpuSpecification => ({
  gpu: 'L4',
  instanceType: 'g6.xlarge',
  minInstances: 1,
  maxInstances: 4,
  maxRequestConcurrency: 2,
  ...overrides,
});

const version = (versionId: string, status: FunctionVersionRecord['status'], specs = [spec()]): FunctionVersionRecord => {
  const base = testVersion({ versionId, status });
  return { ...base, deployment: status === 'INACTIVE' ? undefined : { ...base.deployment!, specifications: specs } };
};

describe('controller plan', () => {
  it('wants one workload per specification of every deployed version', () => {
    const workloads = desiredWorkloads([
      version('v1', 'ACTIVE', [spec(), spec({ gpu: 'L40S', instanceType: 'g6e.xlarge' })]),
      version('v2', 'DEPLOYING'),
      version('v3', 'INACTIVE'),
    ]);
    expect(workloads.map((w) => w.key)).toEqual(['v1-0', 'v1-1', 'v2-0']);
  });

  it('keeps the workloads of a version in ERROR so its failures stay visible', () => {
    expect(desiredWorkloads([version('v1', 'ERROR')]).map((w) => w.key)).toEqual(['v1-0']);
  });

  it('halts the workload of a version in ERROR: applied again (its fingerprint changes), running fingerprints unchanged', () => {
    const [active] = desiredWorkloads([version('v1', 'ACTIVE')]);
    const [deploying] = desiredWorkloads([version('v1', 'DEPLOYING')]);
    const [failed] = desiredWorkloads([version('v1', 'ERROR')]);
    expect([isHalted(active!), isHalted(failed!)]).toEqual([false, true]);
    expect(workloadFingerprint(active!)).toBe(workloadFingerprint(deploying!));
    expect(planWorkloads([failed!], new Map([['v1-0', workloadFingerprint(active!)]])).apply).toEqual([failed]);
  });

  it('applies new and changed workloads and removes undeployed ones', () => {
    const [unchanged, changed] = desiredWorkloads([version('v1', 'ACTIVE'), version('v2', 'ACTIVE')]);
    const existing = new Map([
      [unchanged!.key, workloadFingerprint(unchanged!)],
      [changed!.key, 'an older definition'],
      ['v9-0', 'undeployed since'],
    ]);
    const plan = planWorkloads([unchanged!, changed!], existing);
    expect(plan.apply.map((w) => w.key)).toEqual(['v2-0']);
    expect(plan.remove).toEqual(['v9-0']);
  });

  it('does nothing when everything runs as applied (safe to run twice)', () => {
    const desired = desiredWorkloads([version('v1', 'ACTIVE')]);
    const existing = new Map(desired.map((w) => [w.key, workloadFingerprint(w)]));
    expect(planWorkloads(desired, existing)).toEqual({ apply: [], remove: [] });
  });

  it('fingerprints a definition the same whatever the order of keys in the stored objects', () => {
    const [workload] = desiredWorkloads([version('v1', 'ACTIVE', [spec({ configuration: { image: { repository: 'r', tag: 't' }, replicas: 2 } })])]);
    const reordered = {
      ...workload!,
      version: { ...workload!.version, health: { expectedStatusCode: 200, timeout: 'PT10S', port: 8000, uri: '/health', protocol: 'HTTP' as const } },
      spec: { ...workload!.spec, configuration: { replicas: 2, image: { tag: 't', repository: 'r' } } },
    };
    expect(workloadFingerprint(reordered)).toBe(workloadFingerprint(workload!));
    expect(workloadFingerprint({ ...reordered, spec: { ...reordered.spec, configuration: { replicas: 2, image: { tag: 'u', repository: 'r' } } } })).not.toBe(workloadFingerprint(workload!));
  });

  it('keeps the fingerprint short and free of the definition’s values, which may be secrets', () => {
    const [workload] = desiredWorkloads([{ ...version('v1', 'ACTIVE'), containerEnvironment: [{ key: 'API_KEY', value: 'very-secret' }] }]);
    expect(workloadFingerprint(workload!)).toMatch(/^[0-9a-f]{64}$/);
  });

  it.each([
    { depth: 0, expected: 1, why: 'min instances with an empty queue' },
    { depth: 3, expected: 2, why: 'ceil(3 / 2) instances' },
    { depth: 100, expected: 4, why: 'never more than max' },
  ])('runs $expected instance(s) for $depth queued requests: $why', ({ depth, expected }) => {
    expect(desiredInstances(spec(), depth)).toBe(expected);
  });

  it('scales a min-0 workload to zero and back up on demand', () => {
    expect(desiredInstances(spec({ minInstances: 0 }), 0)).toBe(0);
    expect(desiredInstances(spec({ minInstances: 0 }), 1)).toBe(1);
  });
});
