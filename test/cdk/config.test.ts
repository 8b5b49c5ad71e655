import { App, RemovalPolicy } from 'aws-cdk-lib';
import { Annotations, Match } from 'aws-cdk-lib/assertions';
import { describe, expect, it } from 'vitest';
import { DEFAULT_MAX_RECEIVE_COUNT } from '../../core/limits';
import { ConfigError, DEFAULTS, instanceArch, resolveConfig, type GpuNodegroupProps } from '../../lib/config';
import { configFromContext } from '../../lib/context';
import { NvcfStack } from '../../lib/nvcf-stack';
import { ENV, testApp } from './support';

const gpu = (overrides: Partial<GpuNodegroupProps> & Record<string, unknown> = {}) =>
  ({ name: 'L4', instanceTypes: ['g6.xlarge'], ...overrides }) as GpuNodegroupProps;

describe('defaults', () => {
  it('resolves an empty configuration to the documented defaults', () => {
    const config = resolveConfig();

    expect(config.gpus).toEqual([{ name: 'L4', instanceTypes: ['g6.xlarge'], minNodes: 0, maxNodes: 2, diskSizeGiB: 200, capacityType: 'ON_DEMAND', arch: 'amd64' }]);
    expect(config).toMatchObject({
      gpuCluster: true,
      endpointAccess: 'public-and-private',
      kubernetesVersion: '1.35',
      dataRemovalPolicy: RemovalPolicy.RETAIN,
      objectExpirationDays: 1,
      corsAllowedOrigins: ['*'],
      queueEncryption: 'sqs-managed',
      maxReceiveCount: DEFAULT_MAX_RECEIVE_COUNT,
      authorizerCacheSeconds: 300,
      throttlingRateLimit: DEFAULTS.throttlingRateLimit,
      throttlingBurstLimit: DEFAULTS.throttlingBurstLimit,
      chartVersions: { keda: '2.21.1', nvidiaDevicePlugin: '0.18.2', clusterAutoscaler: '9.56.0' },
      tritonImage: 'nvcr.io/nvidia/tritonserver:25.01-py3',
      warnings: [],
    });
  });

  it('picks the Cluster Autoscaler chart whose appVersion matches the Kubernetes minor', () => {
    expect(resolveConfig({ kubernetesVersion: '1.35' }).chartVersions.clusterAutoscaler).toBe('9.56.0');
    expect(resolveConfig({ kubernetesVersion: '1.34' }).chartVersions.clusterAutoscaler).toBe('9.53.0');
  });

  it('takes an explicit Cluster Autoscaler chart for a Kubernetes minor it has no default for', () => {
    expect(resolveConfig({ kubernetesVersion: '1.36', chartVersions: { clusterAutoscaler: '9.60.0' } }).chartVersions).toMatchObject({ clusterAutoscaler: '9.60.0', keda: '2.21.1' });
  });

  it('recognises Graviton GPU instances (g5g) as arm64 and the others as amd64', () => {
    expect(instanceArch('g5g.xlarge')).toBe('arm64');
    expect(instanceArch('t4g.large')).toBe('arm64');
    expect(instanceArch('g6.xlarge')).toBe('amd64');
    expect(instanceArch('p5.48xlarge')).toBe('amd64');
    expect(instanceArch('g4dn.xlarge')).toBe('amd64');
  });
});

