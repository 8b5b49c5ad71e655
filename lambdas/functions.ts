/**
 * F1–F8: create, list, get, delete and tag function versions (nvcf-api.md §2.1);
 * S1: replace a version's secrets (§2.8); R1–R6: registry credentials (lambdas/shared/registry-credentials.ts);
 * Z1–Z10: authorizations (lambdas/shared/authorizations.ts). F3–F6 also show an
 * account the versions shared with it, in their public fields (core/access.ts).
 * The rules of a function definition live in core/function-schemas.ts and the
 * storage in core/functions.ts; this file parses requests and renders NVCF's
 * Function object.
 */
import * as z from 'zod';
import { loadFunctionAccess } from '../core/access';
import { deleteSets, FUNCTION_TARGET, functionsSharedWith } from '../core/authorizations';
import { createFunctionRequestSchema, metadataUpdateSchema, updateSecretsRequestSchema, versionUpdateSchema } from '../core/function-schemas';
import { rateLimitSchema } from '../core/rate-limits';
import {
  createVersion,
  deleteInactiveVersion,
  getVersion,
  listAccountVersions,
  listLiveInstances,
  listOwnedVersions,
  replaceSecrets,
  replaceTags,
} from '../core/functions';
import { MAX_MANAGEMENT_BODY_BYTES } from '../core/limits';
import type { FunctionVersionRecord } from '../core/model';
import { requireFunctionQuota, requireVersionQuota } from '../core/quotas';
import { conflict, notFound } from '../core/problem';
import { createApiHandler } from './http/handler';
import type { RouteDocs } from './http/route-docs';
import { parseJsonBody, parseQuery, queryFlag, uuidParam, versionIds, type ApiRequest } from './http/request';
import { json, noContent, type ApiResponse } from './http/responses';
import { authorizationRouteDocs, authorizationRoutes } from './shared/authorizations';
import { toFunctionJson, toSharedFunctionJson } from './shared/function-json';
import { rateLimitRoutes } from './shared/rate-limits';
import { usageRoutes } from './shared/usage';
import { registryCredentialRouteDocs, registryCredentialRoutes } from './shared/registry-credentials';

const VISIBILITIES = ['authorized', 'private', 'public'] as const;

/** `visibility` as a comma list (API Gateway joins repeated parameters with commas); empty means all. */
const listQuery = z.object({
  visibility: z
    .string()
    .transform((value) => value.split(',').map((part) => part.trim()).filter(Boolean))
    .pipe(z.array(z.enum(VISIBILITIES, { error: `must be one of ${VISIBILITIES.join(', ')}` })))
    .optional(),
});

const getQuery = z.object({ includeSecrets: queryFlag });

/** The caller's own versions (`private`) and those shared with it (`authorized`); none is public here. */
async function visibleVersions(req: ApiRequest): Promise<FunctionVersionRecord[]> {
  const { visibility } = parseQuery(req, listQuery);
  const shows = (kind: (typeof VISIBILITIES)[number]) => !visibility?.length || visibility.includes(kind);
  const own = shows('private') ? await listAccountVersions(req.caller.accountId) : [];
  if (!shows('authorized')) return own;
  const sharedIds = [...(await functionsSharedWith(req.caller.accountId)).keys()];
  const shared = await Promise.all(sharedIds.map((functionId) => loadFunctionAccess(req.caller.accountId, functionId)));
  return [...own, ...shared.flatMap((access) => (access?.role === 'authorized' ? access.versions : []))];
}

/** The Function object with the live instances of a deployed version; an account the version is shared with sees its public fields. */
async function functionJson(req: ApiRequest, record: FunctionVersionRecord, includeSecrets = true) {
  if (record.accountId !== req.caller.accountId) return toSharedFunctionJson(record);
  const instances = record.status === 'INACTIVE' ? [] : await listLiveInstances(record.versionId);
  return toFunctionJson(record, { instances, includeSecrets });
}

function functionsJson(req: ApiRequest, records: FunctionVersionRecord[]) {
  return Promise.all(records.map((record) => functionJson(req, record)));
}

const functionNotFound = (functionId: string) => notFound(`Function '${functionId}' not found`);
const versionNotFound = (functionId: string, versionId: string) => notFound(`Function '${functionId}' version '${versionId}' not found`);

/** Bodies that may carry secret values: their parse errors quote nothing. */
const SENSITIVE = [MAX_MANAGEMENT_BODY_BYTES, { sensitive: true }] as const;

async function createFunction(req: ApiRequest): Promise<ApiResponse> {
  const definition = parseJsonBody(req, createFunctionRequestSchema, ...SENSITIVE);
  await requireFunctionQuota(req.caller.accountId);
  return json(200, { function: toFunctionJson(await createVersion(req.caller.accountId, definition)) });
}

