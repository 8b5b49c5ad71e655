/**
 * Q1–Q3: queue depth of deployed versions and position of a request
 * (nvcf-api.md §2.5). Depth counts waiting and in-flight messages.
 */
import { isDeployed, requireDeployedVersion, type DeployedVersion } from '../core/deployments';
import { listOwnedVersions } from '../core/functions';
import { queueCounts, queuePosition } from '../core/queues';
import { notFound } from '../core/problem';
import { createApiHandler } from './http/handler';
import type { RouteDocs } from './http/route-docs';
import { uuidParam, versionIds, type ApiRequest } from './http/request';
import { json, type ApiResponse } from './http/responses';

export async function queueEntry(version: DeployedVersion) {
  const counts = await queueCounts(version.deployment.queueUrl);
  return {
    functionVersionId: version.versionId,
    functionName: version.name,
    functionStatus: version.status,
    queueDepth: counts ? counts.waiting + counts.inFlight : 0,
  };
}

async function functionQueues(req: ApiRequest): Promise<ApiResponse> {
  const functionId = uuidParam(req, 'functionId');
  const versions = await listOwnedVersions(req.caller.accountId, functionId);
  if (versions.length === 0) throw notFound(`Function id '${functionId}' not found`);
  const queues = await Promise.all(versions.filter(isDeployed).map(queueEntry));
  return json(200, { functionId, queues });
}

async function versionQueue(req: ApiRequest): Promise<ApiResponse> {
  const [functionId, versionId] = versionIds(req);
  const version = await requireDeployedVersion(req.caller.accountId, functionId, versionId);
  return json(200, { functionId, queues: [await queueEntry(version)] });
}

async function requestPosition(req: ApiRequest): Promise<ApiResponse> {
  const requestId = uuidParam(req, 'requestId');
  const position = await queuePosition(req.caller.accountId, requestId);
  if (!position) throw notFound(`request '${requestId}' not found or expired`);
  return json(200, position);
}

const QUEUES_ANSWER = { status: 200, description: '`{functionId, queues: [{functionVersionId, functionName, functionStatus, queueDepth}]}`' } as const;

export const queueRouteDocs: RouteDocs = {
  Q1: { operationId: 'getFunctionQueues', summary: "Queue depth of a function's deployed versions", answer: QUEUES_ANSWER, errors: [404] },
  Q2: { operationId: 'getVersionQueue', summary: "Queue depth of a deployed version", answer: QUEUES_ANSWER, errors: [404] },
  Q3: { operationId: 'getQueuePosition', summary: "A request's position in its queue", answer: { status: 200, description: '`{functionId, functionVersionId, positionInQueue}`' }, errors: [404] },
};

/** Serves Q1–Q3 of core/routes.ts. */
export const handler = createApiHandler('queues', { Q1: functionQueues, Q2: versionQueue, Q3: requestPosition }, queueRouteDocs);
