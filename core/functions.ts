/**
 * The Functions table: one item per function version. Every status change is
 * a conditional write, never read-then-write.
 */
import { randomUUID } from 'node:crypto';
import { ConditionalCheckFailedException } from '@aws-sdk/client-dynamodb';
import { DeleteCommand, GetCommand, PutCommand, QueryCommand, UpdateCommand, type QueryCommandInput, type UpdateCommandInput } from '@aws-sdk/lib-dynamodb';
import { conditionalWrite, dynamo } from './aws';
import { tableName } from './config';
import type { FunctionDefinition } from './function-schemas';
import type { DeploymentRecord, FunctionStatus, FunctionVersionRecord, HealthInfo } from './model';
import type { RateLimitRecord } from './rate-limits';
import { sealSecrets, type SealedSecrets, type SecretEntry } from './secrets';
import { BY_ACCOUNT_INDEX } from './tables';

async function queryAll<T = FunctionVersionRecord>(input: QueryCommandInput): Promise<T[]> {
  const items: T[] = [];
  let ExclusiveStartKey: Record<string, unknown> | undefined;
  do {
    const page = await dynamo().send(new QueryCommand({ ...input, ExclusiveStartKey }));
    items.push(...((page.Items ?? []) as T[]));
    ExclusiveStartKey = page.LastEvaluatedKey;
  } while (ExclusiveStartKey);
  return items;
}

/** Stores a new version; false when an item with these ids already exists. */
export async function putNewVersion(record: FunctionVersionRecord): Promise<boolean> {
  return conditionalWrite(() =>
    dynamo().send(
      new PutCommand({
        TableName: tableName('functions'),
        Item: record,
        ConditionExpression: 'attribute_not_exists(functionId) AND attribute_not_exists(versionId)',
      }),
    ),
  );
}

/** A version, whoever owns it (the agent's view). */
export async function getVersion(functionId: string, versionId: string): Promise<FunctionVersionRecord | undefined> {
  const { Item } = await dynamo().send(
    new GetCommand({ TableName: tableName('functions'), Key: { functionId, versionId }, ConsistentRead: true }),
  );
  return Item as FunctionVersionRecord | undefined;
}

/** A version as seen by an account: another account's version is indistinguishable from a missing one. */
export async function getOwnedVersion(accountId: string, functionId: string, versionId: string): Promise<FunctionVersionRecord | undefined> {
  const record = await getVersion(functionId, versionId);
  return record?.accountId === accountId ? record : undefined;
}

/** All versions of a function, whoever owns it (core/access.ts decides who sees them). */
export async function listFunctionVersions(functionId: string): Promise<FunctionVersionRecord[]> {
  return queryAll({
    TableName: tableName('functions'),
    KeyConditionExpression: 'functionId = :functionId',
    ExpressionAttributeValues: { ':functionId': functionId },
    ConsistentRead: true,
  });
}

/** All versions of a function visible to an account (empty when it owns none). */
export async function listOwnedVersions(accountId: string, functionId: string): Promise<FunctionVersionRecord[]> {
  return (await listFunctionVersions(functionId)).filter((item) => item.accountId === accountId);
}

/** Every version owned by an account, oldest first. */
export async function listAccountVersions(accountId: string): Promise<FunctionVersionRecord[]> {
  return queryAll({
    TableName: tableName('functions'),
    IndexName: BY_ACCOUNT_INDEX,
    KeyConditionExpression: 'accountId = :accountId',
    ExpressionAttributeValues: { ':accountId': accountId },
  });
}

export interface StatusChange {
  functionId: string;
  versionId: string;
  /** The change happens only while the version is in one of these statuses. */
  from: readonly FunctionStatus[];
  to: FunctionStatus;
  /** Further attributes to set in the same write (top-level names). */
  set?: Record<string, unknown>;
  /** Top-level attributes to remove in the same write. */
  remove?: string[];
}

/**
 * Moves a version from one of `from` to `to` in one conditional write.
 * Returns the updated record, or undefined when the version is missing or in
 * another status (the caller decides whether that is a conflict or a no-op).
 */
