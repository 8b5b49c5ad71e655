/**
 * The Lambdas behind the HTTP API, one per resource group of core/routes.ts
 * plus the authorizer, and the sweeper that EventBridge runs every minute;
 * each with its own role holding only what it needs. The grants below are the
 * platform's access model: read them as a table.
 */
import { Duration, RemovalPolicy } from 'aws-cdk-lib';
import * as events from 'aws-cdk-lib/aws-events';
import * as targets from 'aws-cdk-lib/aws-events-targets';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import { LogLevel, NodejsFunction, OutputFormat } from 'aws-cdk-lib/aws-lambda-nodejs';
import * as logs from 'aws-cdk-lib/aws-logs';
import { Construct } from 'constructs';
import { fileURLToPath } from 'node:url';
import { ENV, METRICS_NAMESPACE, S3_PREFIX, SERVICE_NAME } from '../core/names';
import { API_HANDLERS, type ApiHandlerName } from '../core/routes';
import type { TableName } from '../core/tables';
import type { ResolvedConfig } from './config';
import { gpuOffers } from './config';
import type { DataStore } from './data-store';
import type { FunctionLogs } from './function-logs';
import type { GpuCluster } from './gpu-cluster';
import { acknowledge, acknowledgeWildcard, listBucketStatement, objectStatement, queueArnPattern, queueStatement, registryCredentialsKeyStatement, secretsKeyStatement, type BucketPrefix } from './iam';

export type LambdaName = ApiHandlerName | 'authorizer' | 'sweeper';

/** Every Lambda of the stack: the route handlers, the authorizer, and the scheduled sweeper. */
export const LAMBDA_NAMES: readonly LambdaName[] = [...API_HANDLERS, 'authorizer', 'sweeper'];

/** How often EventBridge runs the sweeper. */
export const SWEEP_INTERVAL = Duration.minutes(1);

/** Root of the package: entries are `lambdas/<name>.ts` below it. */
export const PROJECT_ROOT = fileURLToPath(new URL('..', import.meta.url));

const DESCRIPTIONS: Record<LambdaName, string> = {
  functions: 'NVCF API: functions, versions and metadata',
  deployments: 'NVCF API: deployments (creates version queues, sizes GPU nodegroups)',
  assets: 'NVCF API: assets and their presigned uploads',
  queues: 'NVCF API: queue depth and queue position',
  gpus: 'NVCF API: supportedGpus and clusterGroups',
  logs: 'NVCF API: function logs (reads the function log group)',
  keys: 'NVCF API: API keys of the caller account (create, list, revoke)',
  authorizer: 'NVCF API: resolves Bearer API keys to an account and scopes',
  sweeper: 'NVCF: errors dead-lettered invocations, deletes unused queues, sizes GPU nodegroups (every minute)',
};

const TIMEOUTS: Record<LambdaName, Duration> = {
  functions: Duration.seconds(10),
  deployments: Duration.seconds(20),
  assets: Duration.seconds(10),
  queues: Duration.seconds(10),
  gpus: Duration.seconds(10),
  // Up to 1000 lines may take several FilterLogEvents pages.
  logs: Duration.seconds(20),
  keys: Duration.seconds(10),
  authorizer: Duration.seconds(5),
  // A pass ends before the next one starts.
  sweeper: Duration.seconds(55),
};

/**
 * One Lambda: ESM bundle built by the local esbuild, arm64, its own log
 * group, and a role that may only write to that log group until granted more.
 *
 * @example
 * const fn = createApiLambda(this, 'assets', { config, environment: { NVCF_BUCKET: bucket.bucketName } });
 */
