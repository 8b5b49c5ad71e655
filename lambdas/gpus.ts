/**
 * G1 clusterGroups and G2 supportedGpus: the GPU offers of core/gpus.ts in
 * NVCF's shapes (nvcf-api.md §2.6 and §7). The whole cluster is one cluster
 * group, visible to every account as its own. Also O1, the OpenAPI document,
 * being the smallest Lambda.
 */
import openApiDocument from '../docs/openapi.json';
import { AWS_BACKEND, gpuCluster, gpuOffers, stableUuid, type GpuCluster, type GpuOffer } from '../core/gpus';
import { createApiHandler } from './http/handler';
import type { RouteDocs } from './http/route-docs';
import type { ApiRequest } from './http/request';
import { json, type ApiResponse } from './http/responses';

function instanceTypes(offer: GpuOffer) {
  return offer.instanceTypes.map((name, i) => ({ name, description: `${offer.gpu} GPU on ${name}`, default: i === 0 }));
}

/** G1's body (exported for the typed client's types). */
export function clusterGroupsJson(cluster: GpuCluster, offers: readonly GpuOffer[], accountId: string) {
  return {
    clusterGroups: [
      {
        id: stableUuid(`cluster-group:${cluster.name}`),
        name: cluster.name,
        ncaId: accountId,
        authorizedNcaIds: [accountId],
        clusters: [{ id: stableUuid(`cluster:${cluster.name}`), name: cluster.name, k8sVersion: cluster.k8sVersion }],
        gpus: offers.map((offer) => ({ name: offer.gpu, instanceTypes: instanceTypes(offer) })),
      },
    ],
  };
}

/** G2's body, a bare array as NVCF answers it (exported for the typed client's types). */
export function supportedGpusJson(offers: readonly GpuOffer[]) {
  return offers.map((offer) => ({ gpu: offer.gpu, backend: AWS_BACKEND, instanceTypes: offer.instanceTypes }));
}

async function listClusterGroups(req: ApiRequest): Promise<ApiResponse> {
  const [cluster, offers] = await Promise.all([gpuCluster(), gpuOffers()]);
  return json(200, clusterGroupsJson(cluster, offers, req.caller.accountId));
}

async function listSupportedGpus(): Promise<ApiResponse> {
  return json(200, supportedGpusJson(await gpuOffers()));
}

export const gpuRouteDocs: RouteDocs = {
  G1: { operationId: 'listClusterGroups', summary: 'List cluster groups and their GPUs', answer: { status: 200, description: '`{"clusterGroups": [...]}`: the whole cluster, one group' } },
  O1: { operationId: 'getOpenApiDocument', summary: 'This OpenAPI document (no key needed)', answer: { status: 200, description: 'the OpenAPI 3.1 document of the API' } },
  G2: { operationId: 'listSupportedGpus', summary: 'List the GPUs and instance types a deployment may ask for', answer: { status: 200, description: 'a bare array `[{gpu, backend, instanceTypes}]`' } },
};

/** O1: the OpenAPI document, as `npm run openapi` wrote it (bundled: it never changes while the Lambda runs). */
async function serveOpenApi(): Promise<ApiResponse> {
  return json(200, openApiDocument, { 'cache-control': 'public, max-age=300' });
}

/** Serves G1, G2 and O1 of core/routes.ts (this Lambda also answers requests no route serves). */
export const handler = createApiHandler('gpus', { G1: listClusterGroups, G2: listSupportedGpus, O1: serveOpenApi }, gpuRouteDocs);
