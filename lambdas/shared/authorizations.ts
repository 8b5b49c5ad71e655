/**
 * Z1–Z10: who besides its owner may invoke a function (nvcf-api.md §2.7),
 * served by the functions Lambda. Only the owner manages the sets; to anyone
 * else a function is missing (404). Storage lives in core/authorizations.ts,
 * and what an authorized account may then do in core/access.ts.
 */
import * as z from 'zod';
import { accountIdSchema } from '../../core/api-keys';
import { addParty, deleteSets, FUNCTION_TARGET, partiesOf, readAuthorizations, removeParty, replaceParties } from '../../core/authorizations';
import { listOwnedVersions } from '../../core/functions';
import type { FunctionVersionRecord } from '../../core/model';
import { badRequest, conflict, notFound } from '../../core/problem';
import { parseJsonBody, uuidParam, versionIds, type ApiRequest } from '../http/request';
import { json, type ApiResponse } from '../http/responses';
import type { RouteDoc, RouteDocs } from '../http/route-docs';

/** Parties a set may hold: NVCF sets no number; this keeps one item well under DynamoDB's 400 KB. */
export const MAX_AUTHORIZED_PARTIES = 1000;

/** `clientId` is NVCF's deprecated alternative to `ncaId`: accepted and ignored, as sharing is per account here. */
const partySchema = z.object({ ncaId: accountIdSchema, clientId: z.string().optional() });
const replaceSchema = z.object({ authorizedParties: z.array(partySchema).min(1).max(MAX_AUTHORIZED_PARTIES) });
const changeSchema = z.object({ authorizedParty: partySchema });

/** NVCF's AuthFn: the function (and version), its owner and the accounts it is shared with (exported for the typed client's types). */
export function authFn(owner: string, functionId: string, versionId: string | undefined, parties: Iterable<string>) {
  return { id: functionId, ncaId: owner, ...(versionId ? { versionId } : {}), authorizedParties: [...parties].sort().map((ncaId) => ({ ncaId })) };
}

/** The caller's versions of the function, oldest first; 404 unless it owns the function. */
async function ownedFunction(req: ApiRequest, functionId: string): Promise<FunctionVersionRecord[]> {
  const versions = await listOwnedVersions(req.caller.accountId, functionId);
  if (versions.length === 0) throw notFound(`Function '${functionId}' not found`);
  return versions.sort((a, b) => a.createdAt.localeCompare(b.createdAt));
}

async function ownedVersion(req: ApiRequest): Promise<[functionId: string, versionId: string]> {
  const [functionId, versionId] = versionIds(req);
  const versions = await ownedFunction(req, functionId);
  if (!versions.some((version) => version.versionId === versionId)) throw notFound(`Function '${functionId}' version '${versionId}' not found`);
  return [functionId, versionId];
}

/** The parties of a body; the owner is refused, as it needs no authorization and could not be removed from its own function. */
function partiesOfBody(req: ApiRequest, ncaIds: string[]): string[] {
  if (ncaIds.includes(req.caller.accountId)) {
    throw badRequest(`authorizedParties: ${req.caller.accountId} owns the function and may always invoke it; list only other accounts`);
  }
  return [...new Set(ncaIds)];
}

/** The body of add and remove; checked against the owner once ownership is known (to anyone else the function is missing). */
function partyOfBody(req: ApiRequest): string {
  return parseJsonBody(req, changeSchema).authorizedParty.ncaId;
}

function ncaIdsOfBody(req: ApiRequest): string[] {
  return parseJsonBody(req, replaceSchema).authorizedParties.map((party) => party.ncaId);
}

async function listFunctionAuthorizations(req: ApiRequest): Promise<ApiResponse> {
  const functionId = uuidParam(req, 'functionId');
  const versions = await ownedFunction(req, functionId);
  const sets = await readAuthorizations(functionId);
  return json(200, { functions: versions.map((version) => authFn(req.caller.accountId, functionId, version.versionId, partiesOf(sets, version.versionId))) });
}