async function createFunctionVersion(req: ApiRequest): Promise<ApiResponse> {
  const functionId = uuidParam(req, 'functionId');
  const definition = parseJsonBody(req, createFunctionRequestSchema, ...SENSITIVE);
  if ((await listOwnedVersions(req.caller.accountId, functionId)).length === 0) throw functionNotFound(functionId);
  await requireVersionQuota(req.caller.accountId, functionId);
  return json(200, { function: toFunctionJson(await createVersion(req.caller.accountId, definition, functionId)) });
}

async function listFunctions(req: ApiRequest): Promise<ApiResponse> {
  return json(200, { functions: await functionsJson(req, await visibleVersions(req)) });
}

async function listFunctionVersions(req: ApiRequest): Promise<ApiResponse> {
  const functionId = uuidParam(req, 'functionId');
  const versions = (await loadFunctionAccess(req.caller.accountId, functionId))?.versions ?? [];
  if (versions.length === 0) throw functionNotFound(functionId);
  versions.sort((a, b) => a.createdAt.localeCompare(b.createdAt));
  return json(200, { functions: await functionsJson(req, versions) });
}

async function getFunctionVersion(req: ApiRequest): Promise<ApiResponse> {
  const [functionId, versionId] = versionIds(req);
  const includeSecrets = parseQuery(req, getQuery).includeSecrets !== false;
  // The owner's read stays one GetItem; only another account's needs its access to the function.
  const stored = await getVersion(functionId, versionId);
  const record =
    stored && stored.accountId !== req.caller.accountId
      ? (await loadFunctionAccess(req.caller.accountId, functionId))?.versions.find((version) => version.versionId === versionId)
      : stored;
  if (!record) throw versionNotFound(functionId, versionId);
  return json(200, { function: await functionJson(req, record, includeSecrets) });
}

async function listFunctionIds(req: ApiRequest): Promise<ApiResponse> {
  const versions = await visibleVersions(req);
  return json(200, { functionIds: [...new Set(versions.map((version) => version.functionId))] });
}

async function deleteFunctionVersion(req: ApiRequest): Promise<ApiResponse> {
  const [functionId, versionId] = versionIds(req);
  const outcome = await deleteInactiveVersion(req.caller.accountId, functionId, versionId);
  if (outcome.deleted) {
    // The version's sharing goes with it, and the function's with its last version.
    const remaining = await listOwnedVersions(req.caller.accountId, functionId);
    await deleteSets(functionId, remaining.length > 0 ? [versionId] : [versionId, FUNCTION_TARGET]);
    return noContent();
  }
  if (!outcome.status) throw versionNotFound(functionId, versionId);
  throw conflict(
    `Function '${functionId}' version '${versionId}' is ${outcome.status}; only an INACTIVE version can be deleted: undeploy it first with DELETE /v2/nvcf/deployments/functions/${functionId}/versions/${versionId}`,
  );
}

async function updateMetadata(req: ApiRequest): Promise<ApiResponse> {
  const [functionId, versionId] = versionIds(req);
  const { tags } = parseJsonBody(req, metadataUpdateSchema);
  const record = await replaceTags(req.caller.accountId, functionId, versionId, tags);
  if (!record) throw versionNotFound(functionId, versionId);
  return json(200, { function: await functionJson(req, record) });
}

/** Replaces the version's whole set of secrets (NVCF answers 204); running instances see the new file within a minute. */
async function updateSecrets(req: ApiRequest): Promise<ApiResponse> {
  const [functionId, versionId] = versionIds(req);
  const { secrets } = parseJsonBody(req, updateSecretsRequestSchema, ...SENSITIVE);
  if (!(await replaceSecrets(req.caller.accountId, functionId, versionId, secrets))) throw versionNotFound(functionId, versionId);
  return noContent();
}

const FUNCTION_EXAMPLES = {
  container: {
    name: 'echo',
    inferenceUrl: '/echo',
    inferencePort: 8000,
    containerImage: 'nvcr.io/nvcf-examples/echo:1.0',
    health: { protocol: 'HTTP', uri: '/health', port: 8000, timeout: 'PT10S', expectedStatusCode: 200 },
  },
  helm: { name: 'echo-chart', inferenceUrl: '/echo', inferencePort: 8000, helmChart: 'https://helm.ngc.nvidia.com/nvcf-examples/charts/echo-1.0.0.tgz', helmChartServiceName: 'echo' },
};
const FUNCTION_ANSWER = { status: 200, description: '`{"function": Function}`: the new version, INACTIVE until deployed' } as const;
const FUNCTIONS_ANSWER = { status: 200, description: '`{"functions": [Function]}`: every version the caller owns or that is shared with it, flat' } as const;

