/**
 * Deploy, update and undeploy a function version (nvcf-api.md §2.2, D1–D4).
 *
 * Every step is ordered so that a crash anywhere is repaired by retrying the
 * same request: idempotent work (queues, nodegroup sizing) comes before the
 * conditional status write that makes the change visible, and cleanup after
 * an undeploy is repeated by every later undeploy of the same version.
 *
 * GPU nodegroup sizing (EKS only): each GPU instance gets a node of its own, so
 * a nodegroup's minSize is the sum of `minInstances` of every deployed
 * specification placed on it (gpu label and instance type match). maxSize is
 * raised when needed to hold that minimum and never lowered; desiredSize is
 * raised to the minimum, and lowered only by the nodes whose minimum went away.
 * The API owns minSize of GPU nodegroups from the first deployment on.
 */
import { isDeepStrictEqual } from 'node:util';
import { ConditionalCheckFailedException } from '@aws-sdk/client-dynamodb';
import { ResourceInUseException, UpdateNodegroupConfigCommand } from '@aws-sdk/client-eks';
import { ScanCommand, UpdateCommand } from '@aws-sdk/lib-dynamodb';
import { DeleteMessageBatchCommand, QueueDeletedRecently, ReceiveMessageCommand } from '@aws-sdk/client-sqs';
import { dynamo, eks, sqs } from './aws';
import { clusterName, tableName } from './config';
import type { DeploymentRequest, GpuSpecificationInput } from './deployment-schemas';
import { changeStatus, getOwnedVersion, getVersion } from './functions';
import { AWS_BACKEND, LOCAL_CLUSTER_NAME, describeGpuNodegroup, gpuOffers, type GpuNodegroup, type GpuOffer, type NodegroupScaling } from './gpus';
import { UNDEPLOY_DRAIN_SECONDS } from './limits';
import type { DeploymentRecord, FunctionStatus, FunctionVersionRecord, GpuSpecification } from './model';
import { Problem, badRequest, notFound } from './problem';
import { deleteQueue, ensureVersionQueues, findVersionQueues, queueCounts, type VersionQueues } from './queues';

/** Statuses in which a version has a deployment (and its queues). */
export const DEPLOYED_STATUSES: readonly FunctionStatus[] = ['DEPLOYING', 'ACTIVE', 'ERROR'];

/** Detail stored on invocations that were still queued when their version was undeployed. */
export const UNDEPLOYED_DETAIL = 'the function version was undeployed before the request was processed';
/** HTTP status reported for those invocations: the function can no longer serve them. */
export const UNDEPLOYED_STATUS = 503;

/** Fields of a specification an update (PUT) may repeat but not change; it changes only min/max/concurrency. */
const FIXED_FIELDS = ['backend', 'availabilityZones', 'clusters', 'regions', 'attributes', 'preferredOrder', 'configuration'] as const;

/** The version's ids as NVCF's messages quote them. */
function versionLabel(functionId: string, versionId: string): string {
  return `Function id '${functionId}', version '${versionId}'`;
}

function versionNotFound(functionId: string, versionId: string): Problem {
  return notFound(`Function id '${functionId}': Version '${versionId}' not found`);
}

function pairKey(spec: Pick<GpuSpecification, 'gpu' | 'instanceType'>): string {
  return `${spec.gpu}/${spec.instanceType}`;
}

/** Reads a version of the caller's, or fails with 404. */
export async function requireOwnedVersion(accountId: string, functionId: string, versionId: string): Promise<FunctionVersionRecord> {
  const record = await getOwnedVersion(accountId, functionId, versionId);
  if (!record) throw versionNotFound(functionId, versionId);
  return record;
}

/** A version together with its deployment. */
export type DeployedVersion = FunctionVersionRecord & { deployment: DeploymentRecord };

/** Whether a version currently has a deployment. */
export function isDeployed(record: FunctionVersionRecord): record is DeployedVersion {
  return DEPLOYED_STATUSES.includes(record.status) && record.deployment !== undefined;
}

/** A deployed version of the caller's, or 404 (D2, Q2). */
export async function requireDeployedVersion(accountId: string, functionId: string, versionId: string): Promise<DeployedVersion> {
  const record = await requireOwnedVersion(accountId, functionId, versionId);
  if (!isDeployed(record)) throw notFound(`${versionLabel(functionId, versionId)}: Status ${record.status}, the function version is not deployed`);
  return record;
}