export async function changeStatus(change: StatusChange): Promise<FunctionVersionRecord | undefined> {
  const names: Record<string, string> = { '#status': 'status', '#updatedAt': 'updatedAt' };
  const values: Record<string, unknown> = { ':to': change.to, ':now': new Date().toISOString() };
  const sets = ['#status = :to', '#updatedAt = :now'];
  Object.entries(change.set ?? {}).forEach(([name, value], i) => {
    names[`#s${i}`] = name;
    values[`:s${i}`] = value;
    sets.push(`#s${i} = :s${i}`);
  });
  const removes = (change.remove ?? []).map((name, i) => {
    names[`#r${i}`] = name;
    return `#r${i}`;
  });
  const fromList = change.from.map((_, i) => `:from${i}`);
  change.from.forEach((status, i) => (values[`:from${i}`] = status));
  return updateVersionIf(change.functionId, change.versionId, {
    UpdateExpression: `SET ${sets.join(', ')}${removes.length ? ` REMOVE ${removes.join(', ')}` : ''}`,
    ConditionExpression: `attribute_exists(functionId) AND #status IN (${fromList.join(', ')})`,
    ExpressionAttributeNames: names,
    ExpressionAttributeValues: values,
  });
}

/** One conditional UpdateItem of a version: the updated record, or undefined when the condition failed. */
async function updateVersionIf(
  functionId: string,
  versionId: string,
  update: Required<Pick<UpdateCommandInput, 'UpdateExpression' | 'ConditionExpression' | 'ExpressionAttributeNames' | 'ExpressionAttributeValues'>>,
): Promise<FunctionVersionRecord | undefined> {
  try {
    const { Attributes } = await dynamo().send(new UpdateCommand({ TableName: tableName('functions'), Key: { functionId, versionId }, ...update, ReturnValues: 'ALL_NEW' }));
    return Attributes as FunctionVersionRecord;
  } catch (error) {
    if (error instanceof ConditionalCheckFailedException) return undefined;
    throw error;
  }
}

/**
 * Turns a deployed version to ERROR and appends `info` to its deployment's
 * healthInfo: only from one of `from`, and only while the deployment is the
 * one the caller saw (same createdAt), so that a failure seen in an old
 * deployment never marks a redeploy. Other deployment fields are left alone,
 * so a concurrent update (D3) is not undone. False when the condition failed.
 */
export async function reportVersionFailure(
  version: Pick<FunctionVersionRecord, 'functionId' | 'versionId'> & { deployment: Pick<DeploymentRecord, 'createdAt'> },
  info: HealthInfo,
  from: readonly FunctionStatus[],
): Promise<boolean> {
  const fromList = from.map((_, i) => `:from${i}`);
  const now = new Date().toISOString();
  return conditionalWrite(() =>
    dynamo().send(
      new UpdateCommand({
        TableName: tableName('functions'),
        Key: { functionId: version.functionId, versionId: version.versionId },
        UpdateExpression:
          'SET #status = :error, #updatedAt = :now, deployment.healthInfo = list_append(if_not_exists(deployment.healthInfo, :none), :info), deployment.updatedAt = :now',
        ConditionExpression: `#status IN (${fromList.join(', ')}) AND deployment.createdAt = :createdAt`,
        ExpressionAttributeNames: { '#status': 'status', '#updatedAt': 'updatedAt' },
        ExpressionAttributeValues: {
          ':error': 'ERROR',
          ':now': now,
          ':none': [],
          ':info': [info],
          ':createdAt': version.deployment.createdAt,
          ...Object.fromEntries(from.map((status, i) => [`:from${i}`, status])),
        },
      }),
    ),
  );
}

/**
 * Records what a starting instance's health check last answered on the
 * DEPLOYING version's deployment, replacing the previous report: only while
 * the deployment is the one the instance runs (same createdAt). False when
 * the condition failed (the version moved on, or was deployed again).
 */
