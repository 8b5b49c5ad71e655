/**
 * API Gateway (HTTP API, payload 2.0) in-process: matches a request against
 * the route table, runs the authorizer (with a result cache keyed by the
 * Authorization header, as the CDK configures it), builds the v2 event and
 * calls the same Lambda handler the stack deploys. Used by `npm start` and by
 * the integration tests.
 *
 * The limits of API Gateway and Lambda are played as they behave on AWS, so
 * local runs fail where AWS would: a payload over 10 MB → 413; an event too
 * large for Lambda's request quota (bodies that are not text arrive
 * base64-encoded, text ones JSON-escaped) → 413 before the Lambda runs; an
 * answer over Lambda's response quota, or a Lambda that outlives its timeout
 * → 500 `{"message":"Internal Server Error"}`.
 */
import { randomUUID } from 'node:crypto';
import type {
  APIGatewayProxyEventV2WithLambdaAuthorizer,
  APIGatewayRequestAuthorizerEventV2,
  APIGatewaySimpleAuthorizerWithContextResult,
  Context,
} from 'aws-lambda';
import { LAMBDA_REQUEST_PAYLOAD_BYTES, LAMBDA_RESPONSE_PAYLOAD_BYTES, MiB } from '../core/limits';
import { CORS, INVOCATION_SERVICE, matchRoute, unmatchedRequest, type ApiHandlerName } from '../core/routes';
import { problemResponse } from '../lambdas/http/responses';
import type { AuthorizerContext } from '../lambdas/http/request';

/** API Gateway refuses payloads over 10 MB before any Lambda runs. */
export const GATEWAY_MAX_PAYLOAD_BYTES = 10 * MiB;
/** The API Lambdas' timeout as the stack sets it (API Gateway gives up after 30 s). */
export const DEFAULT_LAMBDA_TIMEOUT_SECONDS = 29;

export interface GatewayRequest {
  method: string;
  /** Path without the query string. */
  path: string;
  /** Query string without the leading `?`. */
  query?: string;
  headers?: Record<string, string | string[] | undefined>;
  body?: Buffer;
}

export interface GatewayResponse {
  statusCode: number;
  headers: Record<string, string>;
  body: Buffer;
}

type LambdaHandler<E, R> = (event: E, context: Context) => Promise<R>;
type ApiLambda = LambdaHandler<APIGatewayProxyEventV2WithLambdaAuthorizer<AuthorizerContext>, {
  statusCode?: number;
  headers?: Record<string, string | number | boolean>;
  body?: string;
  isBase64Encoded?: boolean;
  cookies?: string[];
}>;
type AuthorizerLambda = LambdaHandler<APIGatewayRequestAuthorizerEventV2, APIGatewaySimpleAuthorizerWithContextResult<AuthorizerContext>>;
/** An API Lambda's handler, as a route's integration calls it. */
export type ApiLambdaHandler = ApiLambda;

const API_LAMBDAS: Record<ApiHandlerName, () => Promise<{ handler: unknown }>> = {
  functions: () => import('../lambdas/functions'),
  deployments: () => import('../lambdas/deployments'),
  assets: () => import('../lambdas/assets'),
  queues: () => import('../lambdas/queues'),
  gpus: () => import('../lambdas/gpus'),
  logs: () => import('../lambdas/logs'),
  keys: () => import('../lambdas/keys'),
};

const TEXT_TYPES = /^(text\/|application\/(json|xml|javascript|x-www-form-urlencoded)|[^;]*\+json)/i;

function lambdaContext(name: string, timeoutMs = DEFAULT_LAMBDA_TIMEOUT_SECONDS * 1000): Context {
  const requestId = randomUUID();
  const deadline = Date.now() + timeoutMs;
  return {
    callbackWaitsForEmptyEventLoop: false,
    functionName: `nvcf-local-${name}`,
    functionVersion: '$LATEST',
    invokedFunctionArn: `arn:aws:lambda:us-east-1:000000000000:function:nvcf-local-${name}`,
    memoryLimitInMB: '512',
    awsRequestId: requestId,
    logGroupName: `/aws/lambda/nvcf-local-${name}`,
    logStreamName: 'local',
    getRemainingTimeInMillis: () => Math.max(0, deadline - Date.now()),
    done: () => undefined,
    fail: () => undefined,
    succeed: () => undefined,
  };
}

