/**
 * The serverless control plane (API, Lambdas, tables, bucket, queue settings,
 * monitoring), synthesized without the EKS cluster; the cluster's own
 * resources and the Lambda grants on it are in gpu-cluster.test.ts.
 */
import { RemovalPolicy } from 'aws-cdk-lib';
import { Match } from 'aws-cdk-lib/assertions';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ENV as ENV_NAMES, S3_PREFIX } from '../../core/names';
import { INVOCATION_SERVICE, ROUTES, routeKey } from '../../core/routes';
import { TABLES, TTL_ATTRIBUTE, type TableName } from '../../core/tables';
import { LAMBDA_NAMES, type LambdaName } from '../../lib/api-functions';
import { ACCESS_LOG_FIELDS } from '../../lib/http-api';
import { actionsOf, grantsOf, logicalId, roleStatements, synthesize, withStack, type Statement, type Synthesized } from './support';

let synth: Synthesized;
beforeAll(() => {
  synth = synthesize({ gpuCluster: false });
});
afterAll(() => synth?.dispose());

const fnId = (name: LambdaName) => logicalId(synth.stack.functions.functions[name]);
const statementsOf = (name: LambdaName): Statement[] => roleStatements(synth.template, logicalId(synth.stack.functions.functions[name].role as never));
const tableArn = (table: TableName) => ({ 'Fn::GetAtt': [logicalId(synth.stack.data.tables[table]), 'Arn'] });
const bucketPrefixArn = (prefix: keyof typeof S3_PREFIX) => ({
  'Fn::Join': ['', [{ 'Fn::GetAtt': [logicalId(synth.stack.data.bucket), 'Arn'] }, `/${S3_PREFIX[prefix]}*`]],
});
const queueArn = { 'Fn::Join': ['', ['arn:', { Ref: 'AWS::Partition' }, ':sqs:us-east-1:123456789012:nvcf-*']] };

describe('DynamoDB', () => {
  it('creates exactly the tables of core/tables.ts', () => {
    synth.template.resourceCountIs('AWS::DynamoDB::Table', Object.keys(TABLES).length);
  });

  it.each(Object.keys(TABLES) as TableName[])('builds the %s table from its definition: keys, indexes, TTL', (name) => {
    const definition = TABLES[name];
    const table = synth.template.toJSON().Resources[logicalId(synth.stack.data.tables[name])];

    expect(table.Properties.KeySchema).toEqual([
      { AttributeName: definition.partitionKey.name, KeyType: 'HASH' },
      ...('sortKey' in definition ? [{ AttributeName: definition.sortKey.name, KeyType: 'RANGE' }] : []),
    ]);
    expect((table.Properties.GlobalSecondaryIndexes ?? []).map((index: { IndexName: string }) => index.IndexName)).toEqual(
      definition.globalIndexes.map((index) => index.indexName),
    );
    if ('ttlAttribute' in definition) expect(table.Properties.TimeToLiveSpecification).toEqual({ AttributeName: TTL_ATTRIBUTE, Enabled: true });
    else expect(table.Properties.TimeToLiveSpecification).toBeUndefined();
  });

  it('makes every table on-demand, point-in-time recoverable, encrypted, retained and deletion-protected', () => {
    const tables = synth.template.findResources('AWS::DynamoDB::Table');
    for (const table of Object.values(tables)) {
      expect(table.Properties).toMatchObject({
        BillingMode: 'PAY_PER_REQUEST',
        PointInTimeRecoverySpecification: { PointInTimeRecoveryEnabled: true },
        SSESpecification: { SSEEnabled: true },
        DeletionProtectionEnabled: true,
      });
      expect(table.DeletionPolicy).toBe('Retain');
      expect(table.UpdateReplacePolicy).toBe('Retain');
    }
  });

  it('deletes tables and empties the bucket with the stack when dataRemovalPolicy is destroy', () => {
    withStack({ gpuCluster: false, dataRemovalPolicy: RemovalPolicy.DESTROY }, ({ template }) => {
      for (const table of Object.values(template.findResources('AWS::DynamoDB::Table'))) {
        expect(table.DeletionPolicy).toBe('Delete');
        expect(table.Properties.DeletionProtectionEnabled).toBe(false);
      }
      template.resourceCountIs('Custom::S3AutoDeleteObjects', 2);
    });
  });
});