export async function reportHealthProgress(
  version: Pick<FunctionVersionRecord, 'functionId' | 'versionId'> & { deployment: Pick<DeploymentRecord, 'createdAt'> },
  info: HealthInfo,
): Promise<boolean> {
  return conditionalWrite(() =>
    dynamo().send(
      new UpdateCommand({
        TableName: tableName('functions'),
        Key: { functionId: version.functionId, versionId: version.versionId },
        UpdateExpression: 'SET deployment.healthProgress = :info',
        ConditionExpression: '#status = :deploying AND deployment.createdAt = :createdAt',
        ExpressionAttributeNames: { '#status': 'status' },
        ExpressionAttributeValues: { ':info': info, ':deploying': 'DEPLOYING', ':createdAt': version.deployment.createdAt },
      }),
    ),
  );
}

/**
 * Stores a new INACTIVE version of `definition` owned by `accountId`: of a new
 * function, or of `functionId` (the caller checks that it owns that function).
 * One conditional put, so a failed request leaves nothing behind.
 */
export async function createVersion(accountId: string, definition: FunctionDefinition, functionId: string = randomUUID()): Promise<FunctionVersionRecord> {
  const now = new Date().toISOString();
  const versionId = randomUUID();
  const { secrets, ...rest } = definition;
  const record: FunctionVersionRecord = {
    ...rest,
    functionId,
    versionId,
    accountId,
    status: 'INACTIVE',
    createdAt: now,
    updatedAt: now,
    ...(secrets?.length ? { secrets: await sealSecrets(secrets, { accountId, functionId, versionId }) } : {}),
  };
  if (!(await putNewVersion(record))) throw new Error(`version id ${record.versionId} of function ${functionId} is taken`);
  return record;
}

/** Outcome of deleteInactiveVersion: `status` tells why a version that exists was kept. */
export type VersionDeletion = { deleted: true } | { deleted: false; status?: FunctionStatus };

/**
 * Deletes an account's version only while it is INACTIVE, in one conditional
 * delete, so a deploy racing the delete either wins (and the version stays) or loses.
 */
export async function deleteInactiveVersion(accountId: string, functionId: string, versionId: string): Promise<VersionDeletion> {
  // A refused delete is retried while the version reads INACTIVE: it was deployed and undeployed in between.
  for (let attempt = 0; attempt < 3; attempt += 1) {
    try {
      await dynamo().send(
        new DeleteCommand({
          TableName: tableName('functions'),
          Key: { functionId, versionId },
          ConditionExpression: 'attribute_exists(functionId) AND accountId = :accountId AND #status = :inactive',
          ExpressionAttributeNames: { '#status': 'status' },
          ExpressionAttributeValues: { ':accountId': accountId, ':inactive': 'INACTIVE' satisfies FunctionStatus },
        }),
      );
      return { deleted: true };
    } catch (error) {
      if (!(error instanceof ConditionalCheckFailedException)) throw error;
      const status = (await getOwnedVersion(accountId, functionId, versionId))?.status;
      if (status !== 'INACTIVE') return { deleted: false, status };
    }
  }
  return { deleted: false, status: 'INACTIVE' };
}

/** Replaces the tags of an account's version (none clears them); undefined when it owns no such version. */
export function replaceTags(accountId: string, functionId: string, versionId: string, tags: string[]): Promise<FunctionVersionRecord | undefined> {
  return updateVersionFields(accountId, functionId, versionId, { tags });
}

/** What F9 and the ratelimit routes change on a version: tags (empty clears them) and the rate limit (null removes it). */
export interface VersionUpdate {
  tags?: string[];
  rateLimit?: RateLimitRecord | null;
}

