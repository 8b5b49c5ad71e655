import { describe, expect, it } from 'vitest';
import { GPU_INSTANCE_TYPES, gpusPerInstance, isKnownGpuInstanceType } from '../../core/gpu-instance-types';

describe('GPUs per instance type', () => {
  it.each([
    ['g4dn.xlarge', 1],
    ['g4dn.12xlarge', 4],
    ['g4dn.metal', 8],
    ['g5.48xlarge', 8],
    ['g5g.16xlarge', 2],
    ['g6.24xlarge', 4],
    ['g6e.12xlarge', 4],
    ['gr6.8xlarge', 1],
    ['p3.8xlarge', 4],
    ['p3dn.24xlarge', 8],
    ['p4de.24xlarge', 8],
    ['p5.4xlarge', 1],
    ['p5en.48xlarge', 8],
    ['p6-b200.48xlarge', 8],
  ])('knows %s has %i GPU(s)', (instanceType, gpus) => {
    expect(isKnownGpuInstanceType(instanceType)).toBe(true);
    expect(gpusPerInstance(instanceType)).toBe(gpus);
  });

  it('counts one GPU on an instance type it does not know', () => {
    expect(isKnownGpuInstanceType('g9.xlarge')).toBe(false);
    expect(gpusPerInstance('g9.xlarge')).toBe(1);
    expect(gpusPerInstance('toString')).toBe(1);
  });

  it('lists only GPU families, each with a power-of-two count', () => {
    for (const [instanceType, gpus] of Object.entries(GPU_INSTANCE_TYPES)) {
      expect(instanceType).toMatch(/^(g4dn|g5|g5g|g6|g6e|gr6|p3|p3dn|p4d|p4de|p5|p5e|p5en|p6-b200)\.(\d*x?large|metal)$/);
      expect([1, 2, 4, 8]).toContain(gpus);
    }
  });
});
