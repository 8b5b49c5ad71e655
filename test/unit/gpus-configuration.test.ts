import { describe, expect, it } from 'vitest';
import { parseGpuConfiguration, stableUuid } from '../../core/gpus';

describe('NVCF_GPUS configuration', () => {
  it('reads GPUs with their instance types, accepting "name" for "gpu" and ignoring other fields', () => {
    expect(parseGpuConfiguration('[{"gpu":"L40S","instanceTypes":["g6e.xlarge","g6e.xlarge"]},{"name":"L4","instanceTypes":["g6.xlarge"],"maxNodes":2}]')).toEqual([
      { gpu: 'L40S', instanceTypes: ['g6e.xlarge'], nodegroups: [] },
      { gpu: 'L4', instanceTypes: ['g6.xlarge'], nodegroups: [] },
    ]);
  });

  it('names the field that is wrong', () => {
    expect(() => parseGpuConfiguration('[{"gpu":"L40S","instanceTypes":[]}]')).toThrow(
      /NVCF_GPUS is not valid: \[0\]\.instanceTypes: must list at least one instance type; expected e\.g\./,
    );
    expect(() => parseGpuConfiguration('[{"gpu":"L 40","instanceTypes":["x"]}]')).toThrow(/\[0\]\.gpu: must be a GPU name/);
  });

  it('refuses JSON that is not a list, an empty list and a GPU listed twice', () => {
    expect(() => parseGpuConfiguration('L40S')).toThrow(/NVCF_GPUS is not JSON/);
    expect(() => parseGpuConfiguration('{"gpu":"L40S"}')).toThrow(/NVCF_GPUS is not valid/);
    expect(() => parseGpuConfiguration('[]')).toThrow(/at least one GPU/);
    expect(() => parseGpuConfiguration('[{"gpu":"L4","instanceTypes":["a"]},{"gpu":"L4","instanceTypes":["b"]}]')).toThrow(/more than once/);
  });
});

describe('stable ids', () => {
  it('derives the same UUID from the same name and different ones from different names', () => {
    expect(stableUuid('cluster:a')).toBe(stableUuid('cluster:a'));
    expect(stableUuid('cluster:a')).not.toBe(stableUuid('cluster:b'));
    expect(stableUuid('cluster:a')).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-5[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
  });
});
