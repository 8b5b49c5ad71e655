/**
 * K1–K4: an account's API keys over HTTP, in the shapes of open-source NVCF's
 * keys service (`/v1/keys`, snake_case KeyDto): create, list, get, revoke. A
 * key may create keys only with scopes it holds itself and never outliving
 * itself, so a key handed out cannot mint a stronger or longer-lived one. The
 * created key's value is in the create answer alone; only its sha256 is
 * stored, and that is the key's id. The admin CLI (npm run keys) stays for
 * the first key of an account.
 */
import * as z from 'zod';
import { apiKeyStatus, createApiKey, getApiKey, listApiKeys, revokeApiKey, type ApiKeyRecord } from '../core/api-keys';
import { badRequest, forbidden, notFound } from '../core/problem';
import { SCOPES, type Scope } from '../core/routes';
import { createApiHandler } from './http/handler';
import type { RouteDocs } from './http/route-docs';
import { parseJsonBody, type ApiRequest } from './http/request';
import { json, noContent, type ApiResponse } from './http/responses';

/** Longest lifetime of a key created over HTTP (open-source NVCF caps it per service too). */
export const MAX_KEY_LIFETIME_DAYS = 365;
const DAY_MS = 24 * 60 * 60 * 1000;

const scopeSchema = z.enum(SCOPES, { error: `must be one of ${SCOPES.join(', ')}` });

/**
 * NVCF's CreateKeyRequest: `description` names the key, `expires_at` is
 * required; the scopes are those of `authorizations.policies[]` (their other
 * fields, and `audience_service_ids`, address NVCF's services and mean
 * nothing here). Without policies the key gets the caller's scopes.
 */
const createKeySchema = z.object({
  description: z.string().trim().min(1).max(256),
  expires_at: z.iso.datetime({ offset: true, error: 'must be an ISO 8601 time such as 2030-01-31T00:00:00Z' }),
  authorizations: z.object({ policies: z.array(z.object({ scopes: z.array(scopeSchema).min(1) })).min(1) }).optional(),
});

const keyIdSchema = z.string().regex(/^[0-9a-f]{64}$/);

/** NVCF's KeyDto: `value` only in the create answer, `authorizations` not in lists (exported for the typed client's types). */
export function keyJson(record: ApiKeyRecord, { value, withAuthorizations = true }: { value?: string; withAuthorizations?: boolean } = {}) {
  return {
    id: record.keyHash,
    ...(value ? { value } : {}),
    status: apiKeyStatus(record),
    owner_id: record.accountId,
    description: record.description,
    created_at: record.createdAt,
    expires_at: record.expiresAt,
    ...(record.revokedAt ? { revoked_at: record.revokedAt } : {}),
    ...(withAuthorizations ? { authorizations: { policies: [{ scopes: record.scopes }] } } : {}),
  };
}

/** The expiry asked for: in the future, within MAX_KEY_LIFETIME_DAYS, and not after the caller's own key expires. */
function expiryOf(req: ApiRequest, expiresAt: string): string {
  const at = Date.parse(expiresAt);
  const now = Date.now();
  if (at <= now) throw badRequest(`expires_at: ${expiresAt} is in the past; give a time in the future`);
  if (at > now + MAX_KEY_LIFETIME_DAYS * DAY_MS) throw badRequest(`expires_at: a key lives at most ${MAX_KEY_LIFETIME_DAYS} days; give a time before ${new Date(now + MAX_KEY_LIFETIME_DAYS * DAY_MS).toISOString()}`);
  const own = req.caller.keyExpiresAt;
  if (own && at > Date.parse(own)) throw badRequest(`expires_at: the key making this request expires at ${own}; a key it creates may not outlive it`);
  return new Date(at).toISOString();
}

async function createKey(req: ApiRequest): Promise<ApiResponse> {
  const request = parseJsonBody(req, createKeySchema);
  const expiresAt = expiryOf(req, request.expires_at);
  const asked: Scope[] = request.authorizations ? [...new Set(request.authorizations.policies.flatMap((policy) => policy.scopes))] : [...req.caller.scopes];
  // Well-formed but beyond what the caller holds: refused as a missing scope is, with 403.
  const lacking = asked.filter((scope) => !req.caller.scopes.has(scope));
  if (lacking.length > 0) throw forbidden(`authorizations.policies[].scopes: this API key lacks ${lacking.join(', ')}, so it cannot give them to a new key; ask only for scopes it holds`);
  const { key, record } = await createApiKey({ accountId: req.caller.accountId, scopes: asked, description: request.description, expiresAt });
  return json(200, keyJson(record, { value: key }));
}

async function listKeys(req: ApiRequest): Promise<ApiResponse> {
  const records = await listApiKeys(req.caller.accountId);
  return json(200, { keys: records.map((record) => keyJson(record, { withAuthorizations: false })) });
}

/** The caller's key with this id; another account's key, like a missing one, is 404. */
async function ownKey(req: ApiRequest): Promise<ApiKeyRecord> {
  const keyId = req.params.keyId ?? '';
  if (!keyIdSchema.safeParse(keyId).success) throw badRequest(`path parameter keyId must be a key id (64 lower-case hex digits, the id of GET /v1/keys), got "${keyId}"`);
  const record = await getApiKey(keyId);
  if (!record || record.accountId !== req.caller.accountId) throw notFound(`API key '${keyId}' not found`);
  return record;
}

async function getKey(req: ApiRequest): Promise<ApiResponse> {
  return json(200, keyJson(await ownKey(req)));
}

/** Revokes the key (it stays listed as REVOKED); the API and the invocation service stop accepting it within their key caches' time. */
async function revokeKey(req: ApiRequest): Promise<ApiResponse> {
  const record = await ownKey(req);
  if (!record.disabled) await revokeApiKey(record.keyHash);
  return noContent();
}

export const keyRouteDocs: RouteDocs = {
  K1: {
    operationId: 'createApiKey', summary: 'Create an API key for the caller\'s account',
    description: 'Its scopes are at most the calling key\'s, its expiry at most the calling key\'s and within a year. The answer holds the key\'s `value`, shown this once.',
    body: createKeySchema,
    examples: { invokeOnly: { description: 'CI invoker', expires_at: '2030-01-31T00:00:00Z', authorizations: { policies: [{ scopes: ['invoke_function'] }] } } },
    answer: { status: 200, description: 'the Key with its `value`' },
    errors: [413],
  },
  K2: { operationId: 'listApiKeys', summary: "List the account's API keys", answer: { status: 200, description: '`{"keys": [Key]}`, oldest first, without values or scopes' } },
  K3: { operationId: 'getApiKey', summary: 'Get an API key', answer: { status: 200, description: 'the Key, without its value' }, errors: [404] },
  K4: { operationId: 'revokeApiKey', summary: 'Revoke an API key', answer: { status: 204, description: 'revoked; it stays listed as REVOKED' }, errors: [404] },
};

/** Serves K1–K4 of core/routes.ts. */
export const handler = createApiHandler('keys', { K1: createKey, K2: listKeys, K3: getKey, K4: revokeKey }, keyRouteDocs);