async function replaceFunctionAuthorizations(req: ApiRequest): Promise<ApiResponse> {
  const functionId = uuidParam(req, 'functionId');
  const ncaIds = ncaIdsOfBody(req);
  await ownedFunction(req, functionId);
  const parties = partiesOfBody(req, ncaIds);
  await replaceParties(req.caller.accountId, functionId, FUNCTION_TARGET, parties);
  return json(200, { function: authFn(req.caller.accountId, functionId, undefined, parties) });
}

/** Deletes every extra authorization of the function: its own set and each version's. */
async function deleteFunctionAuthorizations(req: ApiRequest): Promise<ApiResponse> {
  const functionId = uuidParam(req, 'functionId');
  await ownedFunction(req, functionId);
  const sets = await readAuthorizations(functionId);
  await deleteSets(functionId, [FUNCTION_TARGET, ...sets.versions.keys()]);
  return json(200, { function: authFn(req.caller.accountId, functionId, undefined, []) });
}

async function addFunctionAuthorization(req: ApiRequest): Promise<ApiResponse> {
  const functionId = uuidParam(req, 'functionId');
  const party = partyOfBody(req);
  await ownedFunction(req, functionId);
  partiesOfBody(req, [party]);
  const outcome = await addParty(req.caller.accountId, functionId, FUNCTION_TARGET, party, { mustExist: true });
  if (outcome === 'no-set') {
    throw notFound(`Function '${functionId}' has no authorized accounts to add to; create the set with POST /v2/nvcf/authorizations/functions/${functionId}`);
  }
  if (outcome === 'present') throw conflict(`account ${party} is already authorized for function '${functionId}'`);
  return json(200, { function: authFn(req.caller.accountId, functionId, undefined, (await readAuthorizations(functionId)).inherited ?? []) });
}

async function removeFunctionAuthorization(req: ApiRequest): Promise<ApiResponse> {
  const functionId = uuidParam(req, 'functionId');
  const party = partyOfBody(req);
  await ownedFunction(req, functionId);
  partiesOfBody(req, [party]);
  if (!(await removeParty(functionId, FUNCTION_TARGET, party))) {
    throw badRequest(`authorizedParty.ncaId: account ${party} is not among the authorized accounts of function '${functionId}'`);
  }
  return json(200, { function: authFn(req.caller.accountId, functionId, undefined, (await readAuthorizations(functionId)).inherited ?? []) });
}

/** A version's AuthFn: its own parties and those it inherits from the function. */
async function versionAuthFn(req: ApiRequest, functionId: string, versionId: string) {
  return authFn(req.caller.accountId, functionId, versionId, partiesOf(await readAuthorizations(functionId), versionId));
}

async function getVersionAuthorizations(req: ApiRequest): Promise<ApiResponse> {
  const [functionId, versionId] = await ownedVersion(req);
  return json(200, { function: await versionAuthFn(req, functionId, versionId) });
}

async function replaceVersionAuthorizations(req: ApiRequest): Promise<ApiResponse> {
  const [functionId, versionId] = versionIds(req);
  const ncaIds = ncaIdsOfBody(req);
  await ownedVersion(req);
  const parties = partiesOfBody(req, ncaIds);
  await replaceParties(req.caller.accountId, functionId, versionId, parties);
  return json(200, { function: await versionAuthFn(req, functionId, versionId) });
}

/** Deletes the version's own set; what it inherits from the function stays. */
async function deleteVersionAuthorizations(req: ApiRequest): Promise<ApiResponse> {
  const [functionId, versionId] = await ownedVersion(req);
  await deleteSets(functionId, [versionId]);
  return json(200, { function: await versionAuthFn(req, functionId, versionId) });
}

