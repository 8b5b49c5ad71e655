/**
 * Deploy, update and undeploy a function version (nvcf-api.md §2.2, D1–D4).
 *
 * Every step is ordered so that a crash anywhere is repaired by retrying the
 * same request or by the sweeper: a deploy creates its queues (new ones, named
 * after the deployment) before the conditional status write that makes them
 * visible; queues no deployment refers to (a deploy that lost a race or
 * crashed, an undeploy) are drained and deleted by core/sweeper.ts. GPU
 * nodegroups are sized after the write, from what the table then holds; a
 * failure there is reported but does not undo the change (the cluster
 * autoscaler brings nodes for pending instances either way).
 *
 * GPU nodegroup sizing (EKS only): each GPU instance gets a node of its own, so
 * a nodegroup's minSize is the sum of `minInstances` of every deployed
 * specification placed on it (gpu label and instance type match), and never
 * less than the nodegroup's configured minNodes. maxSize is raised when
 * needed to hold that minimum and never lowered; desiredSize is raised to the
 * minimum and never lowered here: the Auto Scaling group would pick the nodes
 * to terminate, busy ones included, while the cluster autoscaler drains and
 * removes idle nodes itself once the minimum allows it.
 */
import { isDeepStrictEqual } from 'node:util';
import { UpdateNodegroupConfigCommand } from '@aws-sdk/client-eks';
import { ScanCommand } from '@aws-sdk/lib-dynamodb';
import { randomBytes } from 'node:crypto';
import { dynamo, eks } from './aws';
import { artifactObjectKey, ngcArtifactPath } from './artifacts';
import { NGC_MODELS_HOST, registryCredentialFor } from './registry-credentials';
import { bucketName, clusterName, maxReceiveCount, tableName } from './config';
import type { DeploymentRequest, GpuSpecificationInput } from './deployment-schemas';
import { UNDEPLOYED_ERROR, deadLetteredError, drainQueue } from './drain';
import { changeStatus, getOwnedVersion } from './functions';
import { AWS_BACKEND, LOCAL_CLUSTER_NAME, describeGpuNodegroup, gpuOffers, type GpuNodegroup, type GpuOffer, type NodegroupScaling } from './gpus';
import { UNDEPLOY_DRAIN_SECONDS } from './limits';
import type { DeploymentRecord, FunctionStatus, FunctionVersionRecord, GpuSpecification } from './model';
import { Problem, badRequest, notFound } from './problem';
import { requireDeploymentQuota } from './quotas';
import { UNDEPLOYED_AT_TAG, ensureDeploymentQueues, newDeploymentQueueNames, tagQueue, type VersionQueues } from './queues';

/** Statuses in which a version has a deployment (and its queues). */
export const DEPLOYED_STATUSES: readonly FunctionStatus[] = ['DEPLOYING', 'ACTIVE', 'ERROR'];

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
  const resolved = specs.map((given, i) => {
    const at = `deploymentSpecifications[${i}]`;
    const offer = offers.find((candidate) => candidate.gpu === given.gpu);
    const spec = { ...given, instanceType: given.instanceType ?? defaultInstanceType(record, given.gpu, offer) };
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
    return spec;
  });
  if (mistakes.length > 0) throw badRequest(`invalid request body: ${mistakes.join('; ')}`);
  return resolved.map((spec) => ({ ...spec, maxRequestConcurrency: spec.maxRequestConcurrency ?? 1 }));
}

/**
 * The instance type of a specification that names none, as NVCF's own
 * examples deploy: the one deployed with that GPU when exactly one is (an
 * update), else the GPU's default, the first it is offered on ('' when the
 * GPU is not offered, which is reported on its own).
 */