describe('invalid configuration fails synth with what to fix', () => {
  const rejects = (props: Parameters<typeof resolveConfig>[0], message: RegExp) => {
    expect(() => resolveConfig(props)).toThrow(ConfigError);
    expect(() => resolveConfig(props)).toThrow(message);
  };

  it('rejects an empty GPU list', () => rejects({ gpus: [] }, /gpus is empty; configure at least one GPU type/));
  it('rejects a GPU list that is not a list', () => rejects({ gpus: { name: 'L4' } as never }, /gpus must be a list of GPU entries/));
  it('rejects a GPU entry that is not an object', () => rejects({ gpus: ['L4'] as never }, /gpus\[0\] must be an object like/));
  it('rejects unknown fields in a GPU entry', () => rejects({ gpus: [gpu({ max: 3 })] }, /gpus\[0\] has unknown field\(s\) "max"; allowed fields are name, instanceTypes/));
  it('rejects a GPU entry without a name', () => rejects({ gpus: [gpu({ name: undefined })] }, /gpus\[0\]\.name must be a GPU type name/));
  it('rejects a GPU name with spaces', () => rejects({ gpus: [gpu({ name: 'L 4' })] }, /gpus\[0\]\.name/));
  it('rejects duplicate GPU names regardless of case', () => rejects({ gpus: [gpu(), gpu({ name: 'l4' })] }, /lists "l4" more than once/));
  it('rejects a GPU entry without instance types', () => rejects({ gpus: [gpu({ instanceTypes: [] })] }, /gpus\[0\]\.instanceTypes must not be empty/));
  it('rejects a malformed instance type string', () => rejects({ gpus: [gpu({ instanceTypes: ['g6-xlarge'] })] }, /gpus\[0\]\.instanceTypes\[0\] must be an EC2 instance type such as "g6\.xlarge", got "g6-xlarge"/));
  it('rejects an instance type that has no GPU', () => rejects({ gpus: [gpu({ instanceTypes: ['m7i.large'] })] }, /"m7i\.large" is not a GPU instance type/));
  it('rejects Graviton and x86 instance types in one GPU entry', () => rejects({ gpus: [gpu({ instanceTypes: ['g5g.xlarge', 'g5.xlarge'] })] }, /mixes Graviton \(arm64\) and x86/));
  it('rejects minNodes greater than maxNodes', () => rejects({ gpus: [gpu({ minNodes: 3, maxNodes: 2 })] }, /gpus\[0\] \(L4\) has minNodes 3 greater than maxNodes 2/));
  it('rejects a negative minNodes', () => rejects({ gpus: [gpu({ minNodes: -1 })] }, /gpus\[0\]\.minNodes must be an integer from 0/));
  it('rejects a maxNodes of zero (a managed nodegroup needs at least one)', () => rejects({ gpus: [gpu({ maxNodes: 0 })] }, /gpus\[0\]\.maxNodes must be an integer from 1/));
  it('rejects a fractional node count', () => rejects({ gpus: [gpu({ maxNodes: 1.5 })] }, /maxNodes must be an integer/));
  it('rejects an unknown capacity type', () => rejects({ gpus: [gpu({ capacityType: 'RESERVED' as never })] }, /capacityType must be one of "ON_DEMAND", "SPOT"/));
  it('rejects a malformed system instance type', () => rejects({ systemInstanceType: 'large' }, /systemInstanceType must be an EC2 instance type/));
  it('rejects systemMinNodes greater than systemMaxNodes', () => rejects({ systemMinNodes: 4, systemMaxNodes: 3 }, /systemMinNodes 4 is greater than systemMaxNodes 3/));
  it('rejects an unknown endpoint access mode', () => rejects({ endpointAccess: 'public' as never }, /endpointAccess must be one of "public-and-private", "private"/));
  it('rejects a malformed public endpoint CIDR', () => rejects({ publicEndpointCidrs: ['10.0.0.300/8'] }, /publicEndpointCidrs contains "10\.0\.0\.300\/8"/));
  it('rejects a Kubernetes version the bundled kubectl cannot manage', () => rejects({ kubernetesVersion: '1.30' }, /kubernetesVersion must be one of "1\.34", "1\.35", "1\.36"/));
  it('rejects a chart version range', () => rejects({ chartVersions: { keda: '^2.21.0' } }, /chartVersions\.keda must be an exact chart version/));
  it('rejects a Kubernetes minor without a known Cluster Autoscaler chart unless one is given', () =>
    rejects({ kubernetesVersion: '1.36' }, /no Cluster Autoscaler chart is known for Kubernetes 1\.36; set chartVersions\.clusterAutoscaler to the chart whose appVersion is 1\.36\.x/));
  it('rejects a Triton image without a tag or digest', () => rejects({ tritonImage: 'nvcr.io/nvidia/tritonserver' }, /tritonImage must be a container image pinned by tag or digest/));
  it('rejects a cluster admin that is not a role ARN', () => rejects({ clusterAdminRoleArns: ['arn:aws:iam::123456789012:user/alice'] }, /clusterAdminRoleArns contains .* not an IAM role ARN/));
  it('rejects an authorizer cache beyond API Gateway’s hour', () => rejects({ authorizerCacheSeconds: 3601 }, /authorizerCacheSeconds must be an integer from 0 to 3600/));
  it('rejects a zero throttling rate', () => rejects({ throttlingRateLimit: 0 }, /throttlingRateLimit must be an integer from 1/));
  it('rejects a log retention CloudWatch does not offer', () => rejects({ logRetentionDays: 10 }, /logRetentionDays must be one of 1, 3, 5, 7, 14, 30/));
  it('rejects an object expiration of zero days', () => rejects({ objectExpirationDays: 0 }, /objectExpirationDays must be an integer from 1/));
  it('rejects an empty CORS origin list', () => rejects({ corsAllowedOrigins: [] }, /corsAllowedOrigins must not be empty/));
  it('rejects an unknown queue encryption', () => rejects({ queueEncryption: 'sse-s3' as never }, /queueEncryption must be one of "sqs-managed", "kms"/));
  it('rejects a maxReceiveCount SQS does not allow', () => rejects({ maxReceiveCount: 0 }, /maxReceiveCount must be an integer from 1 to 1000/));
  it('rejects an unknown log level', () => rejects({ logLevel: 'TRACE' as never }, /logLevel must be one of "DEBUG", "INFO", "WARN", "ERROR"/));
  it('rejects a malformed alarm e-mail', () => rejects({ alarmEmail: 'ops' }, /alarmEmail must be an e-mail address/));
  it('rejects a removal policy other than retain or destroy', () => rejects({ dataRemovalPolicy: RemovalPolicy.SNAPSHOT }, /dataRemovalPolicy must be one of/));

  it('fails the stack itself, before any resource is created', () => {
    const app = new App({ context: { 'aws:cdk:bundling-stacks': [] } });

    expect(() => new NvcfStack(app, 'Nvcf', { gpus: [gpu({ minNodes: 5, maxNodes: 1 })] })).toThrow(/minNodes 5 greater than maxNodes 1; raise maxNodes or lower minNodes/);
  });
});