/**
 * Checks specifications against the version and the GPU offers: offered gpu,
 * instance type and backend, `configuration` for Helm functions only, each
 * gpu/instanceType once. Returns them with defaults applied; 400 listing every
 * mistake otherwise.
 */
export function validateSpecifications(
  record: FunctionVersionRecord,
  specs: readonly GpuSpecificationInput[],
  offers: readonly GpuOffer[],
  clusterGroupName: string,
): GpuSpecification[] {
  const mistakes: string[] = [];
  const backends = [AWS_BACKEND, clusterGroupName];
  const seen = new Map<string, number>();
  specs.forEach((spec, i) => {
    const at = `deploymentSpecifications[${i}]`;
    const offer = offers.find((candidate) => candidate.gpu === spec.gpu);
    if (!offer) {
      mistakes.push(`${at}.gpu: GPU "${spec.gpu}" is not offered; offered GPUs: ${offers.map((o) => o.gpu).join(', ') || 'none'} (see GET /v2/nvcf/clusterGroups)`);
    } else if (!offer.instanceTypes.includes(spec.instanceType)) {
      mistakes.push(`${at}.instanceType: instance type "${spec.instanceType}" is not offered with GPU ${offer.gpu}; offered: ${offer.instanceTypes.join(', ') || 'none'}`);
    }
    if (spec.backend !== undefined && !backends.includes(spec.backend)) {
      mistakes.push(`${at}.backend: backend "${spec.backend}" is not offered; use ${backends.map((b) => `"${b}"`).join(' or ')}, or omit it`);
    }
    if (spec.configuration !== undefined && !record.helmChart) {
      mistakes.push(
        `${at}.configuration: ${versionLabel(record.functionId, record.versionId)}: The configuration field in Gpu specification should be empty for container based functions`,
      );
    }
    const first = seen.get(pairKey(spec));
    if (first !== undefined) {
      mistakes.push(`${at}: gpu ${spec.gpu} with instanceType ${spec.instanceType} is already given in deploymentSpecifications[${first}]; give each GPU and instance type once`);
    } else seen.set(pairKey(spec), i);
  });
  if (mistakes.length > 0) throw badRequest(`invalid request body: ${mistakes.join('; ')}`);
  return specs.map((spec) => ({ ...spec, maxRequestConcurrency: spec.maxRequestConcurrency ?? 1 }));
}

/**
 * Merges an update into the deployed specifications: every deployed gpu and
 * instance type must be listed, and only min/max/concurrency may differ.
 */
export function mergeSpecificationUpdate(deployed: readonly GpuSpecification[], update: readonly GpuSpecification[], given: readonly GpuSpecificationInput[]): GpuSpecification[] {
  const mistakes: string[] = [];
  const deployedPairs = deployed.map(pairKey);
  const merged = update.map((spec, i) => {
    const at = `deploymentSpecifications[${i}]`;
    const current = deployed.find((candidate) => pairKey(candidate) === pairKey(spec));
    if (!current) {
      mistakes.push(
        `${at}: gpu ${spec.gpu} with instanceType ${spec.instanceType} is not deployed; an update may change only minInstances, maxInstances and maxRequestConcurrency of the deployed ${deployedPairs.join(', ')} (undeploy and deploy again to change the GPU or instance type)`,
      );
      return spec;
    }
    for (const field of FIXED_FIELDS) {
      if (given[i]![field] !== undefined && !isDeepStrictEqual(given[i]![field], current[field])) {
        mistakes.push(`${at}.${field}: cannot be changed by an update (deployed: ${JSON.stringify(current[field] ?? null)}); undeploy and deploy again to change it`);
      }
    }
    return {
      ...current,
      minInstances: spec.minInstances,
      maxInstances: spec.maxInstances,
      maxRequestConcurrency: given[i]!.maxRequestConcurrency ?? current.maxRequestConcurrency,
    };
  });
  const missing = deployedPairs.filter((pair) => !update.some((spec) => pairKey(spec) === pair));
  if (missing.length > 0) mistakes.push(`deploymentSpecifications: must list every deployed GPU and instance type; missing ${missing.join(', ')}`);
  if (mistakes.length > 0) throw badRequest(`invalid request body: ${mistakes.join('; ')}`);
  return merged;
}

/** A version whose specifications all have minInstances 0 is invocable as soon as its queue exists. */
function needsNoInstances(specs: readonly GpuSpecification[]): boolean {
  return specs.every((spec) => spec.minInstances === 0);
}

