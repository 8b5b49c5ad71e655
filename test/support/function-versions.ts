/**
 * Function versions written straight into the Functions table, and deployed
 * as D1 would (queues, then a conditional status change), for tests of the
 * routes and the worker that act on existing versions.
 */
import { randomUUID } from 'node:crypto';
import { changeStatus, putNewVersion } from '../../core/functions';
import type { GpuSpecification, FunctionStatus, FunctionVersionRecord } from '../../core/model';
import { ensureDeploymentQueues, newDeploymentQueueNames } from '../../core/queues';

/** Stores an INACTIVE container function version owned by `accountId`. */
export async function putVersion(accountId: string, overrides: Partial<FunctionVersionRecord> = {}): Promise<FunctionVersionRecord> {
  const now = new Date().toISOString();
  const record: FunctionVersionRecord = {
    functionId: randomUUID(),
    versionId: randomUUID(),
    accountId,
    name: 'echo-fn',
    status: 'INACTIVE',
    createdAt: now,
    updatedAt: now,
    functionType: 'DEFAULT',
    apiBodyFormat: 'CUSTOM',
    inferenceUrl: '/echo',
    inferencePort: 8000,
    healthUri: '/health',
    health: { protocol: 'HTTP', uri: '/health', port: 8000, timeout: 'PT10S', expectedStatusCode: 200 },
    containerImage: 'nvcr.io/example/echo:1.0',
    ...overrides,
  };
  if (!(await putNewVersion(record))) throw new Error(`version ${record.versionId} exists already`);
  return record;
}

export const TEST_SPECIFICATION: GpuSpecification = { gpu: 'L40S', instanceType: 'g6e.xlarge', minInstances: 0, maxInstances: 1, maxRequestConcurrency: 1 };

/** Creates queues for a deployment of the version and moves it from INACTIVE to `status` with a deployment of `specification`. */
export async function deployVersion(
  record: FunctionVersionRecord,
  options: { status: Exclude<FunctionStatus, 'INACTIVE'>; specification?: Partial<GpuSpecification>; queueUrl?: string },
): Promise<FunctionVersionRecord> {
  const now = new Date().toISOString();
  const queues = await ensureDeploymentQueues(newDeploymentQueueNames(record.versionId, randomUUID().slice(0, 8)));
  const deployment = {
    specifications: [{ ...TEST_SPECIFICATION, ...options.specification }],
    createdAt: now,
    updatedAt: now,
    ...queues,
    ...(options.queueUrl ? { queueUrl: options.queueUrl } : {}),
  };
  const deployed = await changeStatus({ functionId: record.functionId, versionId: record.versionId, from: ['INACTIVE'], to: options.status, set: { deployment } });
  if (!deployed) throw new Error(`version ${record.versionId} was not INACTIVE`);
  return deployed;
}
