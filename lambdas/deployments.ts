/**
 * D1–D4: deploy, get, update and undeploy a function version (nvcf-api.md §2.2).
 * The rules and their order live in core/deployments.ts; this file parses
 * requests and renders NVCF's Deployment object.
 */
import * as z from 'zod';
import { deploymentRequestSchema } from '../core/deployment-schemas';
import { deployVersion, requireDeployedVersion, undeployVersion, updateDeployment, type DeployedVersion } from '../core/deployments';
import type { GpuSpecification } from '../core/model';
import { badRequest } from '../core/problem';
import { createApiHandler } from './http/handler';
import { logger } from './http/logger';
import { parseJsonBody, parseQuery, queryFlag, versionIds, type ApiRequest } from './http/request';
import { json, type ApiResponse } from './http/responses';
import { toFunctionJson } from './shared/function-json';

function specificationJson(spec: GpuSpecification) {
  return {
    gpu: spec.gpu,
    backend: spec.backend,
    instanceType: spec.instanceType,
    minInstances: spec.minInstances,
    maxInstances: spec.maxInstances,
    maxRequestConcurrency: spec.maxRequestConcurrency,
    availabilityZones: spec.availabilityZones,
    clusters: spec.clusters,
    regions: spec.regions,
    attributes: spec.attributes,
    preferredOrder: spec.preferredOrder,
    configuration: spec.configuration,
  };
}

/** NVCF's Deployment object; healthInfo only when instances failed, no requestQueueUrl. */
function deploymentJson(record: DeployedVersion) {
  const { deployment } = record;
  return {
    deployment: {
      functionId: record.functionId,
      functionVersionId: record.versionId,
      functionName: record.name,
      ncaId: record.accountId,
      functionStatus: record.status,
      deploymentSpecifications: deployment.specifications.map(specificationJson),
      createdAt: deployment.createdAt,
      healthInfo: deployment.healthInfo?.length ? deployment.healthInfo : undefined,
    },
  };
}

async function deploy(req: ApiRequest): Promise<ApiResponse> {
  const [functionId, versionId] = versionIds(req);
  const request = parseJsonBody(req, deploymentRequestSchema);
  return json(200, deploymentJson(await deployVersion(req.caller.accountId, functionId, versionId, request)));
}

async function getDeployment(req: ApiRequest): Promise<ApiResponse> {
  const [functionId, versionId] = versionIds(req);
  return json(200, deploymentJson(await requireDeployedVersion(req.caller.accountId, functionId, versionId)));
}

async function update(req: ApiRequest): Promise<ApiResponse> {
  const [functionId, versionId] = versionIds(req);
  const request = parseJsonBody(req, deploymentRequestSchema);
  return json(200, deploymentJson(await updateDeployment(req.caller.accountId, functionId, versionId, request)));
}

const undeployQuery = z.object({ graceful: queryFlag });

async function undeploy(req: ApiRequest): Promise<ApiResponse> {
  const [functionId, versionId] = versionIds(req);
  const graceful = parseQuery(req, undeployQuery).graceful === true;
  const outcome = await undeployVersion(req.caller.accountId, functionId, versionId, graceful);
  if (outcome.nodegroupError) logger.error('GPU nodegroups not lowered after undeploy', { error: outcome.nodegroupError as Error, functionId, versionId });
  if (!outcome.undeployed) {
    throw badRequest(`Function id '${functionId}', version '${versionId}': Status ${outcome.version.status}, the function version is not deployed`);
  }
  if (!outcome.queuesRemoved) logger.info('version queues kept until drained', { functionId, versionId, graceful });
  return json(200, { function: toFunctionJson(outcome.version) });
}

/** Serves D1–D4 of core/routes.ts. */
export const handler = createApiHandler('deployments', { D1: deploy, D2: getDeployment, D3: update, D4: undeploy });
