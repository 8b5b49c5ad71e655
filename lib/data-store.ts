/**
 * The platform's state: the DynamoDB tables described in core/tables.ts, the
 * one S3 bucket, and the encryption setting of the per-version queues the
 * deployments Lambda creates at run time.
 */
import { Duration, RemovalPolicy, Stack } from 'aws-cdk-lib';
import * as dynamodb from 'aws-cdk-lib/aws-dynamodb';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as kms from 'aws-cdk-lib/aws-kms';
import * as s3 from 'aws-cdk-lib/aws-s3';
import { Construct } from 'constructs';
import { DEFAULT_QUEUE_PREFIX, ENV, S3_PREFIX } from '../core/names';
import { TABLES, type KeyAttribute, type TableDefinition, type TableName } from '../core/tables';
import type { ResolvedConfig } from './config';
import { acknowledge } from './iam';

export interface DataStoreProps {
  readonly config: ResolvedConfig;
}

function attribute(key: KeyAttribute): dynamodb.Attribute {
  return { name: key.name, type: key.type === 'S' ? dynamodb.AttributeType.STRING : dynamodb.AttributeType.NUMBER };
}

export class DataStore extends Construct {
  readonly tables: Record<TableName, dynamodb.Table>;
  readonly bucket: s3.Bucket;
  /** Receives the platform bucket's server access logs, and the invocation plane's ALB and CloudFront logs. */
  readonly accessLogsBucket: s3.Bucket;
  /** Customer managed key of the version queues; undefined means SQS-managed SSE. */
  readonly queueKey?: kms.Key;
  /** Customer managed key that wraps the data keys of functions' secrets (core/secrets.ts). */
  readonly secretsKey: kms.Key;
  private readonly maxReceiveCount: number;
  private readonly quotas: ResolvedConfig['quotas'];

