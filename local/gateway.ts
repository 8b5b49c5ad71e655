/**
 * API Gateway (HTTP API, payload 2.0) in-process: matches a request against
 * the route table, runs the authorizer (with a result cache keyed by the
 * Authorization header, as the CDK configures it), builds the v2 event and
 * calls the same Lambda handler the stack deploys. Used by `npm start` and by
 * the integration tests.
 */
import { randomUUID } from 'node:crypto';
import type {
  APIGatewayProxyEventV2WithLambdaAuthorizer,
  APIGatewayRequestAuthorizerEventV2,
  APIGatewaySimpleAuthorizerWithContextResult,
  Context,
} from 'aws-lambda';
import { matchRoute, type ApiHandlerName } from '../core/routes';
import type { AuthorizerContext } from '../lambdas/http/request';

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

const API_LAMBDAS: Record<ApiHandlerName, () => Promise<{ handler: unknown }>> = {
  functions: () => import('../lambdas/functions'),
  deployments: () => import('../lambdas/deployments'),
  invocations: () => import('../lambdas/invocations'),
  assets: () => import('../lambdas/assets'),
  queues: () => import('../lambdas/queues'),
  gpus: () => import('../lambdas/gpus'),
};

const TEXT_TYPES = /^(text\/|application\/(json|xml|javascript|x-www-form-urlencoded)|[^;]*\+json)/i;

function lambdaContext(name: string): Context {
  const requestId = randomUUID();
  return {
    callbackWaitsForEmptyEventLoop: false,
    functionName: `nvcf-local-${name}`,
    functionVersion: '$LATEST',
    invokedFunctionArn: `arn:aws:lambda:us-east-1:000000000000:function:nvcf-local-${name}`,
    memoryLimitInMB: '512',
    awsRequestId: requestId,
    logGroupName: `/aws/lambda/nvcf-local-${name}`,
    logStreamName: 'local',
    getRemainingTimeInMillis: () => 29_000,
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

export interface LocalGatewayOptions {
  /** Seconds an authorizer answer is reused for the same Authorization header (CDK default: 300). */
  authorizerCacheSeconds?: number;
}

export class LocalGateway {
  private readonly authorizerCache = new Map<string, { expires: number; context: AuthorizerContext }>();
  private readonly cacheMs: number;

  constructor(options: LocalGatewayOptions = {}) {
    this.cacheMs = (options.authorizerCacheSeconds ?? 0) * 1000;
  }

  async handle(request: GatewayRequest): Promise<GatewayResponse> {
    const match = matchRoute(request.method, request.path);
    // API Gateway answers an unknown path and a wrong method alike.
    if (!match || 'allowed' in match) return gatewayError(404, 'Not Found');

    const headers = normaliseHeaders(request.headers);
    const authorization = headers.authorization;
    if (!authorization) return gatewayError(401, 'Unauthorized');

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

    const context = await this.authorize(authorization, {
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
    if (!context) return gatewayError(403, 'Forbidden');

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
      requestContext: { ...requestContext, authorizer: { lambda: context } },
      ...(body.length > 0 ? { body: body.toString(isText ? 'utf8' : 'base64'), isBase64Encoded: !isText } : { isBase64Encoded: false }),
    } as APIGatewayProxyEventV2WithLambdaAuthorizer<AuthorizerContext>;

    const module = await API_LAMBDAS[match.route.handler]();
    const result = await (module.handler as ApiLambda)(event, lambdaContext(match.route.handler));
    const responseHeaders: Record<string, string> = {};
    for (const [name, value] of Object.entries(result.headers ?? {})) responseHeaders[name.toLowerCase()] = String(value);
    return {
      statusCode: result.statusCode ?? 200,
      headers: responseHeaders,
      body: Buffer.from(result.body ?? '', result.isBase64Encoded ? 'base64' : 'utf8'),
    };
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
