/**
 * D1–D4: deploy, get, update and undeploy a function version (nvcf-api.md §2.2).
 * The rules and their order live in core/deployments.ts; this file parses
 * requests and renders NVCF's Deployment object.
 */
import * as z from 'zod';
import { deploymentRequestSchema } from '../core/deployment-schemas';
import { deployVersion, requireDeployedVersion, requireOwnedVersion, undeployVersion, updateDeployment, type DeployedVersion, type DeploymentChange } from '../core/deployments';
import type { GpuSpecification } from '../core/model';
import { badRequest } from '../core/problem';
import { createApiHandler } from './http/handler';
import type { RouteDocs } from './http/route-docs';
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

/** NVCF's Deployment object; healthInfo only when instances failed or are not healthy yet, no requestQueueUrl. */
export function deploymentJson(record: DeployedVersion) {
  const { deployment } = record;
  const progress = record.status === 'DEPLOYING' && deployment.healthProgress ? [deployment.healthProgress] : [];
  return {
    deployment: {
      functionId: record.functionId,
      functionVersionId: record.versionId,
      functionName: record.name,
      ncaId: record.accountId,
      functionStatus: record.status,
      deploymentSpecifications: deployment.specifications.map(specificationJson),
      createdAt: deployment.createdAt,
      healthInfo: deployment.healthInfo?.length ? deployment.healthInfo : progress.length ? progress : undefined,
    },
  };
}

/** Logs why the GPU nodegroups could not be sized; the change stands, and the cluster autoscaler still brings nodes. */
function reportNodegroupError<T>(change: DeploymentChange<T>, ids: Record<string, string>): T {
  if (change.nodegroupError) logger.error('GPU nodegroups not sized for the deployment', { error: change.nodegroupError as Error, ...ids });
  return change.version;
}

async function deploy(req: ApiRequest): Promise<ApiResponse> {
  const [functionId, versionId] = versionIds(req);
  const request = parseJsonBody(req, deploymentRequestSchema);
  const change = await deployVersion(req.caller.accountId, functionId, versionId, request);
  return json(200, deploymentJson(reportNodegroupError(change, { functionId, versionId })));
}

async function getDeployment(req: ApiRequest): Promise<ApiResponse> {
  const [functionId, versionId] = versionIds(req);
  return json(200, deploymentJson(await requireDeployedVersion(req.caller.accountId, functionId, versionId)));
}

async function update(req: ApiRequest): Promise<ApiResponse> {
  const [functionId, versionId] = versionIds(req);
  const request = parseJsonBody(req, deploymentRequestSchema);
  const change = await updateDeployment(req.caller.accountId, functionId, versionId, request);
  return json(200, deploymentJson(reportNodegroupError(change, { functionId, versionId })));
}

/**
 * `graceful` is accepted as NVCF clients send it; running jobs always get to
 * finish (see undeployVersion), which is what graceful=true asks for.
 */
const undeployQuery = z.object({ graceful: queryFlag });

async function undeploy(req: ApiRequest): Promise<ApiResponse> {
  const [functionId, versionId] = versionIds(req);
  parseQuery(req, undeployQuery);
  const change = await undeployVersion(req.caller.accountId, functionId, versionId);
  if (!change) {
    const { status } = await requireOwnedVersion(req.caller.accountId, functionId, versionId);
    throw badRequest(`Function id '${functionId}', version '${versionId}': Status ${status}, the function version is not deployed`);
  }
  return json(200, { function: toFunctionJson(reportNodegroupError(change, { functionId, versionId })) });
}

const DEPLOYMENT_EXAMPLES = {
  local: { deploymentSpecifications: [{ gpu: 'LOCAL', instanceType: 'local.gpu', minInstances: 1, maxInstances: 2 }] },
  aws: { deploymentSpecifications: [{ gpu: 'L4', instanceType: 'g6.xlarge', minInstances: 0, maxInstances: 4, maxRequestConcurrency: 2 }] },
};
const DEPLOYMENT_ANSWER = { status: 200, description: '`{"deployment": Deployment}`' } as const;

export const deploymentRouteDocs: RouteDocs = {
  D1: {
    operationId: 'deployFunctionVersion', summary: 'Deploy a function version',
    description: 'The version becomes DEPLOYING, then ACTIVE once an instance is healthy, or ERROR with its healthInfo.',
    body: deploymentRequestSchema,
    examples: DEPLOYMENT_EXAMPLES,
    answer: DEPLOYMENT_ANSWER,
    errors: [404, 413],
  },
  D2: { operationId: 'getDeployment', summary: "Get a version's deployment", answer: DEPLOYMENT_ANSWER, errors: [404] },
  D3: { operationId: 'updateDeployment', summary: "Change a deployed version's instances", body: deploymentRequestSchema, examples: DEPLOYMENT_EXAMPLES, answer: DEPLOYMENT_ANSWER, errors: [404, 413] },
  D4: { operationId: 'undeployFunctionVersion', summary: 'Undeploy a function version', query: undeployQuery, answer: { status: 200, description: '`{"function": Function}`, INACTIVE; running jobs finish first' }, errors: [404] },
};

/** Serves D1–D4 of core/routes.ts. */
export const handler = createApiHandler('deployments', { D1: deploy, D2: getDeployment, D3: update, D4: undeploy }, deploymentRouteDocs);
