import { describe, expect, it } from 'vitest';
import { mergeSpecificationUpdate, nodegroupFor, scalingFor, validateSpecifications } from '../../core/deployments';
import type { GpuOffer } from '../../core/gpus';
import type { FunctionVersionRecord, GpuSpecification } from '../../core/model';

const OFFERS: GpuOffer[] = [
  {
    gpu: 'L40S',
    instanceTypes: ['g6e.xlarge', 'g6e.2xlarge'],
    nodegroups: [
      { name: 'ng-small', gpu: 'L40S', instanceTypes: ['g6e.xlarge'], minNodes: 0, scaling: { minSize: 0, maxSize: 2, desiredSize: 0 } },
      { name: 'ng-large', gpu: 'L40S', instanceTypes: ['g6e.2xlarge'], minNodes: 0, scaling: { minSize: 0, maxSize: 2, desiredSize: 0 } },
    ],
  },
];

const CONTAINER = { functionId: 'f', versionId: 'v' } as FunctionVersionRecord;
const HELM = { ...CONTAINER, helmChart: 'https://charts.example/x.tgz' } as FunctionVersionRecord;
const SPEC = { gpu: 'L40S', instanceType: 'g6e.xlarge', minInstances: 1, maxInstances: 2 };

describe('nodegroup scaling for deployments', () => {
  it('raises min, desired and (only if needed) max to the instances deployments require', () => {
    expect(scalingFor({ minSize: 0, maxSize: 2, desiredSize: 0 }, 1)).toEqual({ minSize: 1, maxSize: 2, desiredSize: 1 });
    expect(scalingFor({ minSize: 1, maxSize: 2, desiredSize: 2 }, 3)).toEqual({ minSize: 3, maxSize: 3, desiredSize: 3 });
  });

  it('keeps nodes above the minimum when raising', () => {
    expect(scalingFor({ minSize: 1, maxSize: 5, desiredSize: 4 }, 2)).toEqual({ minSize: 2, maxSize: 5, desiredSize: 4 });
  });

  it('lowers only the minimum, leaving the nodes to the cluster autoscaler, and never the maximum', () => {
    expect(scalingFor({ minSize: 4, maxSize: 6, desiredSize: 5 }, 1)).toEqual({ minSize: 1, maxSize: 6, desiredSize: 5 });
    expect(scalingFor({ minSize: 2, maxSize: 2, desiredSize: 2 }, 0)).toEqual({ minSize: 0, maxSize: 2, desiredSize: 2 });
  });

  it('changes nothing when the requirement is met exactly', () => {
    expect(scalingFor({ minSize: 2, maxSize: 3, desiredSize: 3 }, 2)).toEqual({ minSize: 2, maxSize: 3, desiredSize: 3 });
  });

  it('places a specification on the nodegroup with its GPU label and instance type', () => {
    expect(nodegroupFor({ gpu: 'L40S', instanceType: 'g6e.2xlarge' }, OFFERS)?.name).toBe('ng-large');
    expect(nodegroupFor({ gpu: 'L4', instanceType: 'g6e.2xlarge' }, OFFERS)).toBeUndefined();
  });
});

describe('deployment specification rules', () => {
  it('defaults maxRequestConcurrency to 1 and keeps the optional fields', () => {
    const [spec] = validateSpecifications(CONTAINER, [{ ...SPEC, backend: 'AWS', regions: ['us-east-1'] }], OFFERS, 'local');
    expect(spec).toEqual({ ...SPEC, backend: 'AWS', regions: ['us-east-1'], maxRequestConcurrency: 1 });
  });

  it('accepts the cluster group name as backend', () => {
    expect(() => validateSpecifications(CONTAINER, [{ ...SPEC, backend: 'gpu-cluster' }], OFFERS, 'gpu-cluster')).not.toThrow();
  });

  it('names every mistake at once', () => {
    const call = () =>
      validateSpecifications(
        CONTAINER,
        [
          { ...SPEC, gpu: 'H100' },
          { ...SPEC, instanceType: 'p5.48xlarge', backend: 'GFN' },
          { ...SPEC, configuration: { replicas: 1 } },
          { ...SPEC },
        ],
        OFFERS,
        'local',
      );
    expect(call).toThrow(/deploymentSpecifications\[0\]\.gpu: GPU "H100" is not offered; offered GPUs: L40S/);
    expect(call).toThrow(/deploymentSpecifications\[1\]\.instanceType: instance type "p5\.48xlarge" is not offered with GPU L40S; offered: g6e\.xlarge, g6e\.2xlarge/);
    expect(call).toThrow(/deploymentSpecifications\[1\]\.backend: backend "GFN" is not offered; use "AWS" or "local"/);
    expect(call).toThrow(/deploymentSpecifications\[2\]\.configuration: .*should be empty for container based functions/);
    expect(call).toThrow(/deploymentSpecifications\[3\]: gpu L40S with instanceType g6e\.xlarge is already given in deploymentSpecifications\[2\]/);
  });

  it('takes a configuration for a Helm function', () => {
    expect(validateSpecifications(HELM, [{ ...SPEC, configuration: { replicas: 1 } }], OFFERS, 'local')[0]!.configuration).toEqual({ replicas: 1 });
  });
});

describe('deployment updates', () => {
  const deployed: GpuSpecification[] = [{ ...SPEC, maxRequestConcurrency: 4, backend: 'AWS', configuration: { a: 1 } }];

  it('changes min, max and concurrency only, keeping the deployed concurrency when omitted', () => {
    const given = [{ ...SPEC, minInstances: 0, maxInstances: 5 }];
    expect(mergeSpecificationUpdate(deployed, [{ ...given[0]!, maxRequestConcurrency: 1 }], given)).toEqual([
      { ...deployed[0], minInstances: 0, maxInstances: 5, maxRequestConcurrency: 4 },
    ]);
  });

  it('accepts fixed fields repeated with their deployed values', () => {
    const given = [{ ...SPEC, backend: 'AWS', configuration: { a: 1 }, maxRequestConcurrency: 8 }];
    expect(mergeSpecificationUpdate(deployed, [{ ...given[0]!, maxRequestConcurrency: 8 }], given)[0]!.maxRequestConcurrency).toBe(8);
  });

  it('refuses another GPU or instance type, a changed fixed field and a missing specification', () => {
    const otherType = [{ ...SPEC, instanceType: 'g6e.2xlarge' }];
    expect(() => mergeSpecificationUpdate(deployed, [{ ...otherType[0]!, maxRequestConcurrency: 1 }], otherType)).toThrow(
      /deploymentSpecifications\[0\]: gpu L40S with instanceType g6e\.2xlarge is not deployed.*missing L40S\/g6e\.xlarge/,
    );
    const otherBackend = [{ ...SPEC, backend: 'local' }];
    expect(() => mergeSpecificationUpdate(deployed, [{ ...otherBackend[0]!, maxRequestConcurrency: 1 }], otherBackend)).toThrow(
      /deploymentSpecifications\[0\]\.backend: cannot be changed by an update \(deployed: "AWS"\)/,
    );
  });
});