async function createQueues(record: FunctionVersionRecord): Promise<VersionQueues> {
  try {
    return await ensureVersionQueues(record.versionId, { 'nvcf:function-id': record.functionId });
  } catch (error) {
    if (error instanceof QueueDeletedRecently) {
      throw new Problem(
        409,
        `${versionLabel(record.functionId, record.versionId)}: its queue was deleted by an undeploy less than 60 seconds ago and SQS allows re-creating it only after that; retry in a minute`,
        { headers: { 'retry-after': '60' } },
      );
    }
    throw error;
  }
}

/** D1: deploys an INACTIVE version; the version becomes DEPLOYING (ACTIVE when no instance is required). */
export async function deployVersion(accountId: string, functionId: string, versionId: string, request: DeploymentRequest): Promise<DeployedVersion> {
  const record = await requireOwnedVersion(accountId, functionId, versionId);
  const label = versionLabel(functionId, versionId);
  if (record.status === 'DEPLOYING' || record.status === 'ACTIVE') throw badRequest(`${label}: Status ${record.status}, use PUT to update current deployment`);
  if (record.status === 'ERROR') throw badRequest(`${label}: Function already has a deployment with errors; undeploy it (DELETE) before deploying again`);
  const offers = await gpuOffers();
  const specifications = validateSpecifications(record, request.deploymentSpecifications, offers, clusterName() ?? LOCAL_CLUSTER_NAME);

  const queues = await createQueues(record);
  await sizeGpuNodegroups(offers, { versionId, specifications }, specifications);
  const now = new Date().toISOString();
  const deployment: DeploymentRecord = { specifications, createdAt: now, updatedAt: now, ...queues };
  const deployed = await changeStatus({
    functionId,
    versionId,
    from: ['INACTIVE'],
    to: needsNoInstances(specifications) ? 'ACTIVE' : 'DEPLOYING',
    set: { deployment },
  });
  if (deployed) return deployed as DeployedVersion;
  // Someone else changed the version meanwhile (a concurrent deploy, or a delete): answer as if we had come second.
  const current = await requireOwnedVersion(accountId, functionId, versionId);
  throw badRequest(`${label}: Status ${current.status}, use PUT to update current deployment`);
}

/** D3: changes min/max instances and request concurrency of a DEPLOYING or ACTIVE version. */
export async function updateDeployment(accountId: string, functionId: string, versionId: string, request: DeploymentRequest): Promise<DeployedVersion> {
  const label = versionLabel(functionId, versionId);
  // A worker may flip DEPLOYING to ACTIVE between our read and our write; read again and retry then.
  for (let attempt = 0; attempt < 3; attempt += 1) {
    const record = await requireOwnedVersion(accountId, functionId, versionId);
    if (record.status === 'INACTIVE' || !record.deployment) throw badRequest(`${label}: Status ${record.status}, the function version is not deployed; use POST to deploy it`);
    if (record.status === 'ERROR') throw badRequest(`${label}: Status ERROR, undeploy (DELETE) and deploy again to change a deployment with errors`);
    const offers = await gpuOffers();
    const validated = validateSpecifications(record, request.deploymentSpecifications, offers, clusterName() ?? LOCAL_CLUSTER_NAME);
    const specifications = mergeSpecificationUpdate(record.deployment.specifications, validated, request.deploymentSpecifications);

    await sizeGpuNodegroups(offers, { versionId, specifications }, specifications);
    const deployment: DeploymentRecord = { ...record.deployment, specifications, updatedAt: new Date().toISOString() };
    const to = record.status === 'DEPLOYING' && needsNoInstances(specifications) ? 'ACTIVE' : record.status;
    const updated = await changeStatus({ functionId, versionId, from: [record.status], to, set: { deployment } });
    if (updated) return updated as DeployedVersion;
  }
  throw new Problem(409, `${label}: the deployment kept changing while it was being updated; retry`);
}

export interface UndeployOutcome {
  version: FunctionVersionRecord;
  /** False when the version was not deployed (a repeated undeploy); leftovers were cleaned up all the same. */
  undeployed: boolean;
  /** False when the queues were kept: graceful and still busy, or not every queued invocation was reached yet. */
  queuesRemoved: boolean;
  /** Why the GPU nodegroups could not be lowered; the undeploy stands regardless. */
  nodegroupError?: unknown;
}