export const functionRouteDocs: RouteDocs = {
  F1: { operationId: 'createFunction', summary: 'Create a function (its first version)', body: createFunctionRequestSchema, examples: FUNCTION_EXAMPLES, answer: FUNCTION_ANSWER, errors: [413] },
  F2: { operationId: 'createFunctionVersion', summary: 'Create a new version of a function', body: createFunctionRequestSchema, examples: FUNCTION_EXAMPLES, answer: FUNCTION_ANSWER, errors: [404, 413] },
  F3: { operationId: 'listFunctions', summary: 'List functions', query: listQuery, answer: FUNCTIONS_ANSWER },
  F4: { operationId: 'listFunctionVersions', summary: "List a function's versions", answer: { ...FUNCTIONS_ANSWER, description: '`{"functions": [Function]}`, oldest first' }, errors: [404] },
  F5: { operationId: 'getFunctionVersion', summary: 'Get a function version', query: getQuery, answer: { status: 200, description: '`{"function": Function}`, with its live instances' }, errors: [404] },
  F6: { operationId: 'listFunctionIds', summary: 'List function ids', query: listQuery, answer: { status: 200, description: '`{"functionIds": [uuid]}`' } },
  F7: { operationId: 'deleteFunctionVersion', summary: 'Delete an INACTIVE function version', answer: { status: 204, description: 'deleted, with its authorizations' }, errors: [404, 409] },
  F8: { operationId: 'updateFunctionMetadata', summary: "Replace a function version's tags", body: metadataUpdateSchema, examples: { tags: { tags: ['team-a', 'llm'] } }, answer: { status: 200, description: '`{"function": Function}`' }, errors: [404] },
  S1: {
    operationId: 'updateSecrets', summary: "Replace a function version's secrets",
    description: 'Running instances see the new `/var/secrets/secrets.json` within a minute.',
    body: updateSecretsRequestSchema,
    examples: { secrets: { secrets: [{ name: 'HF_TOKEN', value: 'hf_example' }] } },
    answer: { status: 204, description: 'replaced' },
    errors: [404, 413],
  },
  F9: {
    operationId: 'updateFunctionVersion',
    summary: "Replace a function version's tags and/or rate limit",
    body: versionUpdateSchema,
    examples: { rateLimit: { rateLimit: { rateLimit: '100-S' } }, both: { tags: ['team-a'], rateLimit: { rateLimit: '1000-M', perNcaIdRate: { '123456789012': '10-S' } } } },
    answer: { status: 200, description: '`{"function": Function}`' },
    errors: [404],
  },
  RL1: {
    operationId: 'setRateLimit',
    summary: "Set a function version's rate limit",
    description: 'Windows per second, minute, hour or day (`100-S`, `1000-M`, `10-H`, `5-D`, or several, comma-separated), per calling account; `perNcaIdRate` gives some accounts their own, `exemptedNcaIds` none. Over it a call answers 429 with `Retry-After` and `RateLimit-*` headers.',
    body: rateLimitSchema,
    examples: { perSecond: { rateLimit: '10-S' }, perAccount: { rateLimit: '100-M', perNcaIdRate: { '123456789012': '1000-M' }, exemptedNcaIds: ['210987654321'] } },
    answer: { status: 204, description: 'set; the invocation service applies it within seconds' },
    errors: [404],
  },
  RL2: { operationId: 'deleteRateLimit', summary: "Remove a function version's rate limit", answer: { status: 204, description: 'removed (also when there was none)' }, errors: [404] },
  U1: { operationId: 'getAccountUsage', summary: "The caller's usage against each of its account's quotas (our extension)", answer: { status: 200, description: '`{accountId, quotas: {<name>: {quota, used, description}}}`; a null quota is unlimited' } },
  ...registryCredentialRouteDocs,
  ...authorizationRouteDocs,
};

/** Serves F1–F9, S1, the registry credentials R1–R6, the authorizations Z1–Z10, the rate limits RL1/RL2 and the usage U1 of core/routes.ts. */
export const handler = createApiHandler('functions', {
  F1: createFunction,
  F2: createFunctionVersion,
  F3: listFunctions,
  F4: listFunctionVersions,
  F5: getFunctionVersion,
  F6: listFunctionIds,
  F7: deleteFunctionVersion,
  F8: updateMetadata,
  S1: updateSecrets,
  ...registryCredentialRoutes,
  ...authorizationRoutes,
  ...rateLimitRoutes,
  ...usageRoutes,
}, functionRouteDocs);