async function addVersionAuthorization(req: ApiRequest): Promise<ApiResponse> {
  const [functionId, versionId] = versionIds(req);
  const party = partyOfBody(req);
  await ownedVersion(req);
  partiesOfBody(req, [party]);
  const sets = await readAuthorizations(functionId);
  const own = sets.versions.get(versionId);
  if (!own && !sets.inherited) {
    throw notFound(
      `Function '${functionId}' version '${versionId}' has no authorized accounts to add to, of its own or inherited; create the set with POST /v2/nvcf/authorizations/functions/${functionId}/versions/${versionId}`,
    );
  }
  if (own?.has(party) || (await addParty(req.caller.accountId, functionId, versionId, party, { mustExist: false })) === 'present') {
    throw conflict(`account ${party} is already authorized for function '${functionId}' version '${versionId}'`);
  }
  return json(200, { function: await versionAuthFn(req, functionId, versionId) });
}

async function removeVersionAuthorization(req: ApiRequest): Promise<ApiResponse> {
  const [functionId, versionId] = versionIds(req);
  const party = partyOfBody(req);
  await ownedVersion(req);
  partiesOfBody(req, [party]);
  if (!(await removeParty(functionId, versionId, party))) {
    const inherited = (await readAuthorizations(functionId)).inherited?.has(party);
    throw badRequest(
      inherited
        ? `authorizedParty.ncaId: account ${party} is authorized for every version of function '${functionId}', not for this one alone; remove it with PATCH /v2/nvcf/authorizations/functions/${functionId}/remove`
        : `authorizedParty.ncaId: account ${party} is not among the authorized accounts of function '${functionId}' version '${versionId}'`,
    );
  }
  return json(200, { function: await versionAuthFn(req, functionId, versionId) });
}

const ACCOUNT = '123456789012';
const AUTH_FN = { status: 200, description: '`{"function": AuthFn}`: the function (and version), its owner and the accounts it is shared with' } as const;
const replaceDoc = (operationId: string, what: string): RouteDoc => ({
  operationId,
  summary: `Share ${what} with these accounts (replacing its set)`,
  body: replaceSchema,
  examples: { two: { authorizedParties: [{ ncaId: ACCOUNT }, { ncaId: '210987654321' }] } },
  answer: AUTH_FN,
  errors: [404],
});
const addDoc = (operationId: string, what: string): RouteDoc => ({
  operationId,
  summary: `Add an account to the set of ${what}`,
  body: changeSchema,
  examples: { one: { authorizedParty: { ncaId: ACCOUNT } } },
  answer: AUTH_FN,
  errors: [404, 409],
});
const removeDoc = (operationId: string, what: string): RouteDoc => ({ ...addDoc(operationId, what), summary: `Remove an account from the set of ${what}`, errors: [404] });

export const authorizationRouteDocs: RouteDocs = {
  Z1: { operationId: 'listFunctionAuthorizations', summary: "List a function's authorizations, per version", answer: { status: 200, description: '`{"functions": [AuthFn]}`, one per version, inherited parties included' }, errors: [404] },
  Z2: replaceDoc('replaceFunctionAuthorizations', 'a function (every version)'),
  Z3: { operationId: 'deleteFunctionAuthorizations', summary: "Delete a function's set and every version's own set", answer: AUTH_FN, errors: [404] },
  Z4: addDoc('addFunctionAuthorization', 'a function'),
  Z5: removeDoc('removeFunctionAuthorization', 'a function'),
  Z6: { operationId: 'getVersionAuthorizations', summary: "Get a version's authorizations (its own set and the function's)", answer: AUTH_FN, errors: [404] },
  Z7: replaceDoc('replaceVersionAuthorizations', 'one version'),
  Z8: { operationId: 'deleteVersionAuthorizations', summary: "Delete a version's own set", answer: AUTH_FN, errors: [404] },
  Z9: addDoc('addVersionAuthorization', 'one version'),
  Z10: removeDoc('removeVersionAuthorization', 'one version'),
};

export const authorizationRoutes = {
  Z1: listFunctionAuthorizations,
  Z2: replaceFunctionAuthorizations,
  Z3: deleteFunctionAuthorizations,
  Z4: addFunctionAuthorization,
  Z5: removeFunctionAuthorization,
  Z6: getVersionAuthorizations,
  Z7: replaceVersionAuthorizations,
  Z8: deleteVersionAuthorizations,
  Z9: addVersionAuthorization,
  Z10: removeVersionAuthorization,
};
