/**
 * The GPU capacity deployments may ask for ("offers"). On EKS (NVCF_CLUSTER_NAME
 * set) the offers are the cluster's nodegroups labelled `nvcf.io/gpu`; otherwise
 * they come from NVCF_GPUS (the local stack writes it from NVCF_LOCAL_GPUS), and
 * without either there is one `LOCAL` GPU. supportedGpus and clusterGroups list
 * them, and every deployment specification is checked against them.
 */
import { createHash } from 'node:crypto';
import { DescribeClusterCommand, DescribeNodegroupCommand, ListNodegroupsCommand } from '@aws-sdk/client-eks';
import * as z from 'zod';
import { eks } from './aws';
import { clusterName, gpusConfiguration } from './config';
import { GPU_OFFERS_CACHE_SECONDS } from './limits';
import { ENV, K8S, NODEGROUP_MIN_NODES_TAG } from './names';
import { describeIssues, ourWords } from './schema-messages';

export interface NodegroupScaling {
  minSize: number;
  maxSize: number;
  desiredSize: number;
}

/** An EKS managed nodegroup that carries one GPU type. */
export interface GpuNodegroup {
  name: string;
  gpu: string;
  instanceTypes: string[];
  scaling: NodegroupScaling;
  /** Nodes the nodegroup keeps whatever is deployed: its configured minNodes (tag NODEGROUP_MIN_NODES_TAG). */
  minNodes: number;
}

/** One GPU type and the instance types it comes in; the first instance type is the default. */
export interface GpuOffer {
  gpu: string;
  instanceTypes: string[];
  /** The nodegroups providing it (empty off EKS). */
  nodegroups: GpuNodegroup[];
}

/** The backend every offer reports in supportedGpus; deployments may name it or the cluster group. */
export const AWS_BACKEND = 'AWS';
/** Cluster (group) name reported when not running on EKS. */
export const LOCAL_CLUSTER_NAME = 'local';
/** What is offered when neither an EKS cluster nor NVCF_GPUS is configured. */
export const DEFAULT_GPU_OFFERS: readonly GpuOffer[] = [{ gpu: 'LOCAL', instanceTypes: ['local.gpu'], nodegroups: [] }];

// A Kubernetes label value, since on EKS the GPU name is the value of the nvcf.io/gpu node label.
const GPU_NAME = /^[A-Za-z0-9]([A-Za-z0-9_.-]{0,61}[A-Za-z0-9])?$/;

const configuredOffer = z.preprocess(
  // lib/ writes `name`; `gpu` is the documented spelling. Accept both.
  (entry) => (entry && typeof entry === 'object' && !('gpu' in entry) && 'name' in entry ? { ...entry, gpu: (entry as { name: unknown }).name } : entry),
  z.object({
    gpu: z.string().regex(GPU_NAME, 'must be a GPU name like "L40S" (letters, digits, "-", "_", ".", at most 63 characters)'),
    instanceTypes: z.array(z.string().min(1).max(128)).min(1, 'must list at least one instance type'),
  }),
);

const configuredOffers = z
  .array(configuredOffer)
  .min(1, 'must list at least one GPU')
  .refine((offers) => new Set(offers.map((offer) => offer.gpu)).size === offers.length, 'lists a GPU more than once');

/** Parses NVCF_GPUS, e.g. `[{"gpu":"L40S","instanceTypes":["g6e.xlarge"]}]`; throws naming what is wrong. */
export function parseGpuConfiguration(raw: string): GpuOffer[] {
  const example = `expected e.g. [{"gpu":"L40S","instanceTypes":["g6e.xlarge","g6e.2xlarge"]}]`;
  let value: unknown;
  try {
    value = JSON.parse(raw);
  } catch (error) {
    throw new Error(`${ENV.gpus} is not JSON (${(error as Error).message}); ${example}`);
  }
  const result = configuredOffers.safeParse(value, { error: ourWords });
  if (!result.success) throw new Error(`${ENV.gpus} is not valid: ${describeIssues(result.error)}; ${example}`);
  return result.data.map((offer) => ({ gpu: offer.gpu, instanceTypes: [...new Set(offer.instanceTypes)], nodegroups: [] }));
}

const cache = new Map<string, { expiresAt: number; value: Promise<unknown> }>();

