/**
 * The HTTP API's route table: every endpoint, the Lambda that serves it and the
 * scope a caller needs. lib/ creates API Gateway routes from it and local/
 * dispatches with it, so both serve exactly the same API.
 */
import { notFound, Problem } from './problem';

export const SCOPES = [
  'register_function',
  'list_functions',
  'update_function',
  'delete_function',
  'deploy_function',
  'invoke_function',
  'queue_details',
  'list_cluster_groups',
  'update_secrets',
  'manage_registry_credentials',
  'authorize_clients',
  // Our scope (NVCF's keys service is reached with a user session): lets a key create, list and revoke its account's keys.
  'manage_api_keys',
] as const;
export type Scope = (typeof SCOPES)[number];

/** The Lambdas that serve routes (the authorizer serves none). */
export const API_HANDLERS = ['functions', 'deployments', 'assets', 'queues', 'gpus', 'logs', 'keys'] as const;
export type ApiHandlerName = (typeof API_HANDLERS)[number];

/**
 * The invocation service (invocation/) serves the invocation routes: it holds
 * the caller's connection while a worker streams the answer back. API Gateway
 * forwards these routes to it through a VPC link; local/ hands them to the
 * service running in the same process.
 */
export const INVOCATION_SERVICE = 'invocation-service';
/** What serves a route: one of the API Lambdas, or the invocation service. */
export type RouteTarget = ApiHandlerName | typeof INVOCATION_SERVICE;

export type HttpMethod = 'GET' | 'POST' | 'PUT' | 'DELETE' | 'PATCH';

interface RouteBase {
  method: HttpMethod;
  /** API Gateway path with `{param}` placeholders. */
  path: string;
  /** Reference of the route (F1, D2, ...), as docs/api.md lists it. */
  ref: string;
}

/** A route that needs an API key holding `scope`. */
export interface AuthenticatedRoute extends RouteBase {
  handler: RouteTarget;
  scope: Scope;
}

/** A route anyone may call, without a key (the OpenAPI document): no authorizer runs for it. */
export interface PublicRoute extends RouteBase {
  handler: ApiHandlerName;
  scope: null;
}

export type RouteDefinition = AuthenticatedRoute | PublicRoute;

const FN = '/v2/nvcf/functions';
const VERSION = '{functionId}/versions/{functionVersionId}';
const DEPLOYMENT = `/v2/nvcf/deployments/functions/${VERSION}`;
const REGISTRY_CREDENTIALS = '/v2/nvcf/registry-credentials';
const AUTHORIZATIONS = '/v2/nvcf/authorizations/functions/{functionId}';
const VERSION_AUTHORIZATIONS = `${AUTHORIZATIONS}/versions/{functionVersionId}`;
const KEYS = '/v1/keys';
export const OPENAPI_PATH = '/v2/nvcf/openapi.json';

