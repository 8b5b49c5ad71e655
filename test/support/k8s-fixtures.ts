/** A function version and object context for the Kubernetes runtime's tests. */
import type { FunctionVersionRecord, GpuSpecification } from '../../core/model';
import { ENV } from '../../core/names';
import type { ObjectContext } from '../../gpu-agent/controller/k8s/objects';
import { desiredWorkloads, type Workload } from '../../gpu-agent/controller/plan';

export const CONTEXT: ObjectContext = {
  platform: { backend: 'AWS', environment: 'prod', region: 'us-east-1' },
  agentImages: { amd64: '123456789012.dkr.ecr.us-east-1.amazonaws.com/agent:amd64', arm64: '123456789012.dkr.ecr.us-east-1.amazonaws.com/agent:arm64' },
  systemArch: 'amd64',
  agentEnv: { [ENV.functionsTable]: 'Functions', [ENV.bucket]: 'platform-bucket', AWS_REGION: 'us-east-1' },
  tritonImage: 'nvcr.io/nvidia/tritonserver:25.01-py3',
};

export function testVersion(overrides: Partial<FunctionVersionRecord> = {}, spec: Partial<GpuSpecification> = {}): FunctionVersionRecord {
  return {
    functionId: 'f0f0f0f0-0000-4000-8000-000000000001',
    versionId: 'v0v0v0v0-0000-4000-8000-000000000002',
    accountId: 'acct-1',
    name: 'echo',
    status: 'DEPLOYING',
    createdAt: '2026-01-01T00:00:00Z',
    updatedAt: '2026-01-01T00:00:00Z',
    functionType: 'DEFAULT',
    apiBodyFormat: 'CUSTOM',
    inferenceUrl: '/echo',
    inferencePort: 8000,
    healthUri: '/health',
    health: { protocol: 'HTTP', uri: '/health', port: 8000, timeout: 'PT10S', expectedStatusCode: 200 },
    containerImage: 'nvcr.io/example/echo:1.0',
    containerArgs: '--workers 2',
    containerEnvironment: [{ key: 'MODEL', value: 'small' }],
    deployment: {
      specifications: [{ gpu: 'L40S', instanceType: 'g6e.xlarge', minInstances: 1, maxInstances: 3, maxRequestConcurrency: 4, ...spec }],
      createdAt: '2026-01-01T00:00:00Z',
      updatedAt: '2026-01-01T00:00:00Z',
      queueUrl: 'https://sqs.us-east-1.amazonaws.com/123456789012/nvcf-v0v0v0v0-0000-4000-8000-000000000002',
      deadLetterQueueUrl: 'https://sqs.us-east-1.amazonaws.com/123456789012/nvcf-v0v0v0v0-0000-4000-8000-000000000002-dlq',
    },
    ...overrides,
  };
}

export const workloadOf = (version: FunctionVersionRecord): Workload => desiredWorkloads([version])[0]!;
