/**
 * Quotas per account: what one team may hold of an installation shared by
 * many. The installation sets them (CDK context `nvcf:quotas`, `npm start`'s
 * NVCF_QUOTAS) over the defaults below; the admin CLI overrides them per
 * account in the Quotas table. The Lambdas check the counted ones before they
 * write (functions, versions, deployments, assets), the invocation service the
 * concurrent invocations; `GET /v2/nvcf/accounts/me/usage` shows them all.
 *
 * Counted quotas (functions, versions per function, deployed instances, GPUs,
 * asset bytes) answer 403: the account is not entitled to more, and retrying
 * does not help until it frees some or the admin raises the quota. Concurrent
 * invocations answer 429 with Retry-After: they free themselves as calls end.
 */
import { ListObjectsV2Command, type ListObjectsV2CommandOutput } from '@aws-sdk/client-s3';
import { ConditionalCheckFailedException } from '@aws-sdk/client-dynamodb';
import { GetCommand, UpdateCommand } from '@aws-sdk/lib-dynamodb';
import { conditionalWrite, dynamo, s3 } from './aws';
import { bucketName, tableName } from './config';
import { listAccountVersions, listOwnedVersions } from './functions';
import { gpusPerInstance } from './gpu-instance-types';
import { CONCURRENCY_HOLDER_STALE_SECONDS, SATURATED_RETRY_AFTER_SECONDS } from './limits';
import type { FunctionVersionRecord, GpuSpecification } from './model';
import { S3_PREFIX } from './names';
import { Problem } from './problem';
import { QUOTA_DESCRIPTIONS, QUOTA_NAMES, installationQuotas, type QuotaName, type QuotaValues, type Quotas } from './quota-settings';

/** The overrides the admin set for an account (empty when none). */
export async function quotaOverrides(accountId: string): Promise<QuotaValues> {
  const { Item } = await dynamo().send(new GetCommand({ TableName: tableName('quotas'), Key: { accountId } }));
  if (!Item) return {};
  return Object.fromEntries(QUOTA_NAMES.filter((name) => name in Item).map((name) => [name, Item[name] as number | null]));
}

/** An account's quotas: its overrides over the installation's. */
export async function accountQuotas(accountId: string): Promise<Quotas> {
  return { ...installationQuotas(), ...(await quotaOverrides(accountId)) };
}

/**
 * Sets (value or null for unlimited) and resets (back to the installation's)
 * quota overrides of an account, as the admin CLI does; returns the account's
 * overrides afterwards.
 */
export async function changeQuotaOverrides(accountId: string, set: QuotaValues, reset: readonly QuotaName[] = []): Promise<QuotaValues> {
  const names: Record<string, string> = { '#updatedAt': 'updatedAt' };
  const values: Record<string, unknown> = { ':now': new Date().toISOString() };
  const assignments = ['#updatedAt = :now'];
  for (const [name, value] of Object.entries(set)) {
    names[`#${name}`] = name;
    values[`:${name}`] = value;
    assignments.push(`#${name} = :${name}`);
  }
  for (const name of reset) names[`#${name}`] = name;
  await dynamo().send(
    new UpdateCommand({
      TableName: tableName('quotas'),
      Key: { accountId },
      UpdateExpression: `SET ${assignments.join(', ')}${reset.length ? ` REMOVE ${reset.map((name) => `#${name}`).join(', ')}` : ''}`,
      ExpressionAttributeNames: names,
      ExpressionAttributeValues: values,
    }),
  );
  return quotaOverrides(accountId);
}

/** The 4xx of a quota the request would exceed: names the quota, its value and the current use. */
export function quotaExceeded(name: QuotaName, accountId: string, quota: number, used: number, wanted: number): Problem {
  const rateLike = name === 'concurrentInvocations';
  return new Problem(
    rateLike ? 429 : 403,
    `quota ${name} of account '${accountId}' is ${quota} (${QUOTA_DESCRIPTIONS[name]}); ${used} in use, and this request needs ${wanted} more. ` +
      (rateLike ? 'Retry once calls of the account have ended.' : 'Free some, or ask the installation\'s admin to raise the quota (GET /v2/nvcf/accounts/me/usage shows them all).'),
    { type: `urn:nvcf:problem-details:quota-exceeded:${name}`, title: 'Quota Exceeded', headers: rateLike ? { 'retry-after': String(SATURATED_RETRY_AFTER_SECONDS) } : {} },
  );
}

