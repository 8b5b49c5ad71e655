/**
 * The records the platform keeps, as stored in DynamoDB (see DESIGN.md "Data").
 * API shapes (nvcf-api.md) are derived from these in the Lambdas.
 */
import type { RateLimitRecord } from './rate-limits';
import type { SealedSecrets } from './secrets';

/** Function version status; NVCF's DEGRADED/DEGRADING are not produced yet. */
export const FUNCTION_STATUSES = ['INACTIVE', 'DEPLOYING', 'ACTIVE', 'ERROR'] as const;
export type FunctionStatus = (typeof FUNCTION_STATUSES)[number];

export interface KeyValue {
  key: string;
  value: string;
}

export interface ArtifactReference {
  name: string;
  version: string;
  uri: string;
}

export interface HealthCheck {
  protocol: 'HTTP' | 'gRPC';
  uri: string;
  port: number;
  /** ISO-8601 duration, e.g. PT10S. */
  timeout: string;
  expectedStatusCode: number;
}

/** One entry of `deploymentSpecifications`. */
export interface GpuSpecification {
  gpu: string;
  instanceType: string;
  minInstances: number;
  maxInstances: number;
  maxRequestConcurrency: number;
  backend?: string;
  availabilityZones?: string[];
  clusters?: string[];
  regions?: string[];
  attributes?: string[];
  preferredOrder?: number;
  configuration?: Record<string, unknown>;
}

export interface HealthInfo {
  gpu: string;
  backend?: string;
  instanceType?: string;
  error: string;
}

/** The deployment of a version, kept on the version's item while deployed. */
export interface DeploymentRecord {
  specifications: GpuSpecification[];
  createdAt: string;
  updatedAt: string;
  queueUrl: string;
  deadLetterQueueUrl: string;
  healthInfo?: HealthInfo[];
  /** While DEPLOYING: what the last health check of a starting instance answered, and how long it has left (shown as healthInfo). */
  healthProgress?: HealthInfo;
}

/** An item of the Functions table: one function version. */
export interface FunctionVersionRecord {
  functionId: string;
  versionId: string;
  /** Owning account (`ncaId` on the wire). */
  accountId: string;
  name: string;
  status: FunctionStatus;
  createdAt: string;
  updatedAt: string;
  functionType: 'DEFAULT' | 'STREAMING';
  apiBodyFormat: 'PREDICT_V2' | 'CUSTOM';
  inferenceUrl: string;
  inferencePort: number;
  healthUri: string;
  health: HealthCheck;
  containerImage?: string;
  containerArgs?: string;
  containerEnvironment?: KeyValue[];
  models?: ArtifactReference[];
  resources?: ArtifactReference[];
  helmChart?: string;
  helmChartServiceName?: string;
  description?: string;
  tags?: string[];
  /** Sealed (core/secrets.ts): only the worker's identity opens them; only names ever leave the API. */
  secrets?: SealedSecrets;
  deployment?: DeploymentRecord;
  /** NVCF's rateLimit of the version (core/rate-limits.ts); absent: unlimited. */
  rateLimit?: RateLimitRecord;
}

/** Invocation status; on the wire QUEUED is `pending-evaluation`, and so on. CANCELED is our extension (nvcf-api.md §7). */
export const INVOCATION_STATUSES = ['QUEUED', 'IN_PROGRESS', 'FULFILLED', 'ERRORED', 'CANCELED'] as const;
export type InvocationStatus = (typeof INVOCATION_STATUSES)[number];

export const WIRE_STATUS: Record<InvocationStatus, string> = {
  QUEUED: 'pending-evaluation',
  IN_PROGRESS: 'in-progress',
  FULFILLED: 'fulfilled',
  ERRORED: 'errored',
  CANCELED: 'canceled',
};

export function isTerminal(status: InvocationStatus): boolean {
  return status === 'FULFILLED' || status === 'ERRORED' || status === 'CANCELED';
}