/**
 * D4: the version becomes INACTIVE and loses its deployment; invocations still
 * waiting in its queues are marked errored, and the queues are deleted (with
 * `graceful`, only once no message is in flight). Repeating it on an INACTIVE
 * version redoes the queue cleanup and reports `undeployed: false`.
 */
export async function undeployVersion(accountId: string, functionId: string, versionId: string, graceful: boolean): Promise<UndeployOutcome> {
  const record = await requireOwnedVersion(accountId, functionId, versionId);
  const undeployedRecord = record.status === 'INACTIVE' ? undefined : await changeStatus({ functionId, versionId, from: DEPLOYED_STATUSES, to: 'INACTIVE', remove: ['deployment'] });
  const version = undeployedRecord ?? (record.status === 'INACTIVE' ? record : await requireOwnedVersion(accountId, functionId, versionId));
  const queuesRemoved = await settleUndeployedQueues(functionId, versionId, graceful);
  let nodegroupError: unknown;
  if (undeployedRecord && record.deployment) {
    try {
      await sizeGpuNodegroups(await gpuOffers(), { versionId, specifications: [] }, record.deployment.specifications);
    } catch (error) {
      nodegroupError = error;
    }
  }
  return { version, undeployed: undeployedRecord !== undefined, queuesRemoved, nodegroupError };
}

/**
 * Cleans up the queues of an undeployed version: invocations whose messages
 * still wait (in the queue or its dead-letter queue) become ERRORED, then both
 * queues are deleted, unless `graceful` and messages are still in flight.
 * Returns whether the queues are gone. Safe to repeat (the controller may call
 * it for INACTIVE versions whose queues remain); does nothing to a version that
 * was deployed again meanwhile.
 */
export async function settleUndeployedQueues(functionId: string, versionId: string, graceful: boolean): Promise<boolean> {
  const { queueUrl, deadLetterQueueUrl } = await findVersionQueues(versionId);
  if (!queueUrl && !deadLetterQueueUrl) return true;
  if (await isDeployedAgain(functionId, versionId)) return false;
  const deadline = Date.now() + UNDEPLOY_DRAIN_SECONDS * 1000;
  const drained = await Promise.all([queueUrl, deadLetterQueueUrl].map((url) => (url ? errorWaitingInvocations(url, deadline) : true)));
  if (drained.includes(false)) return false;
  if (graceful && queueUrl) {
    const counts = await queueCounts(queueUrl);
    if (counts && counts.waiting + counts.inFlight > 0) return false;
  }
  if (await isDeployedAgain(functionId, versionId)) return false;
  await Promise.all([queueUrl, deadLetterQueueUrl].map((url) => (url ? deleteQueue(url) : undefined)));
  return true;
}

async function isDeployedAgain(functionId: string, versionId: string): Promise<boolean> {
  const current = await getVersion(functionId, versionId);
  return current !== undefined && current.status !== 'INACTIVE';
}

/** Receives every waiting message of a queue and errors its invocation; false when the deadline came first. */
async function errorWaitingInvocations(queueUrl: string, deadline: number): Promise<boolean> {
  while (Date.now() < deadline) {
    const { Messages = [] } = await sqs().send(
      // A short wait rather than none: a zero-wait receive samples only some SQS servers and may miss messages.
      new ReceiveMessageCommand({ QueueUrl: queueUrl, MaxNumberOfMessages: 10, WaitTimeSeconds: 1, VisibilityTimeout: 60 }),
    );
    if (Messages.length === 0) return true;
    await Promise.all(Messages.map((message) => errorInvocation(requestIdOf(message.Body))));
    await sqs().send(
      new DeleteMessageBatchCommand({
        QueueUrl: queueUrl,
        Entries: Messages.map((message, i) => ({ Id: String(i), ReceiptHandle: message.ReceiptHandle })),
      }),
    );
  }
  return false;
}