function gatewayError(statusCode: number, message: string): GatewayResponse {
  // API Gateway's own answers (no route, no credentials) are plain JSON, not problem+json.
  return { statusCode, headers: { 'content-type': 'application/json' }, body: Buffer.from(JSON.stringify({ message })) };
}

/** Headers as API Gateway v2 passes them: lower-cased names, repeated values joined by commas. */
function normaliseHeaders(headers: GatewayRequest['headers']): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [name, value] of Object.entries(headers ?? {})) {
    if (value === undefined) continue;
    out[name.toLowerCase()] = Array.isArray(value) ? value.join(',') : value;
  }
  return out;
}

function queryParameters(rawQuery: string): Record<string, string> | undefined {
  const params = new URLSearchParams(rawQuery);
  const out: Record<string, string> = {};
  for (const [name, value] of params) out[name] = name in out ? `${out[name]},${value}` : value;
  return Object.keys(out).length > 0 ? out : undefined;
}

/** Response headers as a client sees them: names lower-cased, the values of names repeated in another case joined by commas. */
function responseHeadersOf(headers: Record<string, string | number | boolean> | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [name, value] of Object.entries(headers ?? {})) {
    const lower = name.toLowerCase();
    out[lower] = lower in out ? `${out[lower]}, ${String(value)}` : String(value);
  }
  return out;
}

export interface LocalGatewayOptions {
  /** Seconds an authorizer answer is reused for the same Authorization header (CDK default: 300). */
  authorizerCacheSeconds?: number;
  /** Timeout of the API Lambdas (default 29 s, as the stack sets it); their context reports the time left. */
  lambdaTimeoutSeconds?: number;
  /** Handlers that replace the real ones (tests). */
  handlers?: Partial<Record<ApiHandlerName, ApiLambdaHandler>>;
}

export class LocalGateway {
  private readonly authorizerCache = new Map<string, { expires: number; context: AuthorizerContext }>();
  private readonly cacheMs: number;
  private readonly timeoutMs: number;

  constructor(private readonly options: LocalGatewayOptions = {}) {
    this.cacheMs = (options.authorizerCacheSeconds ?? 0) * 1000;
    this.timeoutMs = (options.lambdaTimeoutSeconds ?? DEFAULT_LAMBDA_TIMEOUT_SECONDS) * 1000;
  }

  /** Answers as API Gateway with NVCF's CORS configuration does: preflight itself, CORS headers on every answer to a browser. */
  async handle(request: GatewayRequest): Promise<GatewayResponse> {
    const headers = normaliseHeaders(request.headers);
    if (!headers.origin) return this.route(request);
    if (request.method.toUpperCase() === 'OPTIONS' && headers['access-control-request-method']) {
      return {
        statusCode: 204,
        headers: {
          'access-control-allow-origin': '*',
          'access-control-allow-methods': CORS.allowMethods.join(','),
          'access-control-allow-headers': CORS.allowHeaders.join(','),
          'access-control-max-age': String(CORS.maxAgeSeconds),
        },
        body: Buffer.alloc(0),
      };
    }
    const response = await this.route(request);
    return { ...response, headers: { ...response.headers, 'access-control-allow-origin': '*', 'access-control-expose-headers': CORS.exposeHeaders.join(',') } };
  }