describe('S3', () => {
  const bucket = () => synth.template.toJSON().Resources[logicalId(synth.stack.data.bucket)];

  it('blocks public access, encrypts, keeps no versions and logs access to a separate bucket', () => {
    expect(bucket().Properties).toMatchObject({
      PublicAccessBlockConfiguration: { BlockPublicAcls: true, BlockPublicPolicy: true, IgnorePublicAcls: true, RestrictPublicBuckets: true },
      BucketEncryption: { ServerSideEncryptionConfiguration: [{ ServerSideEncryptionByDefault: { SSEAlgorithm: 'AES256' } }] },
      LoggingConfiguration: { DestinationBucketName: { Ref: logicalId(synth.stack.node.findChild('Data').node.findChild('AccessLogsBucket') as never) }, LogFilePrefix: 'platform-bucket/' },
    });
    expect(bucket().Properties.VersioningConfiguration).toBeUndefined();
    expect(bucket().DeletionPolicy).toBe('Retain');
  });

  it('refuses plain-HTTP requests on both buckets', () => {
    const policies = Object.values(synth.template.findResources('AWS::S3::BucketPolicy'));
    expect(policies).toHaveLength(2);
    for (const policy of policies) {
      expect(policy.Properties.PolicyDocument.Statement).toContainEqual(
        expect.objectContaining({ Effect: 'Deny', Action: 's3:*', Condition: { Bool: { 'aws:SecureTransport': 'false' } } }),
      );
    }
  });

  it('expires assets/, inputs/ and outputs/ after one day and aborts incomplete uploads', () => {
    expect(bucket().Properties.LifecycleConfiguration.Rules).toEqual([
      { Id: 'expire-assets', Prefix: 'assets/', ExpirationInDays: 1, Status: 'Enabled' },
      { Id: 'expire-inputs', Prefix: 'inputs/', ExpirationInDays: 1, Status: 'Enabled' },
      { Id: 'expire-outputs', Prefix: 'outputs/', ExpirationInDays: 1, Status: 'Enabled' },
      { Id: 'abort-incomplete-multipart-uploads', AbortIncompleteMultipartUpload: { DaysAfterInitiation: 1 }, Status: 'Enabled' },
    ]);
  });

  it('allows browser uploads (presigned POST and PUT) from any origin by default', () => {
    expect(bucket().Properties.CorsConfiguration.CorsRules).toEqual([
      { AllowedMethods: ['POST', 'PUT'], AllowedOrigins: ['*'], AllowedHeaders: ['*'], ExposedHeaders: ['ETag'], MaxAge: 3000 },
    ]);
  });

  it('applies the configured expiry and CORS origins', () => {
    withStack({ gpuCluster: false, objectExpirationDays: 7, corsAllowedOrigins: ['https://app.example'] }, ({ template }) => {
      template.hasResourceProperties('AWS::S3::Bucket', {
        LifecycleConfiguration: { Rules: Match.arrayWith([Match.objectLike({ Prefix: 'outputs/', ExpirationInDays: 7 })]) },
        CorsConfiguration: { CorsRules: [Match.objectLike({ AllowedOrigins: ['https://app.example'] })] },
      });
    });
  });
});