describe('GPU instance types', () => {
  it('accepts the GPU instance types of core/gpu-instance-types.ts without a warning', () => {
    expect(resolveConfig({ gpus: [gpu({ instanceTypes: ['g6e.12xlarge', 'g6e.xlarge'] })] }).warnings).toEqual([]);
  });

  it('synthesizes an unknown GPU instance type, with a warning that the platform assumes one GPU per instance', () => {
    const { warnings } = resolveConfig({ gpus: [gpu({ instanceTypes: ['g7.xlarge'] })] });
    expect(warnings).toEqual([expect.stringMatching(/L4 instance type "g7\.xlarge" is not in core\/gpu-instance-types\.ts; the platform assumes it has one NVIDIA GPU/)]);
  });

  it('reports that warning on the stack, where cdk synth shows it', () => {
    const test = testApp();
    try {
      const stack = new NvcfStack(test.app, 'Nvcf', { env: ENV, gpuCluster: false, gpus: [gpu({ instanceTypes: ['g7.xlarge'] })] });

      Annotations.fromStack(stack).hasWarning('/Nvcf', Match.stringLikeRegexp('g7\\.xlarge.*assumes it has one NVIDIA GPU'));
    } finally {
      test.dispose();
    }
  });
});

describe('context', () => {
  const read = (context: Record<string, unknown>) => configFromContext(new App({ context }).node);

  it('reads cdk.json values as they are', () => {
    const { stackName, config } = read({
      'nvcf:gpus': [{ name: 'A10G', instanceTypes: ['g5.xlarge'], minNodes: 0, maxNodes: 1 }],
      'nvcf:gpuCluster': false,
      'nvcf:throttlingRateLimit': 50,
    });

    expect(stackName).toBe('Nvcf');
    expect(config).toEqual({ gpus: [{ name: 'A10G', instanceTypes: ['g5.xlarge'], minNodes: 0, maxNodes: 1 }], gpuCluster: false, throttlingRateLimit: 50 });
  });

  it('parses -c strings into JSON, lists, numbers, booleans and removal policies', () => {
    const { stackName, config } = read({
      'nvcf:stackName': 'NvcfDev',
      'nvcf:gpus': '[{"name":"L40S","instanceTypes":["g6e.xlarge"]}]',
      'nvcf:corsAllowedOrigins': 'https://a.example, https://b.example',
      'nvcf:authorizerCacheSeconds': '0',
      'nvcf:bundleAwsSdk': 'true',
      'nvcf:dataRemovalPolicy': 'destroy',
      'nvcf:tritonImage': 'nvcr.io/nvidia/tritonserver:25.02-py3',
    });

    expect(stackName).toBe('NvcfDev');
    expect(config).toEqual({
      gpus: [{ name: 'L40S', instanceTypes: ['g6e.xlarge'] }],
      corsAllowedOrigins: ['https://a.example', 'https://b.example'],
      authorizerCacheSeconds: 0,
      bundleAwsSdk: true,
      dataRemovalPolicy: RemovalPolicy.DESTROY,
      tritonImage: 'nvcr.io/nvidia/tritonserver:25.02-py3',
    });
  });

  it('rejects a misspelt nvcf: key instead of silently using a default', () => {
    expect(() => read({ 'nvcf:gpu': '[]' })).toThrow(/unknown context key\(s\) nvcf:gpu; known keys are .*nvcf:gpus/);
  });

  it('rejects GPU JSON that does not parse', () => {
    expect(() => read({ 'nvcf:gpus': '[{name:"L4"}]' })).toThrow(/context nvcf:gpus is not valid JSON/);
  });

  it('rejects a number that is not a number', () => {
    expect(() => read({ 'nvcf:throttlingBurstLimit': 'lots' })).toThrow(/context nvcf:throttlingBurstLimit must be a number, got "lots"/);
  });

  it('rejects a boolean that is not true or false', () => {
    expect(() => read({ 'nvcf:gpuCluster': 'no' })).toThrow(/context nvcf:gpuCluster must be true or false, got "no"/);
  });

  it('rejects a removal policy other than retain or destroy', () => {
    expect(() => read({ 'nvcf:dataRemovalPolicy': 'snapshot' })).toThrow(/must be "retain" or "destroy"/);
  });

  it('rejects a stack name CloudFormation would refuse', () => {
    expect(() => read({ 'nvcf:stackName': 'my stack' })).toThrow(/nvcf:stackName must be a CloudFormation stack name/);
  });
});
