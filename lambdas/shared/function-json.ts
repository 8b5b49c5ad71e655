/**
 * NVCF's Function object (nvcf-api.md §2.1) from a stored version: the
 * `function` of F1/F2/F5/F8 and D4 responses and the items of F3/F4 lists.
 * Secret values never leave the platform; only their names are shown.
 */
import type { InstanceRecord } from '../../core/functions';
import type { FunctionVersionRecord, HealthCheck } from '../../core/model';

/** Instance statuses of NVCF by the worker's state; other states are shown upper-cased as they are. */
const INSTANCE_STATUS: Record<string, string> = {
  READY: 'ACTIVE',
  ERROR: 'ERRORED',
  UNHEALTHY: 'ERRORED',
};

function instanceJson(record: FunctionVersionRecord, instance: InstanceRecord) {
  const state = instance.state.toUpperCase();
  return {
    instanceId: instance.instanceId,
    functionId: record.functionId,
    functionVersionId: record.versionId,
    instanceType: instance.instanceType,
    instanceStatus: INSTANCE_STATUS[state] ?? state,
    gpu: instance.gpu,
    backend: instance.backend,
    location: instance.location,
    ncaId: record.accountId,
    instanceCreatedAt: instance.createdAt,
    instanceUpdatedAt: instance.lastSeen,
  };
}

export interface FunctionJsonOptions {
  /** The version's live instances; `activeInstances` is shown when there are any. */
  instances?: readonly InstanceRecord[];
  /** Show the names of the version's secrets (F5's `includeSecrets`, default true). */
  includeSecrets?: boolean;
}

/** A gRPC function's health check is grpc.health.v1 Check of "" on its port: no HTTP path or status code to show. */
function healthJson(health: HealthCheck): Partial<HealthCheck> {
  return health.protocol === 'gRPC' ? { protocol: health.protocol, port: health.port, timeout: health.timeout } : health;
}

/** The Function object of a version; absent fields are omitted by JSON serialization. */
export function toFunctionJson(record: FunctionVersionRecord, options: FunctionJsonOptions = {}) {
  const { instances = [], includeSecrets = true } = options;
  return {
    id: record.functionId,
    versionId: record.versionId,
    ncaId: record.accountId,
    name: record.name,
    status: record.status,
    functionType: record.functionType,
    createdAt: record.createdAt,
    healthUri: record.health.protocol === 'gRPC' ? undefined : record.healthUri,
    inferenceUrl: record.inferenceUrl,
    inferencePort: record.inferencePort,
    containerImage: record.containerImage,
    containerArgs: record.containerArgs,
    containerEnvironment: record.containerEnvironment,
    apiBodyFormat: record.apiBodyFormat,
    models: record.models,
    resources: record.resources,
    helmChart: record.helmChart,
    helmChartServiceName: record.helmChartServiceName,
    description: record.description,
    tags: record.tags,
    health: healthJson(record.health),
    secrets: includeSecrets && record.secrets?.names.length ? record.secrets.names : undefined,
    rateLimit: record.rateLimit,
    activeInstances: instances.length > 0 ? instances.map((instance) => instanceJson(record, instance)) : undefined,
  };
}

/**
 * The Function object an authorized account sees of a version shared with it
 * (core/access.ts): what identifies it and whether it can be invoked, nothing
 * of how it is built or run (image, environment, models, health, secrets,
 * instances).
 */
export function toSharedFunctionJson(record: FunctionVersionRecord) {
  return {
    id: record.functionId,
    versionId: record.versionId,
    ncaId: record.accountId,
    name: record.name,
    status: record.status,
    functionType: record.functionType,
    apiBodyFormat: record.apiBodyFormat,
    createdAt: record.createdAt,
    description: record.description,
    ownedByDifferentAccount: true,
  };
}