describe('SQS', () => {
  it('creates no queues at deploy time: the deployments Lambda creates one per deployed version', () => {
    synth.template.resourceCountIs('AWS::SQS::Queue', 0);
  });

  it('tells the runtime the queue prefix and SQS-managed encryption by default', () => {
    synth.template.hasResourceProperties('AWS::Lambda::Function', {
      Environment: { Variables: Match.objectLike({ [ENV_NAMES.queuePrefix]: 'nvcf-', [ENV_NAMES.queueKmsKeyId]: '', [ENV_NAMES.maxReceiveCount]: '3' }) },
    });
    // The one key is the secrets key (test/cdk/secrets.test.ts): none for queues.
    expect(synth.stack.data.queueKey).toBeUndefined();
    synth.template.resourceCountIs('AWS::KMS::Key', 1);
  });

  it('creates a rotating customer managed key for queues when asked, and lets only senders encrypt with it', () => {
    withStack({ gpuCluster: false, queueEncryption: 'kms' }, ({ stack, template }) => {
      const keyId = logicalId(stack.data.queueKey!);
      template.hasResourceProperties('AWS::KMS::Key', { EnableKeyRotation: true });
      for (const name of LAMBDA_NAMES) {
        expect(template.toJSON().Resources[logicalId(stack.functions.functions[name])].Properties.Environment.Variables[ENV_NAMES.queueKmsKeyId]).toEqual({
          'Fn::GetAtt': [keyId, 'Arn'],
        });
      }
      const kmsActions = (name: LambdaName) =>
        roleStatements(template, logicalId(stack.functions.functions[name].role as never))
          .filter((s) => JSON.stringify(s.Resource).includes(keyId))
          .flatMap((s) => s.Action);
      expect(kmsActions('deployments')).toEqual(['kms:Decrypt']);
      expect(kmsActions('sweeper')).toEqual(['kms:Decrypt']);
      for (const name of LAMBDA_NAMES.filter((n) => !['deployments', 'sweeper'].includes(n))) expect(kmsActions(name)).toEqual([]);
    });
  });
});

describe('Lambdas', () => {
  it('creates one function per handler of the route table plus the authorizer and the sweeper', () => {
    expect(Object.keys(synth.stack.functions.functions).sort()).toEqual([...LAMBDA_NAMES].sort());
    synth.template.resourceCountIs('AWS::Lambda::Function', LAMBDA_NAMES.length);
  });

  it.each(LAMBDA_NAMES)('runs %s on Node.js 24, arm64, as an ESM bundle with Powertools and the platform environment', (name) => {
    const fn = synth.template.toJSON().Resources[fnId(name)];
    expect(fn.Properties).toMatchObject({ Runtime: 'nodejs24.x', Architectures: ['arm64'], Handler: 'index.handler', MemorySize: 512 });
    const env = fn.Properties.Environment.Variables;
    expect(env).toMatchObject({ POWERTOOLS_SERVICE_NAME: 'nvcf', POWERTOOLS_LOG_LEVEL: 'INFO', POWERTOOLS_METRICS_NAMESPACE: 'NVCF', [ENV_NAMES.bucket]: { Ref: logicalId(synth.stack.data.bucket) } });
    for (const table of Object.values(TABLES)) expect(env[table.envVar]).toEqual({ Ref: logicalId(synth.stack.data.tables[(Object.keys(TABLES) as TableName[]).find((k) => TABLES[k] === table)!]) });
    expect(env[ENV_NAMES.gpus]).toBe(JSON.stringify([{ name: 'L4', instanceTypes: ['g6.xlarge'] }]));
    expect(env[ENV_NAMES.clusterName]).toBeUndefined();
  });

  it('runs the sweeper every minute from an EventBridge rule, and only EventBridge may invoke it', () => {
    synth.template.hasResourceProperties('AWS::Events::Rule', {
      ScheduleExpression: 'rate(1 minute)',
      State: 'ENABLED',
      Targets: [Match.objectLike({ Arn: { 'Fn::GetAtt': [fnId('sweeper'), 'Arn'] } })],
    });
    const permissions = Object.values(synth.template.findResources('AWS::Lambda::Permission')).filter((p) => p.Properties.FunctionName['Fn::GetAtt'][0] === fnId('sweeper'));
    expect(permissions.map((p) => p.Properties)).toEqual([
      expect.objectContaining({ Action: 'lambda:InvokeFunction', Principal: 'events.amazonaws.com', SourceArn: { 'Fn::GetAtt': [logicalId(synth.stack.functions.sweepSchedule), 'Arn'] } }),
    ]);
  });

  it('never retries a sweep and drops one older than the interval: the next pass does the same work', () => {
    synth.template.hasResourceProperties('AWS::Lambda::EventInvokeConfig', {
      FunctionName: { Ref: fnId('sweeper') },
      MaximumRetryAttempts: 0,
      MaximumEventAgeInSeconds: 60,
    });
    expect(synth.template.toJSON().Resources[fnId('sweeper')].Properties.Timeout).toBeLessThan(60);
  });

  it('gives the sweeper the same environment as the deployments Lambda', () => {
    const env = (name: LambdaName) => synth.template.toJSON().Resources[fnId(name)].Properties.Environment.Variables;
    expect(env('sweeper')).toEqual(env('deployments'));
  });

  it.each(LAMBDA_NAMES)('logs %s to its own log group with the configured retention', (name) => {
    const logGroupId = logicalId(synth.stack.functions.functions[name].logGroup as never);
    expect(synth.template.toJSON().Resources[fnId(name)].Properties.LoggingConfig).toEqual({ LogGroup: { Ref: logGroupId } });
    expect(synth.template.toJSON().Resources[logGroupId].Properties.RetentionInDays).toBe(30);
  });
});