function requireWithin(name: QuotaName, accountId: string, quotas: Quotas, used: number, wanted: number): void {
  const quota = quotas[name];
  if (quota !== null && used + wanted > quota) throw quotaExceeded(name, accountId, quota, used, wanted);
}

const DEPLOYED = new Set(['DEPLOYING', 'ACTIVE', 'ERROR']);

/** Instances and GPUs that deployments hold: the sum of maxInstances, and of maxInstances x GPUs per instance. */
export function deploymentFootprint(specifications: readonly Pick<GpuSpecification, 'instanceType' | 'maxInstances'>[]): { instances: number; gpus: number } {
  return specifications.reduce(
    (sum, spec) => ({ instances: sum.instances + spec.maxInstances, gpus: sum.gpus + spec.maxInstances * gpusPerInstance(spec.instanceType) }),
    { instances: 0, gpus: 0 },
  );
}

function deployedFootprint(versions: readonly FunctionVersionRecord[], exceptVersionId?: string) {
  return deploymentFootprint(versions.filter((version) => version.versionId !== exceptVersionId && DEPLOYED.has(version.status)).flatMap((version) => version.deployment?.specifications ?? []));
}

/** F1: refuses a new function beyond the account's `functions` quota. */
export async function requireFunctionQuota(accountId: string): Promise<void> {
  const [quotas, versions] = await Promise.all([accountQuotas(accountId), listAccountVersions(accountId)]);
  requireWithin('functions', accountId, quotas, new Set(versions.map((version) => version.functionId)).size, 1);
}

/** F2: refuses a new version of `functionId` beyond `versionsPerFunction`. */
export async function requireVersionQuota(accountId: string, functionId: string): Promise<void> {
  const [quotas, versions] = await Promise.all([accountQuotas(accountId), listOwnedVersions(accountId, functionId)]);
  requireWithin('versionsPerFunction', accountId, quotas, versions.length, 1);
}

/**
 * D1/D3: refuses a deployment of `versionId` with `specifications` whose
 * instances or GPUs, with those of the account's other deployed versions,
 * would exceed `deployedInstances` or `gpus`. Only the growth is counted on
 * an update: a deployment that shrinks is never refused.
 */
export async function requireDeploymentQuota(accountId: string, version: FunctionVersionRecord, specifications: readonly GpuSpecification[]): Promise<void> {
  const [quotas, versions] = await Promise.all([accountQuotas(accountId), listAccountVersions(accountId)]);
  const others = deployedFootprint(versions, version.versionId);
  const before = deploymentFootprint(DEPLOYED.has(version.status) ? (version.deployment?.specifications ?? []) : []);
  const after = deploymentFootprint(specifications);
  if (after.instances > before.instances) requireWithin('deployedInstances', accountId, quotas, others.instances + before.instances, after.instances - before.instances);
  if (after.gpus > before.gpus) requireWithin('gpus', accountId, quotas, others.gpus + before.gpus, after.gpus - before.gpus);
}

/** Bytes of the account's uploaded assets: a listing of its asset prefix (one request per 1000 assets). */
export async function assetBytesInUse(accountId: string): Promise<number> {
  let bytes = 0;
  let ContinuationToken: string | undefined;
  do {
    const page: ListObjectsV2CommandOutput = await s3().send(new ListObjectsV2Command({ Bucket: bucketName(), Prefix: `${S3_PREFIX.assets}${accountId}/`, ContinuationToken }));
    for (const object of page.Contents ?? []) bytes += object.Size ?? 0;
    ContinuationToken = page.IsTruncated ? page.NextContinuationToken : undefined;
  } while (ContinuationToken);
  return bytes;
}

/**
 * A1: refuses a new asset once the account's assets fill `assetBytes`;
 * otherwise the bytes still free, which bound the presigned POST's size
 * (undefined: unlimited). A presigned PUT cannot be bounded, so one upload
 * through it may overshoot the quota by at most one asset; the next A1 is refused.
 */
export async function requireAssetQuota(accountId: string): Promise<number | undefined> {
  const quotas = await accountQuotas(accountId);
  if (quotas.assetBytes === null) return undefined;
  const used = await assetBytesInUse(accountId);
  if (used >= quotas.assetBytes) throw quotaExceeded('assetBytes', accountId, quotas.assetBytes, used, 1);
  return quotas.assetBytes - used;
}