/** Applies an update to an account's version in one conditional write; undefined when it owns no such version. */
export async function updateVersionFields(accountId: string, functionId: string, versionId: string, update: VersionUpdate): Promise<FunctionVersionRecord | undefined> {
  const set = ['#updatedAt = :now'];
  const remove: string[] = [];
  const names: Record<string, string> = { '#updatedAt': 'updatedAt' };
  const values: Record<string, unknown> = { ':accountId': accountId, ':now': new Date().toISOString() };
  for (const [field, value] of Object.entries(update) as [keyof VersionUpdate, unknown][]) {
    if (value === undefined) continue;
    names[`#${field}`] = field;
    const empty = value === null || (Array.isArray(value) && value.length === 0);
    if (empty) remove.push(`#${field}`);
    else {
      set.push(`#${field} = :${field}`);
      values[`:${field}`] = value;
    }
  }
  return updateVersionIf(functionId, versionId, {
    UpdateExpression: `SET ${set.join(', ')}${remove.length ? ` REMOVE ${remove.join(', ')}` : ''}`,
    ConditionExpression: 'attribute_exists(functionId) AND accountId = :accountId',
    ExpressionAttributeNames: names,
    ExpressionAttributeValues: values,
  });
}

/**
 * Replaces the secrets of an account's version with `secrets` (none clears them), sealed
 * for that version; false when it owns no such version. The set is sealed only once
 * ownership is known, and the write is conditional on it, so another account's id costs
 * no data key and can never receive one.
 */
export async function replaceSecrets(accountId: string, functionId: string, versionId: string, secrets: readonly SecretEntry[]): Promise<boolean> {
  if (!(await getOwnedVersion(accountId, functionId, versionId))) return false;
  const sealed = secrets.length > 0 ? await sealSecrets(secrets, { accountId, functionId, versionId }) : undefined;
  return conditionalWrite(() =>
    dynamo().send(
      new UpdateCommand({
        TableName: tableName('functions'),
        Key: { functionId, versionId },
        UpdateExpression: sealed ? 'SET #secrets = :secrets, #updatedAt = :now' : 'SET #updatedAt = :now REMOVE #secrets',
        ConditionExpression: 'attribute_exists(functionId) AND accountId = :accountId',
        ExpressionAttributeNames: { '#secrets': 'secrets', '#updatedAt': 'updatedAt' },
        ExpressionAttributeValues: { ':accountId': accountId, ':now': new Date().toISOString(), ...(sealed ? { ':secrets': sealed } : {}) },
      }),
    ),
  );
}

/** The sealed secrets of a version and its owner, read alone (the worker polls this); undefined when the version is gone. */
export async function getVersionSecrets(functionId: string, versionId: string): Promise<{ accountId: string; secrets?: SealedSecrets } | undefined> {
  const { Item } = await dynamo().send(
    new GetCommand({
      TableName: tableName('functions'),
      Key: { functionId, versionId },
      ProjectionExpression: 'accountId, #secrets',
      ExpressionAttributeNames: { '#secrets': 'secrets' },
      ConsistentRead: true,
    }),
  );
  return Item as { accountId: string; secrets?: SealedSecrets } | undefined;
}

/** An item of the Instances table: the heartbeat the worker beside each instance keeps. */
export interface InstanceRecord {
  versionId: string;
  instanceId: string;
  /** The worker's view of the instance, e.g. STARTING, READY (takes work), ERROR; any case. */
  state: string;
  /** ISO time of the latest heartbeat. */
  lastSeen: string;
  gpu?: string;
  instanceType?: string;
  backend?: string;
  location?: string;
  /** ISO time the instance started. */
  createdAt?: string;
  /** Epoch seconds after which the heartbeat is stale (the table's TTL attribute). */
  expiresAt?: number;
}

/** A version's instances whose heartbeat has not expired; DynamoDB's TTL deletes expired items only eventually. */
export async function listLiveInstances(versionId: string): Promise<InstanceRecord[]> {
  const instances = await queryAll<InstanceRecord>({
    TableName: tableName('instances'),
    KeyConditionExpression: 'versionId = :versionId',
    ExpressionAttributeValues: { ':versionId': versionId },
  });
  const now = Date.now() / 1000;
  return instances.filter((instance) => instance.expiresAt === undefined || instance.expiresAt > now);
}