export function createApiLambda(
  scope: Construct,
  name: LambdaName,
  { config, environment }: { config: ResolvedConfig; environment: Record<string, string> },
): NodejsFunction {
  const logGroup = new logs.LogGroup(scope, `${name}-logs`, {
    retention: config.logRetentionDays as logs.RetentionDays,
    removalPolicy: RemovalPolicy.DESTROY,
  });
  // A role per function limited to its own log group, instead of the broad AWSLambdaBasicExecutionRole.
  const role = new iam.Role(scope, `${name}-role`, {
    assumedBy: new iam.ServicePrincipal('lambda.amazonaws.com'),
    description: `${DESCRIPTIONS[name]} (least privilege)`,
  });
  logGroup.grantWrite(role);
  return new NodejsFunction(scope, name, {
    entry: `${PROJECT_ROOT}lambdas/${name}.ts`,
    projectRoot: PROJECT_ROOT,
    depsLockFilePath: `${PROJECT_ROOT}package-lock.json`,
    handler: 'handler',
    description: DESCRIPTIONS[name],
    runtime: lambda.Runtime.NODEJS_24_X,
    architecture: lambda.Architecture.ARM_64,
    memorySize: config.lambdaMemoryMb,
    timeout: TIMEOUTS[name],
    role,
    logGroup,
    environment: {
      POWERTOOLS_SERVICE_NAME: SERVICE_NAME,
      POWERTOOLS_LOG_LEVEL: config.logLevel,
      POWERTOOLS_METRICS_NAMESPACE: METRICS_NAMESPACE,
      NODE_OPTIONS: '--enable-source-maps',
      ...environment,
    },
    bundling: {
      format: OutputFormat.ESM,
      target: 'node24',
      mainFields: ['module', 'main'],
      // Some CommonJS dependencies call require(); ESM output has none unless we make one.
      banner: "import { createRequire } from 'node:module'; const require = createRequire(import.meta.url);",
      bundleAwsSDK: config.bundleAwsSdk,
      minify: true,
      sourceMap: true,
      sourcesContent: false,
      forceDockerBundling: false,
      // esbuild's per-bundle size listing would bury what synth says; its warnings and errors still show.
      logLevel: LogLevel.WARNING,
    },
  });
}

export interface ApiFunctionsProps {
  readonly config: ResolvedConfig;
  readonly data: DataStore;
  /** The GPU cluster, when the stack has one. */
  readonly cluster?: GpuCluster;
  /** The function log group and its agent, with the cluster. */
  readonly functionLogs?: FunctionLogs;
}

export class ApiFunctions extends Construct {
  readonly functions: Record<LambdaName, NodejsFunction>;
  /** The EventBridge rule that runs the sweeper every SWEEP_INTERVAL. */
  readonly sweepSchedule: events.Rule;

  constructor(scope: Construct, id: string, { config, data, cluster, functionLogs }: ApiFunctionsProps) {
    super(scope, id);

    const environment: Record<string, string> = {
      ...data.environment(),
      ...(cluster ? { [ENV.clusterName]: cluster.cluster.clusterName } : { [ENV.gpus]: JSON.stringify(gpuOffers(config.gpus)) }),
    };

    this.functions = Object.fromEntries(LAMBDA_NAMES.map((name) => [name, createApiLambda(this, name, { config, environment })])) as Record<LambdaName, NodejsFunction>;
    // A failed or late pass is not retried: the next one, a minute later, does the same work.
    this.functions.sweeper.configureAsyncInvoke({ retryAttempts: 0, maxEventAge: SWEEP_INTERVAL });
    this.sweepSchedule = new events.Rule(this, 'SweepSchedule', {
      description: 'Runs the NVCF sweeper',
      schedule: events.Schedule.rate(SWEEP_INTERVAL),
      targets: [new targets.LambdaFunction(this.functions.sweeper)],
    });
    this.grant(data, cluster);
    this.grantLogs(data, functionLogs);
  }

  /**
   * The logs Lambda checks the caller owns the version (Functions table) and
   * reads the function log group; without a cluster there is no group and it
   * answers no lines.
   */
  private grantLogs(data: DataStore, functionLogs: FunctionLogs | undefined): void {
    const role = this.functions.logs.role!;
    // The table alone: a grant() would add its indexes, which GetItem never reads.
    role.addToPrincipalPolicy(new iam.PolicyStatement({ actions: ['dynamodb:GetItem'], resources: [data.tables.functions.tableArn] }));
    if (!functionLogs) return;
    this.functions.logs.addEnvironment(ENV.functionLogGroup, functionLogs.logGroup.logGroupName);
    role.addToPrincipalPolicy(functionLogs.readStatement());
    acknowledgeWildcard(
      role.node.findChild('DefaultPolicy'),
      functionLogs.logGroup.logGroupArn,
      'FilterLogEvents on the one function log group; its ARN ends in :* as CloudWatch Logs writes group ARNs, and the streams read are chosen by prefix per version.',
    );
  }