const concurrentKey = (accountId: string) => `concurrent#${accountId}`;

/**
 * Concurrent invocations are one counter item per account (`calls`), plus
 * what each invocation service replica (a holder) holds of it (`held_<holder>`)
 * and when that replica last said it is alive (`seen_<holder>`, refreshed
 * every CONCURRENCY_HEARTBEAT_SECONDS while it holds any). Taking and giving
 * back a slot changes both counts in one update; a replica that dies holding
 * slots stops refreshing, and the first call the full quota refuses after
 * CONCURRENCY_HOLDER_STALE_SECONDS gives its slots back, conditioned on
 * exactly what it held, so no live replica's slot is ever freed.
 */
const holderNames = (holder: string) => ({ '#held': `held_${holder}`, '#seen': `seen_${holder}` });

async function takeSlot(accountId: string, quota: number, holder: string, nowMs: number): Promise<boolean> {
  try {
    await dynamo().send(
      new UpdateCommand({
        TableName: tableName('counters'),
        Key: { counterKey: concurrentKey(accountId) },
        UpdateExpression: 'ADD #calls :one, #held :one SET #seen = :now',
        ConditionExpression: 'attribute_not_exists(#calls) OR #calls < :quota',
        ExpressionAttributeNames: { '#calls': 'calls', ...holderNames(holder) },
        ExpressionAttributeValues: { ':one': 1, ':quota': quota, ':now': nowMs },
      }),
    );
    return true;
  } catch (error) {
    if (error instanceof ConditionalCheckFailedException) return false;
    throw error;
  }
}

async function freeSlot(accountId: string, holder: string): Promise<void> {
  const names = { '#calls': 'calls', '#held': holderNames(holder)['#held'] };
  const { Attributes } = await dynamo().send(
    new UpdateCommand({
      TableName: tableName('counters'),
      Key: { counterKey: concurrentKey(accountId) },
      UpdateExpression: 'ADD #calls :minusOne, #held :minusOne',
      ExpressionAttributeNames: names,
      ExpressionAttributeValues: { ':minusOne': -1 },
      ReturnValues: 'UPDATED_NEW',
    }),
  );
  // A holder that holds nothing leaves no attributes behind (replicas come and go); a take in between keeps them.
  if (Number(Attributes?.[names['#held']] ?? 0) > 0) return;
  await conditionalWrite(() =>
    dynamo().send(
      new UpdateCommand({
        TableName: tableName('counters'),
        Key: { counterKey: concurrentKey(accountId) },
        UpdateExpression: 'REMOVE #held, #seen',
        ConditionExpression: '#held = :zero',
        ExpressionAttributeNames: holderNames(holder),
        ExpressionAttributeValues: { ':zero': 0 },
      }),
    ),
  );
}

/** Tells that `holder` is alive for each account it holds slots of (the invocation service calls it periodically). */
export async function markHolderAlive(accountIds: readonly string[], holder: string, nowMs = Date.now()): Promise<void> {
  await Promise.all(
    accountIds.map((accountId) =>
      conditionalWrite(() =>
        dynamo().send(
          new UpdateCommand({
            TableName: tableName('counters'),
            Key: { counterKey: concurrentKey(accountId) },
            UpdateExpression: 'SET #seen = :now',
            ConditionExpression: 'attribute_exists(#held)',
            ExpressionAttributeNames: holderNames(holder),
            ExpressionAttributeValues: { ':now': nowMs },
          }),
        ),
      ),
    ),
  );
}

/**
 * Gives back the slots of holders silent for CONCURRENCY_HOLDER_STALE_SECONDS
 * (replicas that died holding them), each in one update conditioned on what
 * it held and when it was last seen; resolves with the account's count after.
 */