export const ROUTES: readonly RouteDefinition[] = [
  { ref: 'F1', method: 'POST', path: FN, handler: 'functions', scope: 'register_function' },
  { ref: 'F2', method: 'POST', path: `${FN}/{functionId}/versions`, handler: 'functions', scope: 'register_function' },
  { ref: 'F3', method: 'GET', path: FN, handler: 'functions', scope: 'list_functions' },
  { ref: 'F4', method: 'GET', path: `${FN}/{functionId}/versions`, handler: 'functions', scope: 'list_functions' },
  { ref: 'F5', method: 'GET', path: `${FN}/${VERSION}`, handler: 'functions', scope: 'list_functions' },
  { ref: 'F6', method: 'GET', path: `${FN}/ids`, handler: 'functions', scope: 'list_functions' },
  { ref: 'F7', method: 'DELETE', path: `${FN}/${VERSION}`, handler: 'functions', scope: 'delete_function' },
  { ref: 'F8', method: 'PUT', path: `/v2/nvcf/metadata/functions/${VERSION}`, handler: 'functions', scope: 'update_function' },
  { ref: 'S1', method: 'PUT', path: `/v2/nvcf/secrets/functions/${VERSION}`, handler: 'functions', scope: 'update_secrets' },
  // Open-source NVCF's successor of F8 (tags, rateLimit) and its ratelimit routes (core/rate-limits.ts).
  { ref: 'F9', method: 'PUT', path: `${FN}/${VERSION}`, handler: 'functions', scope: 'update_function' },
  { ref: 'RL1', method: 'PUT', path: `/v2/nvcf/ratelimit/functions/${VERSION}`, handler: 'functions', scope: 'update_function' },
  { ref: 'RL2', method: 'DELETE', path: `/v2/nvcf/ratelimit/functions/${VERSION}`, handler: 'functions', scope: 'update_function' },
  // Our extension: the caller account's usage against its quotas (core/quotas.ts).
  { ref: 'U1', method: 'GET', path: '/v2/nvcf/accounts/me/usage', handler: 'functions', scope: 'list_functions' },

  // Registry credentials: served by the functions Lambda, which already seals secrets with the installation's key.
  { ref: 'R1', method: 'POST', path: REGISTRY_CREDENTIALS, handler: 'functions', scope: 'manage_registry_credentials' },
  { ref: 'R2', method: 'GET', path: REGISTRY_CREDENTIALS, handler: 'functions', scope: 'manage_registry_credentials' },
  { ref: 'R3', method: 'GET', path: `${REGISTRY_CREDENTIALS}/{registryCredentialId}`, handler: 'functions', scope: 'manage_registry_credentials' },
  { ref: 'R4', method: 'PATCH', path: `${REGISTRY_CREDENTIALS}/{registryCredentialId}`, handler: 'functions', scope: 'manage_registry_credentials' },
  { ref: 'R5', method: 'DELETE', path: `${REGISTRY_CREDENTIALS}/{registryCredentialId}`, handler: 'functions', scope: 'manage_registry_credentials' },
  { ref: 'R6', method: 'GET', path: '/v2/nvcf/recognized-registries', handler: 'functions', scope: 'manage_registry_credentials' },

  // Authorizations (nvcf-api.md §2.7): served by the functions Lambda, which owns the functions they share.
  { ref: 'Z1', method: 'GET', path: AUTHORIZATIONS, handler: 'functions', scope: 'authorize_clients' },
  { ref: 'Z2', method: 'POST', path: AUTHORIZATIONS, handler: 'functions', scope: 'authorize_clients' },
  { ref: 'Z3', method: 'DELETE', path: AUTHORIZATIONS, handler: 'functions', scope: 'authorize_clients' },
  { ref: 'Z4', method: 'PATCH', path: `${AUTHORIZATIONS}/add`, handler: 'functions', scope: 'authorize_clients' },
  { ref: 'Z5', method: 'PATCH', path: `${AUTHORIZATIONS}/remove`, handler: 'functions', scope: 'authorize_clients' },
  { ref: 'Z6', method: 'GET', path: VERSION_AUTHORIZATIONS, handler: 'functions', scope: 'authorize_clients' },
  { ref: 'Z7', method: 'POST', path: VERSION_AUTHORIZATIONS, handler: 'functions', scope: 'authorize_clients' },
  { ref: 'Z8', method: 'DELETE', path: VERSION_AUTHORIZATIONS, handler: 'functions', scope: 'authorize_clients' },
  { ref: 'Z9', method: 'PATCH', path: `${VERSION_AUTHORIZATIONS}/add`, handler: 'functions', scope: 'authorize_clients' },
  { ref: 'Z10', method: 'PATCH', path: `${VERSION_AUTHORIZATIONS}/remove`, handler: 'functions', scope: 'authorize_clients' },

  // API keys over HTTP, in the shapes of open-source NVCF's keys service (/v1/keys): a Lambda of their own, the only one writing ApiKeys.
  { ref: 'K1', method: 'POST', path: KEYS, handler: 'keys', scope: 'manage_api_keys' },
  { ref: 'K2', method: 'GET', path: KEYS, handler: 'keys', scope: 'manage_api_keys' },
  { ref: 'K3', method: 'GET', path: `${KEYS}/{keyId}`, handler: 'keys', scope: 'manage_api_keys' },
  { ref: 'K4', method: 'DELETE', path: `${KEYS}/{keyId}`, handler: 'keys', scope: 'manage_api_keys' },

  { ref: 'D1', method: 'POST', path: DEPLOYMENT, handler: 'deployments', scope: 'deploy_function' },
  { ref: 'D2', method: 'GET', path: DEPLOYMENT, handler: 'deployments', scope: 'deploy_function' },
  { ref: 'D3', method: 'PUT', path: DEPLOYMENT, handler: 'deployments', scope: 'deploy_function' },
  { ref: 'D4', method: 'DELETE', path: DEPLOYMENT, handler: 'deployments', scope: 'deploy_function' },

  { ref: 'I1', method: 'POST', path: '/v2/nvcf/pexec/functions/{functionId}', handler: INVOCATION_SERVICE, scope: 'invoke_function' },
  { ref: 'I2', method: 'POST', path: `/v2/nvcf/pexec/functions/${VERSION}`, handler: INVOCATION_SERVICE, scope: 'invoke_function' },
  { ref: 'I3', method: 'GET', path: '/v2/nvcf/pexec/status/{requestId}', handler: INVOCATION_SERVICE, scope: 'invoke_function' },
  // Our extension (docs/api.md "Cancel"): cancels a call that became durable.
  { ref: 'I6', method: 'POST', path: '/v2/nvcf/pexec/cancel/{requestId}', handler: INVOCATION_SERVICE, scope: 'invoke_function' },

  { ref: 'A1', method: 'POST', path: '/v2/nvcf/assets', handler: 'assets', scope: 'invoke_function' },
  { ref: 'A2', method: 'GET', path: '/v2/nvcf/assets', handler: 'assets', scope: 'invoke_function' },
  { ref: 'A3', method: 'GET', path: '/v2/nvcf/assets/{assetId}', handler: 'assets', scope: 'invoke_function' },
  { ref: 'A4', method: 'DELETE', path: '/v2/nvcf/assets/{assetId}', handler: 'assets', scope: 'invoke_function' },

  { ref: 'Q1', method: 'GET', path: '/v2/nvcf/queues/functions/{functionId}', handler: 'queues', scope: 'queue_details' },
  { ref: 'Q2', method: 'GET', path: `/v2/nvcf/queues/functions/${VERSION}`, handler: 'queues', scope: 'queue_details' },
  { ref: 'Q3', method: 'GET', path: '/v2/nvcf/queues/{requestId}/position', handler: 'queues', scope: 'queue_details' },

  { ref: 'G1', method: 'GET', path: '/v2/nvcf/clusterGroups', handler: 'gpus', scope: 'list_cluster_groups' },
  { ref: 'G2', method: 'GET', path: '/v2/nvcf/supportedGpus', handler: 'gpus', scope: 'register_function' },

  // Our extension: the OpenAPI document of this API (docs/openapi.json), public as API documents are; it holds no account's data.
  { ref: 'O1', method: 'GET', path: OPENAPI_PATH, handler: 'gpus', scope: null },

  // Our extension (NVCF has none): a version's instance logs. Reading a function is what list_functions grants, and a
  // key that may read a function's definition and status may read how it runs; a scope of its own would leave every
  // existing key without logs.
  { ref: 'L1', method: 'GET', path: `/v2/nvcf/logs/functions/${VERSION}`, handler: 'logs', scope: 'list_functions' },
];