  /** Least privilege per Lambda; the tests pin each line. */
  private grant(data: DataStore, cluster: GpuCluster | undefined): void {
    const { functions: fns } = this;
    const { tables, bucket, queueKey } = data;
    const role = (name: LambdaName) => fns[name].role!;

    tables.apiKeys.grant(role('authorizer'), 'dynamodb:GetItem');

    tables.functions.grantReadWriteData(role('functions'));
    tables.instances.grantReadData(role('functions'));
    // Seals secrets on create and on PUT; it cannot open them (no kms:Decrypt).
    role('functions').addToPrincipalPolicy(secretsKeyStatement(data.secretsKey, 'seal'));
    // Registry credentials (R1–R6): stored per account, sealed with the same key under their own context; never opened here.
    tables.registryCredentials.grant(role('functions'), 'dynamodb:Query', 'dynamodb:GetItem', 'dynamodb:PutItem', 'dynamodb:UpdateItem', 'dynamodb:DeleteItem');
    // Authorizations (Z1–Z10): the owner's sets; F3/F6 scan for the functions shared with the caller.
    tables.authorizations.grant(role('functions'), 'dynamodb:Query', 'dynamodb:Scan', 'dynamodb:PutItem', 'dynamodb:UpdateItem', 'dynamodb:DeleteItem');

    // K1–K4: the only writer of ApiKeys besides the admin CLI; lists scan (the table is keyed by hash alone).
    tables.apiKeys.grant(role('keys'), 'dynamodb:GetItem', 'dynamodb:PutItem', 'dynamodb:UpdateItem', 'dynamodb:Scan');
    role('functions').addToPrincipalPolicy(registryCredentialsKeyStatement(data.secretsKey, 'seal'));

    tables.functions.grantReadWriteData(role('deployments'));
    // Undeploy errors the invocations still waiting in the version's queues (PutItem: a sync call not stored yet).
    tables.invocations.grant(role('deployments'), 'dynamodb:UpdateItem', 'dynamodb:PutItem');
    // Deploy checks the owner holds a credential for NGC models and resources (never opens one).
    tables.registryCredentials.grant(role('deployments'), 'dynamodb:Query');
    // Deploy creates (and tags) a deployment's queues; undeploy tags them retired and drains them. The sweeper deletes them.
    role('deployments').addToPrincipalPolicy(
      queueStatement(['sqs:CreateQueue', 'sqs:GetQueueAttributes', 'sqs:TagQueue', 'sqs:ReceiveMessage', 'sqs:DeleteMessage'], this),
    );
    // Reading an encrypted message while draining needs the key.
    queueKey?.grantDecrypt(role('deployments'));

    tables.assets.grantReadWriteData(role('assets'));
    // Quotas (core/quotas.ts): each Lambda that creates what a quota counts reads the account's overrides;
    // assetBytes sums the account's asset objects with a listing of their prefix.
    for (const name of ['functions', 'deployments', 'assets'] as const) tables.quotas.grant(role(name), 'dynamodb:GetItem');
    role('assets').addToPrincipalPolicy(listBucketStatement(bucket, ['assets']));
    // U1 (usage, functions Lambda): the account's concurrent invocations and asset bytes besides what it owns.
    tables.counters.grant(role('functions'), 'dynamodb:GetItem');
    role('functions').addToPrincipalPolicy(listBucketStatement(bucket, ['assets']));
    role('assets').addToPrincipalPolicy(objectStatement(bucket, ['s3:PutObject', 's3:DeleteObject'], ['assets']));

    tables.functions.grantReadData(role('queues'));
    tables.invocations.grantReadData(role('queues'));
    role('queues').addToPrincipalPolicy(queueStatement(['sqs:GetQueueAttributes'], this));

    // The sweeper scans the deployed versions, errors dead-lettered or abandoned invocations,
    // and retires (tag), drains and deletes the queues no deployment refers to.
    tables.functions.grant(role('sweeper'), 'dynamodb:Scan');
    tables.invocations.grant(role('sweeper'), 'dynamodb:UpdateItem', 'dynamodb:PutItem');
    role('sweeper').addToPrincipalPolicy(new iam.PolicyStatement({ sid: 'FindPlatformQueues', actions: ['sqs:ListQueues'], resources: ['*'] }));
    role('sweeper').addToPrincipalPolicy(
      queueStatement(['sqs:GetQueueAttributes', 'sqs:ListQueueTags', 'sqs:TagQueue', 'sqs:ReceiveMessage', 'sqs:DeleteMessage', 'sqs:DeleteQueue'], this),
    );
    queueKey?.grantDecrypt(role('sweeper'));

    if (cluster) {
      for (const name of ['deployments', 'sweeper'] as const) {
        role(name).addToPrincipalPolicy(cluster.listNodegroupsStatement());
        role(name).addToPrincipalPolicy(cluster.describeNodegroupsStatement());
        role(name).addToPrincipalPolicy(cluster.updateGpuNodegroupsStatement());
      }
      role('gpus').addToPrincipalPolicy(cluster.describeClusterStatement());
      role('gpus').addToPrincipalPolicy(cluster.listNodegroupsStatement());
      role('gpus').addToPrincipalPolicy(cluster.describeNodegroupsStatement());
    }

    this.acknowledgeWildcards(data, cluster);
  }