async function repairDeadHolders(accountId: string, nowMs: number, onGivenBack?: GivenBack): Promise<number> {
  const { Item } = await dynamo().send(new GetCommand({ TableName: tableName('counters'), Key: { counterKey: concurrentKey(accountId) }, ConsistentRead: true }));
  let calls = Number(Item?.calls ?? 0);
  const staleBefore = nowMs - CONCURRENCY_HOLDER_STALE_SECONDS * 1000;
  for (const attribute of Object.keys(Item ?? {}).filter((name) => name.startsWith('held_'))) {
    const holder = attribute.slice('held_'.length);
    const held = Number(Item![attribute]);
    const seen = Item![`seen_${holder}`] as number | undefined;
    if (held <= 0 || (seen !== undefined && seen >= staleBefore)) continue;
    const given = await conditionalWrite(() =>
      dynamo().send(
        new UpdateCommand({
          TableName: tableName('counters'),
          Key: { counterKey: concurrentKey(accountId) },
          UpdateExpression: 'ADD #calls :minusHeld REMOVE #held, #seen',
          ConditionExpression: `#held = :held AND ${seen === undefined ? 'attribute_not_exists(#seen)' : '#seen = :seen'}`,
          ExpressionAttributeNames: { '#calls': 'calls', ...holderNames(holder) },
          ExpressionAttributeValues: { ':minusHeld': -held, ':held': held, ...(seen === undefined ? {} : { ':seen': seen }) },
        }),
      ),
    );
    if (given) {
      onGivenBack?.({ accountId, holder, held });
      calls -= held;
    }
  }
  return Math.max(0, calls);
}

/** Invocations of an account the service holds now (all replicas). */
export async function concurrentInvocations(accountId: string): Promise<number> {
  const { Item } = await dynamo().send(new GetCommand({ TableName: tableName('counters'), Key: { counterKey: concurrentKey(accountId) } }));
  return Math.max(0, Number(Item?.calls ?? 0));
}

/** What a dead holder held, given back (for the service's log). */
export type GivenBack = (slots: { accountId: string; holder: string; held: number }) => void;

/** Slots taken by takeInvocationSlots: of which accounts, and how to give them back. */
export interface InvocationSlots {
  accountIds: string[];
  release(): Promise<void>;
}

/**
 * Takes one concurrent-invocation slot of each account (the caller and, for
 * a shared function, its owner) whose quota is set, for `holder` (the
 * invocation service replica), or refuses with 429 naming the quota. The
 * caller gives them back once the call is no longer held. No request when no
 * quota is set.
 */
export async function takeInvocationSlots(
  accounts: readonly { accountId: string; quotas: Quotas }[],
  holder: string,
  { nowMs = Date.now(), onGivenBack }: { nowMs?: number; onGivenBack?: GivenBack } = {},
): Promise<InvocationSlots> {
  const taken: string[] = [];
  const release = async () => {
    await Promise.all(taken.splice(0).map((accountId) => freeSlot(accountId, holder)));
  };
  for (const { accountId, quotas } of accounts) {
    const quota = quotas.concurrentInvocations;
    if (quota === null || taken.includes(accountId)) continue;
    if (!(await takeSlot(accountId, quota, holder, nowMs))) {
      const inUse = await repairDeadHolders(accountId, nowMs, onGivenBack);
      if (inUse >= quota || !(await takeSlot(accountId, quota, holder, nowMs))) {
        await release();
        throw quotaExceeded('concurrentInvocations', accountId, quota, inUse, 1);
      }
    }
    taken.push(accountId);
  }
  return { accountIds: [...taken], release };
}

/** One quota's standing, as the usage endpoint shows it. */
export interface QuotaUsage {
  quota: number | null;
  used: number;
  description: string;
  /** versionsPerFunction: the function with the most versions. */
  functionId?: string;
}

/** U1: the account's usage against each of its quotas. */
export async function accountUsage(accountId: string): Promise<Record<QuotaName, QuotaUsage>> {
  const [quotas, versions, assetBytes, concurrent] = await Promise.all([accountQuotas(accountId), listAccountVersions(accountId), assetBytesInUse(accountId), concurrentInvocations(accountId)]);
  const perFunction = new Map<string, number>();
  for (const version of versions) perFunction.set(version.functionId, (perFunction.get(version.functionId) ?? 0) + 1);
  const [busiest] = [...perFunction.entries()].sort((a, b) => b[1] - a[1]);
  const footprint = deployedFootprint(versions);
  const used: Record<QuotaName, number> = {
    functions: perFunction.size,
    versionsPerFunction: busiest?.[1] ?? 0,
    deployedInstances: footprint.instances,
    gpus: footprint.gpus,
    concurrentInvocations: concurrent,
    assetBytes,
  };
  return Object.fromEntries(
    QUOTA_NAMES.map((name) => [name, { quota: quotas[name], used: used[name], description: QUOTA_DESCRIPTIONS[name], ...(name === 'versionsPerFunction' && busiest ? { functionId: busiest[0] } : {}) }]),
  ) as Record<QuotaName, QuotaUsage>;
}