/** API Gateway's route key, e.g. `GET /v2/nvcf/functions`. */
export function routeKey(route: Pick<RouteDefinition, 'method' | 'path'>): string {
  return `${route.method} ${route.path}`;
}

const ROUTES_BY_KEY = new Map(ROUTES.map((route) => [routeKey(route), route]));

export function routeByKey(key: string): RouteDefinition | undefined {
  return ROUTES_BY_KEY.get(key);
}

export interface RouteMatch {
  route: RouteDefinition;
  pathParameters: Record<string, string>;
}

/** A path segment, percent-decoded; one that is not valid percent-encoding is kept as sent, for the handler to reject. */
function decodePathSegment(segment: string): string {
  try {
    return decodeURIComponent(segment);
  } catch {
    return segment;
  }
}

/**
 * CORS as NVCF serves it on /v2/nvcf: any origin, the route table's methods,
 * the request headers NVCF reads (Authorization must be named: browsers never
 * let `*` cover it) and any other, since the rest reach the function, and the
 * response headers a browser client reads. No credentials: keys travel in
 * Authorization, never in cookies. API Gateway answers preflight OPTIONS
 * itself (the local gateway too); no route has OPTIONS or ANY, so the
 * authorizer never sees one.
 */
export const CORS = {
  allowOrigins: ['*'],
  allowMethods: [...new Set(ROUTES.map((route) => route.method))].sort(),
  allowHeaders: ['Authorization', 'Content-Type', 'Accept', 'NVCF-POLL-SECONDS', 'NVCF-INPUT-ASSET-REFERENCES', '*'],
  exposeHeaders: ['NVCF-REQID', 'NVCF-STATUS', 'NVCF-PERCENT-COMPLETE', 'Location'],
  maxAgeSeconds: 3600,
};

