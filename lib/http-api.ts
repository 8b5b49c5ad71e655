/**
 * The NVCF HTTP API: one API Gateway route per entry of core/routes.ts, each
 * to the Lambda the route table names, behind the API-key authorizer, with
 * access logs and throttling on the $default stage, and NVCF's permissive CORS.
 */
import { Duration, RemovalPolicy } from 'aws-cdk-lib';
import { AccessLogFormat } from 'aws-cdk-lib/aws-apigateway';
import * as apigw from 'aws-cdk-lib/aws-apigatewayv2';
import { HttpLambdaAuthorizer, HttpLambdaResponseType } from 'aws-cdk-lib/aws-apigatewayv2-authorizers';
import { type HttpAlbIntegration, HttpLambdaIntegration } from 'aws-cdk-lib/aws-apigatewayv2-integrations';
import * as logs from 'aws-cdk-lib/aws-logs';
import { Construct } from 'constructs';
import { API_HANDLERS, CORS, INVOCATION_SERVICE, ROUTES, UNMATCHED_HANDLER, type ApiHandlerName } from '../core/routes';
import { acknowledge } from './iam';
import type { ApiFunctions } from './api-functions';
import type { ResolvedConfig } from './config';

export interface HttpApiProps {
  readonly config: ResolvedConfig;
  readonly functions: ApiFunctions;
  /**
   * The invocation service behind the VPC link (lib/invocation-plane.ts).
   * @default - none: without a GPU cluster there is nothing to invoke, and the invocation routes are not created
   */
  readonly invocationService?: HttpAlbIntegration;
}

/**
 * One JSON line per request, from HTTP API $context variables. The caller is
 * identified by the authorizer's accountId, never by the key.
 */
export const ACCESS_LOG_FIELDS = {
  requestId: '$context.requestId',
  requestTime: '$context.requestTime',
  sourceIp: '$context.identity.sourceIp',
  userAgent: '$context.identity.userAgent',
  httpMethod: '$context.httpMethod',
  path: '$context.path',
  routeKey: '$context.routeKey',
  status: '$context.status',
  protocol: '$context.protocol',
  responseLength: '$context.responseLength',
  responseLatency: '$context.responseLatency',
  integrationStatus: '$context.integrationStatus',
  integrationLatency: '$context.integrationLatency',
  integrationError: '$context.integrationErrorMessage',
  authorizerError: '$context.authorizer.error',
  accountId: '$context.authorizer.accountId',
  errorMessage: '$context.error.message',
};

export class NvcfHttpApi extends Construct {
  readonly api: apigw.HttpApi;
  readonly stage: apigw.HttpStage;
  readonly accessLogs: logs.LogGroup;

  constructor(scope: Construct, id: string, { config, functions, invocationService }: HttpApiProps) {
    super(scope, id);
    const fns = functions.functions;

    this.api = new apigw.HttpApi(this, 'Api', {
      description: 'NVIDIA Cloud Functions compatible API (NVCF on AWS)',
      // Our own $default stage below carries the access logs and throttling.
      createDefaultStage: false,
      corsPreflight: {
        allowOrigins: CORS.allowOrigins,
        allowMethods: CORS.allowMethods.map((method) => apigw.CorsHttpMethod[method]),
        allowHeaders: CORS.allowHeaders,
        exposeHeaders: CORS.exposeHeaders,
        maxAge: Duration.seconds(CORS.maxAgeSeconds),
      },
    });

    this.accessLogs = new logs.LogGroup(this, 'AccessLogs', {
      retention: config.logRetentionDays as logs.RetentionDays,
      removalPolicy: RemovalPolicy.DESTROY,
    });
    this.stage = new apigw.HttpStage(this, 'DefaultStage', {
      httpApi: this.api,
      stageName: '$default',
      autoDeploy: true,
      throttle: { rateLimit: config.throttlingRateLimit, burstLimit: config.throttlingBurstLimit },
      accessLogSettings: {
        destination: new apigw.LogGroupLogDestination(this.accessLogs),
        format: AccessLogFormat.custom(JSON.stringify(ACCESS_LOG_FIELDS)),
      },
    });

    // The authorizer admits unknown keys as unauthenticated (context authenticated=false) so
    // that the handlers, not API Gateway's bare 403, answer with NVCF's 401 problem+json.
    const authorizer = new HttpLambdaAuthorizer('ApiKeyAuthorizer', fns.authorizer, {
      authorizerName: 'nvcf-api-key',
      responseTypes: [HttpLambdaResponseType.SIMPLE],
      identitySource: ['$request.header.Authorization'],
      resultsCacheTtl: Duration.seconds(config.authorizerCacheSeconds),
    });

    const integrations = Object.fromEntries(
      API_HANDLERS.map((name) => [
        name,
        new HttpLambdaIntegration(`${name}-integration`, fns[name], { payloadFormatVersion: apigw.PayloadFormatVersion.VERSION_2_0 }),
      ]),
    ) as Record<ApiHandlerName, HttpLambdaIntegration>;

    for (const route of ROUTES) {
      const integration = route.handler === INVOCATION_SERVICE ? invocationService : integrations[route.handler];
      if (!integration) continue;
      const httpRoute = new apigw.HttpRoute(this, `Route${route.ref}`, {
        httpApi: this.api,
        routeKey: apigw.HttpRouteKey.with(route.path, apigw.HttpMethod[route.method]),
        integration,
        ...(route.scope === null ? {} : { authorizer }),
      });
      if (route.scope === null) {
        acknowledge(httpRoute, 'AwsSolutions-APIG4', `${route.method} ${route.path} (${route.ref}) is public by design: it answers the API's OpenAPI document, the same for everyone, and reads no account's data.`);
      }
    }

    // Anything else gets problem+json (404, or 405 on a known path) instead of API Gateway's bare {"message":"Not Found"}.
    // No authorizer: a missing key would answer 401 for a path that exists for nobody.
    const unmatched = new apigw.HttpRoute(this, 'RouteDefault', {
      httpApi: this.api,
      routeKey: apigw.HttpRouteKey.DEFAULT,
      integration: integrations[UNMATCHED_HANDLER],
    });
    acknowledge(
      unmatched,
      'AwsSolutions-APIG4',
      'The catch-all $default route only answers 404/405 problem+json for requests no route serves; it reads and returns no data, and every route that does is behind the API-key authorizer.',
    );
  }

  /** Base URL of the API, e.g. `https://abc123.execute-api.us-east-1.amazonaws.com/`. */
  get url(): string {
    return this.stage.url;
  }
}