/** Memoizes a lookup for GPU_OFFERS_CACHE_SECONDS; a failed lookup is not remembered. */
function cached<T>(key: string, load: () => Promise<T>): Promise<T> {
  const hit = cache.get(key);
  if (hit && hit.expiresAt > Date.now()) return hit.value as Promise<T>;
  const entry = { expiresAt: Date.now() + GPU_OFFERS_CACHE_SECONDS * 1000, value: load() };
  cache.set(key, entry);
  entry.value.catch(() => {
    if (cache.get(key) === entry) cache.delete(key);
  });
  return entry.value as Promise<T>;
}

/** A nodegroup as EKS describes it now (never cached), or undefined when it carries no GPU label. */
export async function describeGpuNodegroup(cluster: string, nodegroupName: string): Promise<GpuNodegroup | undefined> {
  const { nodegroup } = await eks().send(new DescribeNodegroupCommand({ clusterName: cluster, nodegroupName }));
  const gpu = nodegroup?.labels?.[K8S.gpuLabel];
  if (!nodegroup || !gpu) return undefined;
  return {
    name: nodegroupName,
    gpu,
    instanceTypes: nodegroup.instanceTypes ?? [],
    minNodes: Number(nodegroup.tags?.[NODEGROUP_MIN_NODES_TAG] ?? 0) || 0,
    scaling: {
      minSize: nodegroup.scalingConfig?.minSize ?? 0,
      maxSize: nodegroup.scalingConfig?.maxSize ?? 0,
      desiredSize: nodegroup.scalingConfig?.desiredSize ?? 0,
    },
  };
}

async function nodegroupOffers(cluster: string): Promise<GpuOffer[]> {
  const names: string[] = [];
  let nextToken: string | undefined;
  do {
    const page = await eks().send(new ListNodegroupsCommand({ clusterName: cluster, nextToken }));
    names.push(...(page.nodegroups ?? []));
    nextToken = page.nextToken;
  } while (nextToken);
  const nodegroups = (await Promise.all(names.sort().map((name) => describeGpuNodegroup(cluster, name)))).filter((ng) => ng !== undefined);
  const offers = new Map<string, GpuOffer>();
  for (const nodegroup of nodegroups) {
    const offer = offers.get(nodegroup.gpu) ?? { gpu: nodegroup.gpu, instanceTypes: [], nodegroups: [] };
    offer.instanceTypes = [...new Set([...offer.instanceTypes, ...nodegroup.instanceTypes])];
    offer.nodegroups.push(nodegroup);
    offers.set(nodegroup.gpu, offer);
  }
  return [...offers.values()].sort((a, b) => a.gpu.localeCompare(b.gpu));
}

/** The GPU offers, cached for about a minute. */
export function gpuOffers(): Promise<GpuOffer[]> {
  const cluster = clusterName();
  if (cluster) return cached(`eks:${cluster}`, () => nodegroupOffers(cluster));
  const configured = gpusConfiguration();
  if (configured) return cached(`config:${configured}`, async () => parseGpuConfiguration(configured));
  return Promise.resolve(DEFAULT_GPU_OFFERS.map((offer) => ({ ...offer, instanceTypes: [...offer.instanceTypes], nodegroups: [] })));
}

export interface GpuCluster {
  /** EKS cluster name, or `local`. */
  name: string;
  /** Kubernetes version, known on EKS only. */
  k8sVersion?: string;
}

/** The cluster that runs deployments, as clusterGroups reports it. */
export async function gpuCluster(): Promise<GpuCluster> {
  const cluster = clusterName();
  if (!cluster) return { name: LOCAL_CLUSTER_NAME };
  const k8sVersion = await cached(`eks-version:${cluster}`, async () => {
    const { cluster: described } = await eks().send(new DescribeClusterCommand({ name: cluster }));
    return described?.version;
  });
  return { name: cluster, k8sVersion };
}

/** A UUID that is always the same for the same seed (name-based, version 5 layout). */
export function stableUuid(seed: string): string {
  const bytes = createHash('sha1').update(`nvcf:${seed}`).digest().subarray(0, 16);
  bytes[6] = (bytes[6]! & 0x0f) | 0x50;
  bytes[8] = (bytes[8]! & 0x3f) | 0x80;
  const hex = bytes.toString('hex');
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}