  constructor(scope: Construct, id: string, { config }: DataStoreProps) {
    super(scope, id);
    const retain = config.dataRemovalPolicy === RemovalPolicy.RETAIN;
    this.maxReceiveCount = config.maxReceiveCount;
    this.quotas = config.quotas;

    this.tables = Object.fromEntries(
      (Object.entries(TABLES) as [TableName, TableDefinition][]).map(([name, definition]) => {
        const table = new dynamodb.Table(this, `${definition.id}Table`, {
          partitionKey: attribute(definition.partitionKey),
          sortKey: definition.sortKey ? attribute(definition.sortKey) : undefined,
          billingMode: dynamodb.BillingMode.PAY_PER_REQUEST,
          pointInTimeRecoverySpecification: { pointInTimeRecoveryEnabled: true },
          // AWS managed key: encrypted at rest with KMS and auditable in CloudTrail, without a
          // key policy to maintain; every reader is already scoped by its IAM policy.
          encryption: dynamodb.TableEncryption.AWS_MANAGED,
          timeToLiveAttribute: definition.ttlAttribute,
          removalPolicy: config.dataRemovalPolicy,
          deletionProtection: retain,
        });
        for (const index of definition.globalIndexes) {
          table.addGlobalSecondaryIndex({
            indexName: index.indexName,
            partitionKey: attribute(index.partitionKey),
            sortKey: index.sortKey ? attribute(index.sortKey) : undefined,
            projectionType: dynamodb.ProjectionType.ALL,
          });
        }
        return [name, table];
      }),
    ) as Record<TableName, dynamodb.Table>;

    const accessLogs = (this.accessLogsBucket = new s3.Bucket(this, 'AccessLogsBucket', {
      blockPublicAccess: s3.BlockPublicAccess.BLOCK_ALL,
      encryption: s3.BucketEncryption.S3_MANAGED,
      enforceSSL: true,
      objectOwnership: s3.ObjectOwnership.BUCKET_OWNER_PREFERRED,
      lifecycleRules: [{ id: 'expire-access-logs', expiration: Duration.days(config.logRetentionDays) }],
      removalPolicy: config.dataRemovalPolicy,
      autoDeleteObjects: !retain,
    }));
    acknowledge(accessLogs, 'AwsSolutions-S1', 'This bucket receives the server access logs of the platform bucket; logging it into itself would loop.');

    const expiring = (prefix: keyof typeof S3_PREFIX): s3.LifecycleRule => ({
      id: `expire-${prefix}`,
      prefix: S3_PREFIX[prefix],
      expiration: Duration.days(config.objectExpirationDays),
    });
    this.bucket = new s3.Bucket(this, 'Bucket', {
      blockPublicAccess: s3.BlockPublicAccess.BLOCK_ALL,
      // S3-managed keys: browsers upload with presigned POST/PUT, which with SSE-KMS would
      // also need kms:GenerateDataKey for every signer and cost a KMS call per object.
      encryption: s3.BucketEncryption.S3_MANAGED,
      enforceSSL: true,
      versioned: false,
      objectOwnership: s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
      serverAccessLogsBucket: accessLogs,
      serverAccessLogsPrefix: 'platform-bucket/',
      lifecycleRules: [
        expiring('assets'),
        expiring('inputs'),
        expiring('outputs'),
        { id: 'abort-incomplete-multipart-uploads', abortIncompleteMultipartUploadAfter: Duration.days(1) },
      ],
      cors: [
        {
          allowedMethods: [s3.HttpMethods.POST, s3.HttpMethods.PUT],
          allowedOrigins: config.corsAllowedOrigins,
          allowedHeaders: ['*'],
          exposedHeaders: ['ETag'],
          maxAge: 3000,
        },
      ],
      removalPolicy: config.dataRemovalPolicy,
      autoDeleteObjects: !retain,
    });
    // S3 delivers the platform bucket's access logs under a bucket policy (AWS's recommendation)
    // rather than the legacy LogDeliveryWrite ACL aws-cdk-lib grants without its
    // serverAccessLogsUseBucketPolicy flag (cfn-lint W3045). Ownership stays BucketOwnerPreferred:
    // CloudFront's standard logs still arrive with an ACL.
    accessLogs.addToResourcePolicy(
      new iam.PolicyStatement({
        principals: [new iam.ServicePrincipal('logging.s3.amazonaws.com')],
        actions: ['s3:PutObject'],
        resources: [accessLogs.arnForObjects('platform-bucket/*')],
        conditions: { ArnLike: { 'aws:SourceArn': this.bucket.bucketArn }, StringEquals: { 'aws:SourceAccount': Stack.of(this).account } },
      }),
    );
    (accessLogs.node.defaultChild as s3.CfnBucket).addPropertyDeletionOverride('AccessControl');

    // The Functions table's own encryption is AWS managed; secrets are sealed on top with this key,
    // so that reading the table (the API, the controller) is not reading them.
    this.secretsKey = new kms.Key(this, 'SecretsKey', {
      description: "Wraps the data keys of NVCF functions' secrets; only the gpu-agent may decrypt",
      enableKeyRotation: true,
      removalPolicy: config.dataRemovalPolicy,
    });

    if (config.queueEncryption === 'kms') {
      this.queueKey = new kms.Key(this, 'QueueKey', {
        description: `Encrypts the ${DEFAULT_QUEUE_PREFIX}* invocation queues of this NVCF installation`,
        enableKeyRotation: true,
        removalPolicy: config.dataRemovalPolicy,
      });
    }
  }

  /** The environment through which runtime code finds the tables, bucket and queue settings. */
  environment(): Record<string, string> {
    const env: Record<string, string> = {
      [ENV.bucket]: this.bucket.bucketName,
      [ENV.queuePrefix]: DEFAULT_QUEUE_PREFIX,
      [ENV.queueKmsKeyId]: this.queueKey?.keyArn ?? '',
      [ENV.maxReceiveCount]: String(this.maxReceiveCount),
      [ENV.secretsKeyId]: this.secretsKey.keyArn,
      [ENV.quotas]: JSON.stringify(this.quotas),
    };
    for (const [name, table] of Object.entries(this.tables)) env[TABLES[name as TableName].envVar] = table.tableName;
    return env;
  }
}