function defaultInstanceType(record: FunctionVersionRecord, gpu: string, offer: GpuOffer | undefined): string {
  const deployed = (record.deployment?.specifications ?? []).filter((spec) => spec.gpu === gpu);
  return deployed.length === 1 ? deployed[0]!.instanceType : (offer?.instanceTypes[0] ?? '');
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

/** New queues for a deployment of `record`; tagged with the function and version they serve. */
async function createQueues(record: FunctionVersionRecord): Promise<VersionQueues> {
  const names = newDeploymentQueueNames(record.versionId, randomBytes(4).toString('hex'));
  return ensureDeploymentQueues(names, { 'nvcf:function-id': record.functionId, 'nvcf:version-id': record.versionId });
}

/** A change of deployment and, on EKS, why the GPU nodegroups could not be sized for it (the change stands regardless). */
export interface DeploymentChange<T> {
  version: T;
  nodegroupError?: unknown;
}

/**
 * Every model and resource must be an object the function pods may read, or an
 * NGC model or resource the owner holds an NGC credential for; 400 naming each
 * one that is not (and, for NGC, the credential that is missing).
 */
async function checkArtifacts(record: FunctionVersionRecord): Promise<void> {
  const bucket = bucketName();
  const problems: string[] = [];
  for (const field of ['models', 'resources'] as const) {
    for (const [i, artifact] of (record[field] ?? []).entries()) {
      const ngc = ngcArtifactPath(artifact);
      if (ngc) {
        if (!(await registryCredentialFor(record.accountId, NGC_MODELS_HOST, ngc.kind))) problems.push(`${field}[${i}]: ${missingNgcCredential(artifact.name, ngc.kind)}`);
        continue;
      }
      const found = artifactObjectKey(artifact, bucket);
      if ('problem' in found) problems.push(`${field}[${i}]: ${found.problem}`);
    }
  }
  if (problems.length > 0) throw badRequest(`${versionLabel(record.functionId, record.versionId)} cannot be deployed: ${problems.join('; ')}`);
}

/** What to do when an NGC artifact has no credential to be fetched with. */
function missingNgcCredential(name: string, kind: 'MODEL' | 'RESOURCE'): string {
  return (
    `"${name}" comes from NGC, and this account has no registry credential for NGC (${NGC_MODELS_HOST}) listing ${kind}; add one with POST /v2/nvcf/registry-credentials ` +
    `{"registryHostname": "nvcr.io", "secret": {"name": "$oauthtoken", "value": "<NGC API key>"}, "artifactTypes": ["${kind}"]}, or add ${kind} to your NGC credential with PATCH`
  );
}

/** D1: deploys an INACTIVE version; the version becomes DEPLOYING (ACTIVE when no instance is required). */
export async function deployVersion(accountId: string, functionId: string, versionId: string, request: DeploymentRequest): Promise<DeploymentChange<DeployedVersion>> {
  const record = await requireOwnedVersion(accountId, functionId, versionId);
  const label = versionLabel(functionId, versionId);
  if (record.status === 'DEPLOYING' || record.status === 'ACTIVE') throw badRequest(`${label}: Status ${record.status}, use PUT to update current deployment`);
  if (record.status === 'ERROR') throw badRequest(`${label}: Function already has a deployment with errors; undeploy it (DELETE) before deploying again`);
  if (record.helmChart && !clusterName()) {
    throw badRequest(`${label}: a Helm function needs the EKS deployment (cdk deploy); the local stack runs container and model-only functions, so register its container image to try it here`);
  }
  const offers = await gpuOffers();
  const specifications = validateSpecifications(record, request.deploymentSpecifications, offers, clusterName() ?? LOCAL_CLUSTER_NAME);
  await requireDeploymentQuota(accountId, record, specifications);
  await checkArtifacts(record);

  const queues = await createQueues(record);
  const now = new Date().toISOString();
  const deployment: DeploymentRecord = { specifications, createdAt: now, updatedAt: now, ...queues };
  const deployed = await changeStatus({
    functionId,
    versionId,
    from: ['INACTIVE'],
    to: needsNoInstances(specifications) ? 'ACTIVE' : 'DEPLOYING',
    set: { deployment },
  });
  if (deployed) return { version: deployed as DeployedVersion, nodegroupError: await sizeGpuNodegroups(offers, specifications) };
  // Someone else changed the version meanwhile (a concurrent deploy, or a delete): answer as if we had come second.
  // The queues made for this attempt are left to the sweeper.
  const current = await requireOwnedVersion(accountId, functionId, versionId);
  throw badRequest(`${label}: Status ${current.status}, use PUT to update current deployment`);
}

/** D3: changes min/max instances and request concurrency of a DEPLOYING or ACTIVE version. */
export async function updateDeployment(accountId: string, functionId: string, versionId: string, request: DeploymentRequest): Promise<DeploymentChange<DeployedVersion>> {
  const label = versionLabel(functionId, versionId);
  // A worker may flip DEPLOYING to ACTIVE between our read and our write; read again and retry then.
  for (let attempt = 0; attempt < 3; attempt += 1) {
    const record = await requireOwnedVersion(accountId, functionId, versionId);
    if (record.status === 'INACTIVE' || !record.deployment) throw badRequest(`${label}: Status ${record.status}, the function version is not deployed; use POST to deploy it`);
    if (record.status === 'ERROR') throw badRequest(`${label}: Status ERROR, undeploy (DELETE) and deploy again to change a deployment with errors`);
    const offers = await gpuOffers();
    const validated = validateSpecifications(record, request.deploymentSpecifications, offers, clusterName() ?? LOCAL_CLUSTER_NAME);
    const specifications = mergeSpecificationUpdate(record.deployment.specifications, validated, request.deploymentSpecifications);
    await requireDeploymentQuota(accountId, record, specifications);

    const deployment: DeploymentRecord = { ...record.deployment, specifications, updatedAt: new Date().toISOString() };
    const to = record.status === 'DEPLOYING' && needsNoInstances(specifications) ? 'ACTIVE' : record.status;
    const updated = await changeStatus({ functionId, versionId, from: [record.status], to, set: { deployment } });
    if (updated) return { version: updated as DeployedVersion, nodegroupError: await sizeGpuNodegroups(offers, specifications) };
  }
  throw new Problem(409, `${label}: the deployment kept changing while it was being updated; retry`);
}

/**
 * D4: the version becomes INACTIVE and loses its deployment. Its queues are
 * marked as retired and the invocations waiting in them become ERRORED (the
 * sweeper drains them again and deletes them once quiet: an invocation that
 * read the version as ACTIVE just before may still send its message). Jobs
 * already running finish: the instances stop, and their workers finish what
 * they hold within their grace period and hand back the rest, which the
 * sweeper then errors. Undefined when the version was not deployed.
 */
export async function undeployVersion(accountId: string, functionId: string, versionId: string): Promise<DeploymentChange<FunctionVersionRecord> | undefined> {
  const record = await requireOwnedVersion(accountId, functionId, versionId);
  if (!isDeployed(record)) return undefined;
  const undeployed = await changeStatus({ functionId, versionId, from: DEPLOYED_STATUSES, to: 'INACTIVE', remove: ['deployment'] });
  if (!undeployed) return undefined;
  await retireQueues(record.deployment);
  return { version: undeployed, nodegroupError: await sizeGpuNodegroups(await gpuOffers(), record.deployment.specifications) };
}

/** Tags a deployment's queues as retired now (the sweeper's clock) and errors the invocations waiting in them. */
async function retireQueues(deployment: VersionQueues): Promise<void> {
  const tags = { [UNDEPLOYED_AT_TAG]: String(Date.now()) };
  await Promise.all([deployment.queueUrl, deployment.deadLetterQueueUrl].map((url) => tagQueue(url, tags)));
  const deadline = Date.now() + UNDEPLOY_DRAIN_SECONDS * 1000;
  await Promise.all([
    drainQueue(deployment.queueUrl, UNDEPLOYED_ERROR, { deadline }),
    drainQueue(deployment.deadLetterQueueUrl, deadLetteredError(maxReceiveCount()), { deadline }),
  ]);
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
  return { minSize: required, maxSize: Math.max(current.maxSize, required, 1), desiredSize: Math.max(current.desiredSize, required) };
}

/**
 * Sets the scaling of the nodegroups that `affected` specifications run on,
 * from the deployments the table holds now. Off EKS there is nothing to size.
 * Returns the first error instead of throwing: the change it follows is
 * already stored, and the sweeper sizes every nodegroup again each minute.
 */
async function sizeGpuNodegroups(offers: readonly GpuOffer[], affected: readonly GpuSpecification[]): Promise<unknown> {
  return sizeNodegroups(offers, affected.map((spec) => nodegroupFor(spec, offers)?.name).filter((name) => name !== undefined));
}

/** Sizes every GPU nodegroup for what is deployed (the sweeper's repair of a sizing that failed); returns the first error. */
export async function sizeAllGpuNodegroups(): Promise<unknown> {
  if (!clusterName()) return undefined;
  const offers = await gpuOffers();
  return sizeNodegroups(offers, offers.flatMap((offer) => offer.nodegroups.map((nodegroup) => nodegroup.name)));
}

async function sizeNodegroups(offers: readonly GpuOffer[], names: readonly string[]): Promise<unknown> {
  const cluster = clusterName();
  const targets = [...new Set(names)];
  if (!cluster || targets.length === 0) return undefined;
  let firstError: unknown;
  const specifications = (await listDeployedVersions()).flatMap((version) => version.deployment.specifications);
  for (const name of targets) {
    try {
      const nodegroup = await describeGpuNodegroup(cluster, name);
      if (!nodegroup) continue;
      const deployed = specifications.filter((spec) => nodegroupFor(spec, offers)?.name === name).reduce((sum, spec) => sum + spec.minInstances, 0);
      const scalingConfig = scalingFor(nodegroup.scaling, Math.max(nodegroup.minNodes, deployed));
      if (isDeepStrictEqual(scalingConfig, nodegroup.scaling)) continue;
      await eks().send(new UpdateNodegroupConfigCommand({ clusterName: cluster, nodegroupName: name, scalingConfig }));
    } catch (error) {
      firstError ??= error;
    }
  }
  return firstError;
}