function requestIdOf(body: string | undefined): string | undefined {
  try {
    const requestId = (JSON.parse(body ?? '') as { requestId?: unknown }).requestId;
    return typeof requestId === 'string' && requestId ? requestId : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Marks an invocation ERRORED because its version was undeployed. Only a
 * message nobody holds reaches us, so its invocation will not run: QUEUED, or
 * IN_PROGRESS left behind by a worker that died. Terminal ones stay as they are.
 */
async function errorInvocation(requestId: string | undefined): Promise<void> {
  if (!requestId) return;
  try {
    await dynamo().send(
      new UpdateCommand({
        TableName: tableName('invocations'),
        Key: { requestId },
        UpdateExpression: 'SET #status = :errored, #error = :error, #updatedAt = :now',
        ConditionExpression: 'attribute_exists(requestId) AND #status IN (:queued, :inProgress)',
        ExpressionAttributeNames: { '#status': 'status', '#error': 'error', '#updatedAt': 'updatedAt' },
        ExpressionAttributeValues: {
          ':errored': 'ERRORED',
          ':queued': 'QUEUED',
          ':inProgress': 'IN_PROGRESS',
          ':error': { status: UNDEPLOYED_STATUS, detail: UNDEPLOYED_DETAIL },
          ':now': new Date().toISOString(),
        },
      }),
    );
  } catch (error) {
    if (!(error instanceof ConditionalCheckFailedException)) throw error;
  }
}

/** Every deployed version of every account, in full: the controller runs them, D1 sizes nodegroups for them. */
export async function listDeployedVersions(): Promise<DeployedVersion[]> {
  const items: DeployedVersion[] = [];
  let ExclusiveStartKey: Record<string, unknown> | undefined;
  do {
    const page = await dynamo().send(
      new ScanCommand({
        TableName: tableName('functions'),
        FilterExpression: 'attribute_exists(deployment)',
        ConsistentRead: true,
        ExclusiveStartKey,
      }),
    );
    items.push(...((page.Items ?? []) as typeof items));
    ExclusiveStartKey = page.LastEvaluatedKey;
  } while (ExclusiveStartKey);
  return items.filter((item) => DEPLOYED_STATUSES.includes(item.status));
}

/** The nodegroup a specification's instances run on: same GPU label, instance type among its types. */
export function nodegroupFor(spec: Pick<GpuSpecification, 'gpu' | 'instanceType'>, offers: readonly GpuOffer[]): GpuNodegroup | undefined {
  return offers.find((offer) => offer.gpu === spec.gpu)?.nodegroups.find((nodegroup) => nodegroup.instanceTypes.includes(spec.instanceType));
}

/** The scaling a nodegroup needs so that `required` instances have nodes (the rule in this file's header). */
export function scalingFor(current: NodegroupScaling, required: number): NodegroupScaling {
  if (required >= current.minSize) {
    return { minSize: required, maxSize: Math.max(current.maxSize, required, 1), desiredSize: Math.max(current.desiredSize, required) };
  }
  const released = current.minSize - required;
  return { minSize: required, maxSize: current.maxSize, desiredSize: Math.max(required, current.desiredSize - released) };
}

/**
 * Sets the scaling of the nodegroups that `affected` specifications run on,
 * counting `change` in place of what the table holds for that version. Off EKS
 * there is nothing to size. 503 while EKS is still applying an earlier update.
 */
async function sizeGpuNodegroups(
  offers: readonly GpuOffer[],
  change: { versionId: string; specifications: readonly GpuSpecification[] },
  affected: readonly GpuSpecification[],
): Promise<void> {
  const cluster = clusterName();
  if (!cluster) return;
  const targets = [...new Set(affected.map((spec) => nodegroupFor(spec, offers)?.name).filter((name) => name !== undefined))];
  if (targets.length === 0) return;
  const others = (await listDeployedVersions()).filter((version) => version.versionId !== change.versionId);
  const specifications = [...others.flatMap((version) => version.deployment!.specifications), ...change.specifications];
  for (const name of targets) {
    const required = specifications.filter((spec) => nodegroupFor(spec, offers)?.name === name).reduce((sum, spec) => sum + spec.minInstances, 0);
    const nodegroup = await describeGpuNodegroup(cluster, name);
    if (!nodegroup) continue;
    const scalingConfig = scalingFor(nodegroup.scaling, required);
    if (isDeepStrictEqual(scalingConfig, nodegroup.scaling)) continue;
    try {
      await eks().send(new UpdateNodegroupConfigCommand({ clusterName: cluster, nodegroupName: name, scalingConfig }));
    } catch (error) {
      if (error instanceof ResourceInUseException) {
        throw new Problem(503, `GPU nodegroup ${name} is still applying an earlier scaling change; retry in a minute`, { headers: { 'retry-after': '30' } });
      }
      throw error;
    }
  }
}