/**
 * Finds the route serving a request as API Gateway does: literal segments win
 * over `{param}` segments, so `/functions/ids` never matches `{functionId}`.
 * Returns undefined when no route has this path, or the list of methods the
 * path allows when only the method is wrong.
 */
export function matchRoute(method: string, path: string): RouteMatch | { allowed: HttpMethod[] } | undefined {
  const segments = path.split('/').filter(Boolean);
  const candidates: { route: RouteDefinition; params: Record<string, string>; literals: number }[] = [];
  for (const route of ROUTES) {
    const pattern = route.path.split('/').filter(Boolean);
    if (pattern.length !== segments.length) continue;
    const params: Record<string, string> = {};
    let literals = 0;
    const matches = pattern.every((part, i) => {
      const segment = segments[i]!;
      if (part.startsWith('{') && part.endsWith('}')) {
        params[part.slice(1, -1)] = decodePathSegment(segment);
        return true;
      }
      literals += 1;
      return part === segment;
    });
    if (matches) candidates.push({ route, params, literals });
  }
  if (candidates.length === 0) return undefined;
  const mostSpecific = Math.max(...candidates.map((c) => c.literals));
  const best = candidates.filter((c) => c.literals === mostSpecific);
  const hit = best.find((c) => c.route.method === method.toUpperCase());
  if (!hit) return { allowed: best.map((c) => c.route.method) };
  return { route: hit.route, pathParameters: hit.params };
}

/** API Gateway's catch-all route key: requests that no route of the table matches. */
export const DEFAULT_ROUTE_KEY = '$default';
/**
 * The Lambda API Gateway's `$default` route goes to: the smallest one, which
 * for this answer reads nothing and needs no grant.
 */
export const UNMATCHED_HANDLER: ApiHandlerName = 'gpus';

/**
 * The answer to a request no route serves, as problem+json: 405 with `Allow`
 * when only the method is wrong, 404 otherwise (also for a route of the table
 * this installation does not serve, e.g. pexec without a GPU cluster).
 */
export function unmatchedRequest(method: string, path: string): Problem {
  const match = matchRoute(method, path);
  if (match && 'allowed' in match) {
    const allowed = [...new Set(match.allowed)].join(', ');
    return new Problem(405, `${path} does not take ${method.toUpperCase()}; it takes ${allowed}`, { headers: { allow: allowed } });
  }
  if (match) return notFound(`${match.route.method} ${match.route.path} is not served by this installation (the invocation routes need a GPU cluster)`);
  return notFound(`no route ${method.toUpperCase()} ${path}; the NVCF API is under /v2/nvcf/ (see the API notes in docs/)`);
}