describe('least privilege per Lambda', () => {
  it('gives no Lambda role an AWS managed policy or a wildcard action', () => {
    for (const name of LAMBDA_NAMES) {
      const role = synth.template.toJSON().Resources[logicalId(synth.stack.functions.functions[name].role as never)];
      expect(role.Properties.ManagedPolicyArns).toBeUndefined();
      expect(actionsOf(statementsOf(name)).filter((action) => action.includes('*'))).toEqual([]);
    }
  });

  it('lets each Lambda write only its own log group', () => {
    for (const name of LAMBDA_NAMES) {
      const logs = grantsOf(statementsOf(name), 'logs:PutLogEvents');
      expect(logs).toHaveLength(1);
      expect(logs[0]!.Resource).toEqual({ 'Fn::GetAtt': [logicalId(synth.stack.functions.functions[name].logGroup as never), 'Arn'] });
    }
  });

  it('lets the authorizer only GetItem on the ApiKeys table', () => {
    const statements = statementsOf('authorizer').filter((s) => !actionsOf([s]).some((a) => a.startsWith('logs:')));
    expect(statements).toEqual([{ Effect: 'Allow', Action: 'dynamodb:GetItem', Resource: [tableArn('apiKeys')] }]);
  });

  it('lets no Lambda send to the version queues (the invocation service does)', () => {
    for (const name of LAMBDA_NAMES) expect(grantsOf(statementsOf(name), 'sqs:SendMessage')).toEqual([]);
  });

  it('lets only the deployments Lambda create queues and only the sweeper delete them, both tag them, only nvcf-* ones', () => {
    const only = (action: string, names: LambdaName[]) => {
      for (const name of names) expect(grantsOf(statementsOf(name), action).map((s) => s.Resource)).toEqual([queueArn]);
      for (const name of LAMBDA_NAMES.filter((n) => !names.includes(n))) expect(grantsOf(statementsOf(name), action)).toEqual([]);
    };
    only('sqs:CreateQueue', ['deployments']);
    only('sqs:DeleteQueue', ['sweeper']);
    only('sqs:TagQueue', ['deployments', 'sweeper']);
  });

  it('lets no Lambda change queue attributes (redrive and encryption are set at creation only)', () => {
    for (const name of LAMBDA_NAMES) expect(grantsOf(statementsOf(name), 'sqs:SetQueueAttributes')).toEqual([]);
  });

  it('grants each Lambda exactly the SQS actions its code calls', () => {
    const sqs = (name: LambdaName) => actionsOf(statementsOf(name)).filter((a) => a.startsWith('sqs:'));
    expect(sqs('deployments')).toEqual(['sqs:CreateQueue', 'sqs:DeleteMessage', 'sqs:GetQueueAttributes', 'sqs:ReceiveMessage', 'sqs:TagQueue']);
    expect(sqs('queues')).toEqual(['sqs:GetQueueAttributes']);
    expect(sqs('sweeper')).toEqual(['sqs:DeleteMessage', 'sqs:DeleteQueue', 'sqs:GetQueueAttributes', 'sqs:ListQueueTags', 'sqs:ListQueues', 'sqs:ReceiveMessage', 'sqs:TagQueue']);
    for (const name of ['functions', 'assets', 'gpus', 'authorizer', 'keys'] as const) expect(sqs(name)).toEqual([]);
  });

  it('grants each Lambda exactly its S3 actions, on its key prefixes only', () => {
    const s3 = (name: LambdaName) => statementsOf(name).filter((s) => actionsOf([s]).some((a) => a.startsWith('s3:')));
    // Listing the assets prefix: the assetBytes quota (A1) and the usage endpoint (U1, functions Lambda).
    const listAssets = { Effect: 'Allow', Action: 's3:ListBucket', Resource: { 'Fn::GetAtt': [logicalId(synth.stack.data.bucket), 'Arn'] }, Condition: { StringLike: { 's3:prefix': ['assets/*'] } } };
    expect(s3('assets')).toEqual([listAssets, { Effect: 'Allow', Action: ['s3:PutObject', 's3:DeleteObject'], Resource: bucketPrefixArn('assets') }]);
    expect(s3('functions')).toEqual([listAssets]);
    for (const name of ['deployments', 'queues', 'gpus', 'authorizer', 'sweeper', 'keys'] as const) expect(s3(name)).toEqual([]);
  });

  it('grants each Lambda only the tables it uses, writing only where it must', () => {
    const access = (name: LambdaName) => {
      const result: Record<string, 'read' | 'write'> = {};
      for (const table of Object.keys(TABLES) as TableName[]) {
        const arn = JSON.stringify(tableArn(table));
        const onTable = statementsOf(name).filter((s) => JSON.stringify(s.Resource).includes(arn));
        if (onTable.length === 0) continue;
        result[table] = actionsOf(onTable).some((a) => ['dynamodb:PutItem', 'dynamodb:UpdateItem', 'dynamodb:DeleteItem'].includes(a)) ? 'write' : 'read';
      }
      return result;
    };
    expect(access('functions')).toEqual({ functions: 'write', instances: 'read', registryCredentials: 'write', authorizations: 'write', quotas: 'read', counters: 'read' });
    expect(access('deployments')).toEqual({ functions: 'write', invocations: 'write', registryCredentials: 'read', quotas: 'read' });
    expect(access('assets')).toEqual({ assets: 'write', quotas: 'read' });
    expect(access('queues')).toEqual({ functions: 'read', invocations: 'read' });
    expect(access('gpus')).toEqual({});
    expect(access('authorizer')).toEqual({ apiKeys: 'read' });
    expect(access('sweeper')).toEqual({ functions: 'read', invocations: 'write' });
    expect(access('keys')).toEqual({ apiKeys: 'write' });
  });

  it('lets the keys Lambda read, create and revoke keys (never delete one), and the functions Lambda manage authorization sets', () => {
    const on = (name: LambdaName, table: TableName) =>
      actionsOf(statementsOf(name).filter((s) => JSON.stringify(s.Resource).includes(JSON.stringify(tableArn(table))))).sort();
    expect(on('keys', 'apiKeys')).toEqual(['dynamodb:GetItem', 'dynamodb:PutItem', 'dynamodb:Scan', 'dynamodb:UpdateItem']);
    expect(on('functions', 'authorizations')).toEqual(['dynamodb:DeleteItem', 'dynamodb:PutItem', 'dynamodb:Query', 'dynamodb:Scan', 'dynamodb:UpdateItem']);
    for (const name of LAMBDA_NAMES.filter((n) => n !== 'functions')) expect(on(name, 'authorizations'), name).toEqual([]);
  });

  it('lets the deployments Lambda and the sweeper only error invocations (update a stored one, put a waiting sync one), never read or delete one', () => {
    for (const name of ['deployments', 'sweeper'] as const) {
      const onInvocations = statementsOf(name).filter((s) => JSON.stringify(s.Resource).includes(JSON.stringify(tableArn('invocations'))));
      expect(actionsOf(onInvocations).sort()).toEqual(['dynamodb:PutItem', 'dynamodb:UpdateItem']);
    }
  });

  it('lets the sweeper only scan the Functions table for the deployed versions', () => {
    const onFunctions = statementsOf('sweeper').filter((s) => JSON.stringify(s.Resource).includes(JSON.stringify(tableArn('functions'))));
    expect(actionsOf(onFunctions)).toEqual(['dynamodb:Scan']);
  });

  it('lets the sweeper list queues account-wide (SQS cannot scope ListQueues) and nothing else on *', () => {
    const unscoped = statementsOf('sweeper').filter((s) => s.Resource === '*');
    expect(unscoped).toEqual([{ Sid: 'FindPlatformQueues', Effect: 'Allow', Action: 'sqs:ListQueues', Resource: '*' }]);
  });

  it('gives no Lambda EKS permissions when there is no cluster', () => {
    for (const name of LAMBDA_NAMES) expect(actionsOf(statementsOf(name)).filter((a) => a.startsWith('eks:'))).toEqual([]);
  });
});

