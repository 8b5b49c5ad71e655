/**
 * The middy pipeline every API Lambda runs: structured logging with the
 * Lambda context, caller and scope checks driven by the route table, and
 * problem+json for every error. Routes of a handler that have no
 * implementation yet answer 501, never a fake success.
 */
import { injectLambdaContext } from '@aws-lambda-powertools/logger/middleware';
import middy from '@middy/core';
import type { Context } from 'aws-lambda';
import { Problem, forbidden, notFound, unauthorized } from '../../core/problem';
import { DEFAULT_ROUTE_KEY, ROUTES, SCOPES, routeByKey, unmatchedRequest, type ApiHandlerName } from '../../core/routes';
import { logger } from './logger';
import { lowerCaseHeaders, rawBody, type ApiEvent, type ApiRequest, type Caller } from './request';
import type { RouteDocs } from './route-docs';
import { problemResponse, type ApiResponse } from './responses';

export type RouteImplementation = (req: ApiRequest) => Promise<ApiResponse>;

/** Implementations keyed by the route's reference (F1, D2, ...; core/routes.ts, docs/api.md). */
export type RouteImplementations = Record<string, RouteImplementation>;


/** The caller of a public route: no account, no scope. */
const ANONYMOUS: Caller = { accountId: '', scopes: new Set() };

function callerOf(event: ApiEvent): Caller {
  const context = event.requestContext.authorizer?.lambda;
  if (!context || context.authenticated !== 'true' || !context.accountId) {
    throw unauthorized(context?.reason ?? 'an API key is required: send "Authorization: Bearer <key>"');
  }
  const granted = new Set((context.scopes ?? '').split(',').filter(Boolean));
  const scopes = new Set(SCOPES.filter((scope) => granted.has(scope)));
  return { accountId: context.accountId, scopes, keyId: context.keyId, ...(context.keyExpiresAt ? { keyExpiresAt: context.keyExpiresAt } : {}) };
}

function toProblemResponse(error: unknown, event: ApiEvent): ApiResponse {
  const problem =
    error instanceof Problem ? error : new Problem(500, `internal error; quote request id ${event.requestContext.requestId} when reporting it`);
  if (problem.status >= 500) logger.error('request failed', { error: error as Error, routeKey: event.routeKey });
  else logger.info('request refused', { status: problem.status, detail: problem.detail, routeKey: event.routeKey });
  return problemResponse(problem.toBody(event.rawPath, event.requestContext.requestId), problem.headers);
}

/**
 * Builds the Lambda handler for one resource group of the route table.
 *
 * `docs` describes the routes for the OpenAPI document (lambdas/http/openapi.ts); a
 * route parses its body and query only with the schemas its entry names.
 *
 * @example
 * export const handler = createApiHandler('assets', { A1: createAsset, A3: getAsset }, assetRouteDocs);
 */
export function createApiHandler(name: ApiHandlerName, implementations: RouteImplementations, docs: RouteDocs = {}) {
  const ownRoutes = ROUTES.filter((route) => route.handler === name);
  for (const ref of [...Object.keys(implementations), ...Object.keys(docs)]) {
    if (!ownRoutes.some((route) => route.ref === ref)) {
      throw new Error(`route ${ref} is not served by the ${name} handler (see core/routes.ts)`);
    }
  }

  const dispatch = async (event: ApiEvent): Promise<ApiResponse> => {
    // API Gateway's catch-all route (lib/http-api.ts) runs no authorizer: a path that does not exist is one for every caller.
    if (event.routeKey === DEFAULT_ROUTE_KEY) throw unmatchedRequest(event.requestContext.http.method, event.rawPath);
    const route = routeByKey(event.routeKey);
    if (!route || route.handler !== name) throw notFound(`no route ${event.routeKey}`);
    // A public route has no authorizer in front of it, and no caller.
    const caller = route.scope === null ? ANONYMOUS : callerOf(event);
    if (route.scope !== null && !caller.scopes.has(route.scope)) {
      throw forbidden(`this API key lacks the "${route.scope}" scope needed for ${route.method} ${route.path}`);
    }
    const implementation = implementations[route.ref];
    if (!implementation) throw new Problem(501, `${route.method} ${route.path} (${route.ref}) is not implemented yet`);
    return implementation({
      route,
      caller,
      params: event.pathParameters ? (Object.fromEntries(Object.entries(event.pathParameters)) as Record<string, string>) : {},
      query: (event.queryStringParameters ?? {}) as Record<string, string>,
      headers: lowerCaseHeaders(event.headers),
      body: rawBody(event),
      requestId: event.requestContext.requestId,
      path: event.rawPath,
      event,
      doc: docs[route.ref],
    });
  };

  return middy<ApiEvent, ApiResponse, Error, Context>()
    .use(injectLambdaContext(logger, { resetKeys: true }))
    .use({
      onError: async (request) => {
        request.response = toProblemResponse(request.error, request.event);
      },
    })
    .handler(dispatch);
}
