/**
 * IAM statements shared by the Lambdas and the gpu-agent roles, so that every
 * grant on queues, bucket prefixes and metrics is written once.
 */
import { ArnFormat, Stack, Validations } from 'aws-cdk-lib';
import * as iam from 'aws-cdk-lib/aws-iam';
import type * as kms from 'aws-cdk-lib/aws-kms';
import type * as s3 from 'aws-cdk-lib/aws-s3';
import type { IConstruct } from 'constructs';
// cdk-nag's own flattening (not exported from its index), pinned with cdk-nag's version.
import { flattenCfnReference } from 'cdk-nag/lib/utils/flatten-cfn-reference.js';
import { DEFAULT_QUEUE_PREFIX, METRICS_NAMESPACE, REGISTRY_CREDENTIAL_ENCRYPTION_CONTEXT_KEYS, S3_PREFIX, SECRETS_ENCRYPTION_CONTEXT_KEYS, SECRETS_KMS_ACTIONS } from '../core/names';

export type QueueAction =
  | 'sqs:CreateQueue'
  | 'sqs:DeleteQueue'
  | 'sqs:GetQueueAttributes'
  | 'sqs:TagQueue'
  | 'sqs:ListQueueTags'
  | 'sqs:SendMessage'
  | 'sqs:ReceiveMessage'
  | 'sqs:DeleteMessage'
  | 'sqs:ChangeMessageVisibility';

/** ARN pattern of every per-version queue (and dead-letter queue) of this account and region. */
export function queueArnPattern(scope: IConstruct): string {
  return Stack.of(scope).formatArn({ service: 'sqs', resource: `${DEFAULT_QUEUE_PREFIX}*`, arnFormat: ArnFormat.NO_RESOURCE_NAME });
}

export function queueStatement(actions: QueueAction[], scope: IConstruct): iam.PolicyStatement {
  return new iam.PolicyStatement({ sid: 'VersionQueues', actions, resources: [queueArnPattern(scope)] });
}

export type BucketPrefix = keyof typeof S3_PREFIX;

/** An S3 object statement limited to the given key prefixes of the platform bucket. */
export function objectStatement(bucket: s3.IBucket, actions: ('s3:GetObject' | 's3:PutObject' | 's3:DeleteObject')[], prefixes: BucketPrefix[]): iam.PolicyStatement {
  return new iam.PolicyStatement({ actions, resources: prefixes.map((prefix) => bucket.arnForObjects(`${S3_PREFIX[prefix]}*`)) });
}

/**
 * s3:ListBucket on the platform bucket for keys under the given prefixes only. S3 answers a
 * GetObject or HeadObject of a missing key with 404 only to callers that may list it; 403 otherwise.
 */
export function listBucketStatement(bucket: s3.IBucket, prefixes: BucketPrefix[]): iam.PolicyStatement {
  return new iam.PolicyStatement({
    actions: ['s3:ListBucket'],
    resources: [bucket.bucketArn],
    conditions: { StringLike: { 's3:prefix': prefixes.map((prefix) => `${S3_PREFIX[prefix]}*`) } },
  });
}

/**
 * Use of the functions' secrets key, as core/secrets.ts calls it: `seal` (a data key, which
 * cannot open anything) for whoever writes secrets, `open` (Decrypt) for whoever delivers
 * them. Only with the platform's encryption context, so the key serves nothing else.
 */
export function secretsKeyStatement(key: kms.IKey, use: keyof typeof SECRETS_KMS_ACTIONS): iam.PolicyStatement {
  return new iam.PolicyStatement({
    sid: use === 'seal' ? 'SealFunctionSecrets' : 'OpenFunctionSecrets',
    actions: [...SECRETS_KMS_ACTIONS[use]],
    resources: [key.keyArn],
    conditions: {
      'ForAllValues:StringEquals': { 'kms:EncryptionContextKeys': [...SECRETS_ENCRYPTION_CONTEXT_KEYS] },
      Null: { 'kms:EncryptionContextKeys': 'false' },
    },
  });
}

/**
 * Use of the same key for registry credentials (core/registry-credentials.ts): `seal` for the
 * functions Lambda that stores them, `open` for the agent identities that pull with them. Only
 * under the credentials' own context {account, registryCredentialId}, so neither this grant nor
 * the secrets one opens what the other sealed.
 */
export function registryCredentialsKeyStatement(key: kms.IKey, use: keyof typeof SECRETS_KMS_ACTIONS): iam.PolicyStatement {
  return new iam.PolicyStatement({
    sid: use === 'seal' ? 'SealRegistryCredentials' : 'OpenRegistryCredentials',
    actions: [...SECRETS_KMS_ACTIONS[use]],
    resources: [key.keyArn],
    conditions: {
      'ForAllValues:StringEquals': { 'kms:EncryptionContextKeys': [...REGISTRY_CREDENTIAL_ENCRYPTION_CONTEXT_KEYS] },
      Null: { 'kms:EncryptionContextKeys': 'false' },
    },
  });
}

/** cloudwatch:PutMetricData has no resource-level permissions; the namespace condition is the scope. */
export function putMetricDataStatement(): iam.PolicyStatement {
  return new iam.PolicyStatement({
    sid: 'PublishNvcfMetrics',
    actions: ['cloudwatch:PutMetricData'],
    resources: ['*'],
    conditions: { StringEquals: { 'cloudwatch:namespace': METRICS_NAMESPACE } },
  });
}

/** The cdk-nag pack whose findings are acknowledged; CDK namespaces acknowledgements by plugin. */
const NAG_PACK = 'AwsSolutions';

/**
 * Records a cdk-nag acknowledgement on a construct; every one carries the
 * reason a reviewer needs to accept it.
 */
export function acknowledge(scope: IConstruct, id: string, reason: string): void {
  Validations.of(scope).acknowledge({ id: `${NAG_PACK}::${id}`, reason });
}

/**
 * Acknowledges AwsSolutions-IAM5 for one wildcard resource of a policy. The
 * finding id is the resource flattened exactly as cdk-nag flattens it, so the
 * acknowledgement cannot drift from the grant it covers.
 */
export function acknowledgeWildcard(policy: IConstruct, resource: string, reason: string): void {
  acknowledge(policy, `AwsSolutions-IAM5[Resource::${flattenCfnReference(Stack.of(policy).resolve(resource))}]`, reason);
}