describe('HTTP API', () => {
  it('creates one route per Lambda entry of core/routes.ts, each to the Lambda the route names; without a cluster no invocation route', () => {
    const template = synth.template.toJSON();
    const routes = Object.values<{ Type: string; Properties: { RouteKey: string; Target: { 'Fn::Join': [string, [string, { Ref: string }]] } } }>(template.Resources).filter(
      (r) => r.Type === 'AWS::ApiGatewayV2::Route',
    );
    const lambdaRoutes = ROUTES.filter((route) => route.handler !== INVOCATION_SERVICE);
    expect(routes.map((r) => r.Properties.RouteKey).filter((key) => key !== '$default').sort()).toEqual(lambdaRoutes.map(routeKey).sort());
    for (const route of lambdaRoutes) {
      const resource = routes.find((r) => r.Properties.RouteKey === routeKey(route))!;
      const integration = template.Resources[resource.Properties.Target['Fn::Join'][1][1].Ref];
      expect(integration.Properties).toMatchObject({ IntegrationType: 'AWS_PROXY', PayloadFormatVersion: '2.0', IntegrationUri: { 'Fn::GetAtt': [fnId(route.handler as LambdaName), 'Arn'] } });
    }
  });

  it('puts every route of the table behind the API-key authorizer, but the public ones (the OpenAPI document)', () => {
    const authorizerId = Object.keys(synth.template.findResources('AWS::ApiGatewayV2::Authorizer'))[0];
    const publicKeys = ROUTES.filter((route) => route.scope === null).map(routeKey);
    expect(publicKeys).toEqual(['GET /v2/nvcf/openapi.json']);
    for (const route of Object.values(synth.template.findResources('AWS::ApiGatewayV2::Route')).filter((r) => r.Properties.RouteKey !== '$default')) {
      if (publicKeys.includes(route.Properties.RouteKey)) expect(route.Properties.AuthorizationType ?? 'NONE').toBe('NONE');
      else expect(route.Properties).toMatchObject({ AuthorizationType: 'CUSTOM', AuthorizerId: { Ref: authorizerId } });
    }
  });

  it('uses a cached REQUEST authorizer with simple responses keyed on the Authorization header', () => {
    synth.template.resourceCountIs('AWS::ApiGatewayV2::Authorizer', 1);
    synth.template.hasResourceProperties('AWS::ApiGatewayV2::Authorizer', {
      AuthorizerType: 'REQUEST',
      AuthorizerPayloadFormatVersion: '2.0',
      EnableSimpleResponses: true,
      IdentitySource: ['$request.header.Authorization'],
      AuthorizerResultTtlInSeconds: 300,
      AuthorizerUri: Match.objectLike({ 'Fn::Join': ['', Match.arrayWith([{ 'Fn::GetAtt': [fnId('authorizer'), 'Arn'] }])] }),
    });
  });

  it('applies the configured authorizer cache and throttling', () => {
    withStack({ gpuCluster: false, authorizerCacheSeconds: 0, throttlingRateLimit: 20, throttlingBurstLimit: 40 }, ({ template }) => {
      template.hasResourceProperties('AWS::ApiGatewayV2::Authorizer', { AuthorizerResultTtlInSeconds: 0 });
      template.hasResourceProperties('AWS::ApiGatewayV2::Stage', { DefaultRouteSettings: { ThrottlingRateLimit: 20, ThrottlingBurstLimit: 40 } });
    });
  });

  it('serves a throttled $default stage that writes JSON access logs', () => {
    synth.template.resourceCountIs('AWS::ApiGatewayV2::Stage', 1);
    const stage = Object.values(synth.template.findResources('AWS::ApiGatewayV2::Stage'))[0]!;
    expect(stage.Properties).toMatchObject({ StageName: '$default', AutoDeploy: true, DefaultRouteSettings: { ThrottlingRateLimit: 100, ThrottlingBurstLimit: 200 } });
    expect(stage.Properties.AccessLogSettings.DestinationArn).toEqual({ 'Fn::GetAtt': [logicalId(synth.stack.api.accessLogs), 'Arn'] });
    const fields = JSON.parse(stage.Properties.AccessLogSettings.Format);
    expect(fields).toEqual(ACCESS_LOG_FIELDS);
    expect(fields).toMatchObject({
      requestId: '$context.requestId',
      routeKey: '$context.routeKey',
      status: '$context.status',
      integrationError: '$context.integrationErrorMessage',
      authorizerError: '$context.authorizer.error',
    });
  });

  it('lets API Gateway invoke each handler Lambda and the authorizer only from this API, and no other Lambda', () => {
    const permissions = Object.values(synth.template.findResources('AWS::Lambda::Permission')).filter((p) => p.Properties.Principal === 'apigateway.amazonaws.com');
    for (const permission of permissions) expect(JSON.stringify(permission.Properties.SourceArn)).toContain(logicalId(synth.stack.api.api));
    const invoked = new Set(permissions.map((p) => p.Properties.FunctionName['Fn::GetAtt'][0]));
    expect([...invoked].sort()).toEqual(LAMBDA_NAMES.filter((name) => name !== 'sweeper').map(fnId).sort());
  });

  it('answers CORS like NVCF: any origin, the route table’s methods, NVCF’s request headers, its response headers exposed, no credentials', () => {
    const api = Object.values(synth.template.findResources('AWS::ApiGatewayV2::Api'))[0]!;
    expect(api.Properties.CorsConfiguration).toEqual({
      AllowOrigins: ['*'],
      AllowMethods: [...new Set(ROUTES.map((route) => route.method))].sort(),
      AllowHeaders: ['Authorization', 'Content-Type', 'Accept', 'NVCF-POLL-SECONDS', 'NVCF-INPUT-ASSET-REFERENCES', '*'],
      ExposeHeaders: ['NVCF-REQID', 'NVCF-STATUS', 'NVCF-PERCENT-COMPLETE', 'Location'],
      MaxAge: 3600,
    });
  });

  it('leaves preflight OPTIONS to API Gateway: no OPTIONS or ANY route, and no authorizer on $default that would send it there', () => {
    const routeKeys = Object.values(synth.template.findResources('AWS::ApiGatewayV2::Route')).map((r) => r.Properties.RouteKey as string);
    expect(routeKeys.filter((key) => /^(OPTIONS|ANY) /.test(key))).toEqual([]);
  });

  it('sends requests no route serves to the $default route: the gpus Lambda, without the authorizer (problem+json 404/405, not a misleading 401)', () => {
    const template = synth.template.toJSON();
    const [route, ...others] = Object.values<{ Type: string; Properties: { RouteKey: string; AuthorizationType?: string; Target: { 'Fn::Join': [string, [string, { Ref: string }]] } } }>(
      template.Resources,
    ).filter((r) => r.Type === 'AWS::ApiGatewayV2::Route' && r.Properties.RouteKey === '$default');
    expect(others).toEqual([]);
    expect(route!.Properties.AuthorizationType ?? 'NONE').toBe('NONE');
    const integration = template.Resources[route!.Properties.Target['Fn::Join'][1][1].Ref];
    expect(integration.Properties).toMatchObject({ IntegrationType: 'AWS_PROXY', PayloadFormatVersion: '2.0', IntegrationUri: { 'Fn::GetAtt': [fnId('gpus'), 'Arn'] } });
  });
});