  private async route(request: GatewayRequest): Promise<GatewayResponse> {
    const match = matchRoute(request.method, request.path);
    // The stack's $default route answers an unknown path (404) and a wrong method (405) as problem+json, before any authorizer.
    // Invocation routes go to the invocation service, which the HTTP front (local/http-server.ts) serves before the gateway.
    if (!match || 'allowed' in match || match.route.handler === INVOCATION_SERVICE) return this.unmatched(request);
    if ((request.body?.length ?? 0) > GATEWAY_MAX_PAYLOAD_BYTES) return gatewayError(413, 'Request Entity Too Large');

    const headers = normaliseHeaders(request.headers);
    const authorization = headers.authorization;
    if (!authorization && match.route.scope !== null) return gatewayError(401, 'Unauthorized');

    const rawQuery = request.query ?? '';
    const now = new Date();
    const requestId = randomUUID();
    const routeKey = `${match.route.method} ${match.route.path}`;
    const requestContext = {
      accountId: '000000000000',
      apiId: 'local',
      domainName: headers.host ?? '127.0.0.1',
      domainPrefix: 'local',
      http: {
        method: match.route.method,
        path: request.path,
        protocol: 'HTTP/1.1',
        sourceIp: '127.0.0.1',
        userAgent: headers['user-agent'] ?? '',
      },
      requestId,
      routeKey,
      stage: '$default',
      time: now.toISOString(),
      timeEpoch: now.getTime(),
    };

    // A public route has no authorizer (lib/http-api.ts), so its event carries no authorizer context.
    const context = match.route.scope === null ? undefined : await this.authorize(authorization!, {
      version: '2.0',
      type: 'REQUEST',
      routeArn: `arn:aws:execute-api:us-east-1:000000000000:local/$default/${match.route.method}${match.route.path}`,
      identitySource: [authorization],
      routeKey,
      rawPath: request.path,
      rawQueryString: rawQuery,
      headers,
      queryStringParameters: queryParameters(rawQuery),
      pathParameters: match.pathParameters,
      requestContext,
    } as APIGatewayRequestAuthorizerEventV2);
    if (!context && match.route.scope !== null) return gatewayError(403, 'Forbidden');

    const body = request.body ?? Buffer.alloc(0);
    const isText = TEXT_TYPES.test(headers['content-type'] ?? '');
    const event: APIGatewayProxyEventV2WithLambdaAuthorizer<AuthorizerContext> = {
      version: '2.0',
      routeKey,
      rawPath: request.path,
      rawQueryString: rawQuery,
      headers,
      queryStringParameters: queryParameters(rawQuery),
      pathParameters: Object.keys(match.pathParameters).length > 0 ? match.pathParameters : undefined,
      requestContext: { ...requestContext, ...(context ? { authorizer: { lambda: context } } : {}) },
      ...(body.length > 0 ? { body: body.toString(isText ? 'utf8' : 'base64'), isBase64Encoded: !isText } : { isBase64Encoded: false }),
    } as APIGatewayProxyEventV2WithLambdaAuthorizer<AuthorizerContext>;

    // Lambda refuses an invocation whose payload (the event's JSON) reaches its quota; API Gateway answers 413 itself.
    if (Buffer.byteLength(JSON.stringify(event)) >= LAMBDA_REQUEST_PAYLOAD_BYTES) return gatewayError(413, 'Request Too Long');

    const target = match.route.handler;
    const handler = this.options.handlers?.[target] ?? ((await API_LAMBDAS[target]()).handler as ApiLambda);
    let timer: NodeJS.Timeout | undefined;
    const timedOut = new Promise<'timeout'>((resolve) => (timer = setTimeout(() => resolve('timeout'), this.timeoutMs)));
    let result: Awaited<ReturnType<ApiLambda>> | 'timeout';
    try {
      // A function that throws fails the call (the HTTP front answers 500 and reports it).
      result = await Promise.race([handler(event, lambdaContext(target, this.timeoutMs)), timedOut]);
    } finally {
      clearTimeout(timer);
    }
    // A function that outlives its timeout, or answers more than Lambda's response quota, fails the integration.
    if (result === 'timeout' || Buffer.byteLength(JSON.stringify(result)) > LAMBDA_RESPONSE_PAYLOAD_BYTES) return gatewayError(500, 'Internal Server Error');
    return {
      statusCode: result.statusCode ?? 200,
      headers: responseHeadersOf(result.headers),
      body: Buffer.from(result.body ?? '', result.isBase64Encoded ? 'base64' : 'utf8'),
    };
  }

  private unmatched(request: GatewayRequest): GatewayResponse {
    const problem = unmatchedRequest(request.method, request.path);
    const response = problemResponse(problem.toBody(request.path, randomUUID()), problem.headers);
    return { statusCode: response.statusCode, headers: response.headers, body: Buffer.from(response.body ?? '') };
  }

  private async authorize(authorization: string, event: APIGatewayRequestAuthorizerEventV2): Promise<AuthorizerContext | undefined> {
    const cached = this.authorizerCache.get(authorization);
    if (cached && cached.expires > Date.now()) return cached.context;
    const { handler } = (await import('../lambdas/authorizer')) as { handler: AuthorizerLambda };
    const result = await handler(event, lambdaContext('authorizer'));
    if (!result.isAuthorized) return undefined;
    if (this.cacheMs > 0) this.authorizerCache.set(authorization, { expires: Date.now() + this.cacheMs, context: result.context });
    return result.context;
  }
}
