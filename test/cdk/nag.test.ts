/**
 * cdk-nag's AwsSolutions pack over the whole stack: no finding may be left
 * unacknowledged, and every acknowledgement must say why. Two configurations
 * cover every optional resource: the default (with EKS) and one that turns
 * on everything else (private endpoint, Graviton GPUs, KMS queues, alarm
 * e-mail, destroyable data, the invocation domain with gRPC through the ALB's
 * HTTPS listener).
 */
import { RemovalPolicy } from 'aws-cdk-lib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { nagCheck, type NagResult } from './support';

let defaults: NagResult;
let everything: NagResult;
beforeAll(() => {
  defaults = nagCheck();
  everything = nagCheck({
    endpointAccess: 'private',
    clusterAdminRoleArns: ['arn:aws:iam::123456789012:role/PlatformAdmin'],
    gpus: [
      { name: 'T4G', instanceTypes: ['g5g.xlarge'], capacityType: 'SPOT' },
      { name: 'L40S', instanceTypes: ['g6e.xlarge'] },
    ],
    queueEncryption: 'kms',
    alarmEmail: 'ops@example.com',
    dataRemovalPolicy: RemovalPolicy.DESTROY,
    // The custom invocation domain with the ALB's HTTPS listener and gRPC target group.
    invocationDomain: 'example.com',
    invocationCertificateArn: 'arn:aws:acm:us-east-1:123456789012:certificate/abcd-1234',
    invocationOriginCertificateArn: 'arn:aws:acm:us-east-1:123456789012:certificate/origin-5678',
  });
});
afterAll(() => {
  if (process.env.NVCF_PRINT_NAG_ACKNOWLEDGEMENTS) {
    const unique = new Map(everything.acknowledgements.concat(defaults.acknowledgements).map((a) => [`${a.id} ${a.reason}`, a]));
    console.log([...unique.values()].map((a) => `${a.path}\t${a.id}\t${a.reason}`).join('\n'));
  }
});

describe('cdk-nag AwsSolutions', () => {
  it('reports no unacknowledged finding for the default configuration', () => {
    expect(defaults.findings).toEqual([]);
  });

  it('reports no unacknowledged finding with every optional resource turned on', () => {
    expect(everything.findings).toEqual([]);
  });

  it('carries a reason a reviewer can judge on every acknowledgement', () => {
    const acknowledgements = [...defaults.acknowledgements, ...everything.acknowledgements];
    expect(acknowledgements.length).toBeGreaterThan(0);
    for (const { id, reason } of acknowledgements) {
      expect(id).toMatch(/^AwsSolutions::AwsSolutions-/);
      expect(reason.length, `${id}: "${reason}"`).toBeGreaterThanOrEqual(60);
    }
  });

  it('acknowledges no finding outright for whole rules that could hide new wildcards', () => {
    const bare = [...defaults.acknowledgements, ...everything.acknowledgements].filter((a) => /^AwsSolutions::AwsSolutions-IAM[45]$/.test(a.id));
    expect(bare).toEqual([]);
  });
});
