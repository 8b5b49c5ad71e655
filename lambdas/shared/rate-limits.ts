/**
 * F9 (open-source NVCF's successor of F8: tags and rate limit) and the
 * ratelimit routes RL1/RL2, served by the functions Lambda. The format and
 * its enforcement live in core/rate-limits.ts; a change reaches the
 * invocation service within its version cache time (VERSION_CACHE_SECONDS).
 */
import { versionUpdateSchema } from '../../core/function-schemas';
import { listLiveInstances, updateVersionFields, type VersionUpdate } from '../../core/functions';
import type { FunctionVersionRecord } from '../../core/model';
import { notFound } from '../../core/problem';
import { rateLimitSchema } from '../../core/rate-limits';
import { parseJsonBody, versionIds, type ApiRequest } from '../http/request';
import { json, noContent, type ApiResponse } from '../http/responses';
import { toFunctionJson } from './function-json';

async function updateOwnedVersion(req: ApiRequest, update: VersionUpdate): Promise<FunctionVersionRecord> {
  const [functionId, versionId] = versionIds(req);
  const record = await updateVersionFields(req.caller.accountId, functionId, versionId, update);
  if (!record) throw notFound(`Function '${functionId}' version '${versionId}' not found`);
  return record;
}

/** F9: replaces the tags and/or the rate limit of a version; 200 with the Function object. */
async function updateVersion(req: ApiRequest): Promise<ApiResponse> {
  const { tags, rateLimit } = parseJsonBody(req, versionUpdateSchema);
  const record = await updateOwnedVersion(req, { tags, rateLimit });
  const instances = record.status === 'INACTIVE' ? [] : await listLiveInstances(record.versionId);
  return json(200, { function: toFunctionJson(record, { instances }) });
}

/** RL1: sets (replaces) the rate limit of a version; 204 as NVCF answers. */
async function putRateLimit(req: ApiRequest): Promise<ApiResponse> {
  const rateLimit = parseJsonBody(req, rateLimitSchema);
  await updateOwnedVersion(req, { rateLimit });
  return noContent();
}

/** RL2: removes the rate limit of a version (none is not an error); 204. */
async function deleteRateLimit(req: ApiRequest): Promise<ApiResponse> {
  await updateOwnedVersion(req, { rateLimit: null });
  return noContent();
}

export const rateLimitRoutes = { F9: updateVersion, RL1: putRateLimit, RL2: deleteRateLimit };