  private acknowledgeWildcards(data: DataStore, cluster: GpuCluster | undefined): void {
    const ack = (name: LambdaName, resource: string, reason: string) =>
      acknowledgeWildcard(this.functions[name].role!.node.findChild('DefaultPolicy'), resource, reason);

    const index = (table: TableName) => `${data.tables[table].tableArn}/index/*`;
    const indexReason = 'Grants the byAccount global secondary index of this one table; index ARNs can only be granted with the /index/* suffix.';
    for (const name of ['functions', 'deployments', 'queues', 'sweeper'] as const) ack(name, index('functions'), indexReason);
    ack('assets', index('assets'), indexReason);
    // Only Q3 queries it; the writers' table grants include the index ARN whether they use it or not.
    for (const name of ['deployments', 'queues', 'sweeper'] as const) {
      ack(name, index('invocations'), 'Grants the byQueue global secondary index of the Invocations table (queue positions); index ARNs can only be granted with the /index/* suffix.');
    }

    const queueReason =
      'Queues are created and deleted at run time, a pair per deployment of a function version, so their names are unknown at deploy time; the grant is limited to the platform queue prefix in this account and region.';
    for (const name of ['deployments', 'queues', 'sweeper'] as const) ack(name, queueArnPattern(this), queueReason);
    acknowledge(
      this.functions.sweeper.role!.node.findChild('DefaultPolicy'),
      'AwsSolutions-IAM5[Resource::*]',
      'sqs:ListQueues supports no resource-level permissions; the sweeper lists with the platform queue name prefix and every other SQS action it holds is limited to that prefix.',
    );

    const objects = (prefix: BucketPrefix) => data.bucket.arnForObjects(`${S3_PREFIX[prefix]}*`);
    const objectReason = 'Object keys embed request and asset ids generated at run time; the grant is limited to one key prefix of the platform bucket.';
    ack('assets', objects('assets'), objectReason);

    if (cluster) {
      const reason = 'Nodegroups of this cluster only; DescribeNodegroup needs nodegroup ARNs, whose name and id suffix EKS generates.';
      for (const name of ['deployments', 'sweeper', 'gpus'] as const) ack(name, cluster.nodegroupArnPattern, reason);
    }
  }
}