describe('monitoring', () => {
  const alarms = () => Object.values(synth.template.findResources('AWS::CloudWatch::Alarm')).map((a) => a.Properties);

  it('alarms on API 5xx, every Lambda’s errors and throttles, dead letters and old messages', () => {
    expect(alarms().map((a) => a.AlarmName).sort()).toEqual(
      [
        'Nvcf-api-5xx',
        'Nvcf-dead-letter-messages',
        'Nvcf-oldest-message-age',
        ...LAMBDA_NAMES.flatMap((name) => [`Nvcf-lambda-${name}-errors`, `Nvcf-lambda-${name}-throttles`]),
      ].sort(),
    );
    for (const alarm of alarms()) expect(alarm.AlarmDescription.length).toBeGreaterThan(40);
  });

  it('says what a failing sweeper leaves behind, since it has no callers to see errors', () => {
    expect(alarms().find((a) => a.AlarmName === 'Nvcf-lambda-sweeper-errors')!.AlarmDescription).toMatch(/unused queues stay and dead-lettered invocations stay pending/);
  });

  it('graphs the sweeper’s errors and throttles beside the API Lambdas’', () => {
    const body = JSON.stringify(Object.values(synth.template.findResources('AWS::CloudWatch::Dashboard'))[0]!.Properties.DashboardBody);
    expect(body).toContain(`\\"label\\":\\"sweeper\\"`);
    expect(body).toContain(fnId('sweeper'));
  });

  it('watches the agent’s DeadLetterMessages (> 0) and OldestMessageAgeSeconds metrics in the NVCF namespace', () => {
    expect(alarms().find((a) => a.AlarmName === 'Nvcf-dead-letter-messages')).toMatchObject({
      Namespace: 'NVCF',
      MetricName: 'DeadLetterMessages',
      Threshold: 0,
      ComparisonOperator: 'GreaterThanThreshold',
    });
    expect(alarms().find((a) => a.AlarmName === 'Nvcf-oldest-message-age')).toMatchObject({ Namespace: 'NVCF', MetricName: 'OldestMessageAgeSeconds', Threshold: 900 });
    expect(alarms().find((a) => a.AlarmName === 'Nvcf-api-5xx')).toMatchObject({ Namespace: 'AWS/ApiGateway', MetricName: '5xx' });
  });

  it('draws a dashboard with API, Lambda and queue health', () => {
    synth.template.resourceCountIs('AWS::CloudWatch::Dashboard', 1);
    const body = JSON.stringify(Object.values(synth.template.findResources('AWS::CloudWatch::Dashboard'))[0]!.Properties.DashboardBody);
    for (const title of ['API requests', 'API errors', 'API latency (ms)', 'Lambda errors', 'Lambda throttles', 'Lambda duration p99 (ms)', 'Dead-letter messages', 'Oldest queued message (s)']) {
      expect(body).toContain(title);
    }
  });

  it('sends alarms nowhere by default', () => {
    synth.template.resourceCountIs('AWS::SNS::Topic', 0);
    for (const alarm of alarms()) expect(alarm.AlarmActions).toBeUndefined();
  });

  it('mails every alarm through an encrypted, TLS-only topic when alarmEmail is set', () => {
    withStack({ gpuCluster: false, alarmEmail: 'ops@example.com' }, ({ template, stack }) => {
      const topicId = logicalId(stack.monitoring.alarmTopic!);
      template.hasResourceProperties('AWS::SNS::Topic', { KmsMasterKeyId: Match.anyValue() });
      template.hasResourceProperties('AWS::SNS::Subscription', { Protocol: 'email', Endpoint: 'ops@example.com' });
      template.hasResourceProperties('AWS::SNS::TopicPolicy', {
        PolicyDocument: { Statement: Match.arrayWith([Match.objectLike({ Effect: 'Deny', Condition: { Bool: { 'aws:SecureTransport': 'false' } } })]) },
      });
      template.hasResourceProperties('AWS::KMS::Key', {
        KeyPolicy: { Statement: Match.arrayWith([Match.objectLike({ Principal: { Service: 'cloudwatch.amazonaws.com' } })]) },
      });
      for (const alarm of Object.values(template.findResources('AWS::CloudWatch::Alarm'))) expect(alarm.Properties.AlarmActions).toEqual([{ Ref: topicId }]);
    });
  });
});

describe('outputs', () => {
  it('exports the API URL, every table, the bucket and the dashboard, and no cluster outputs', () => {
    const outputs = synth.template.toJSON().Outputs;
    expect(Object.keys(outputs).sort()).toEqual(
      ['ApiUrl', 'BucketName', 'DashboardName', ...Object.values(TABLES).map((t) => `${t.id}TableName`)].sort(),
    );
    for (const table of Object.keys(TABLES) as TableName[]) {
      expect(outputs[`${TABLES[table].id}TableName`].Value).toEqual({ Ref: logicalId(synth.stack.data.tables[table]) });
    }
  });
});
