/**
 * The environment of an instance's two processes, shared by the runtimes:
 * what the function container gets (nvcf-api.md §4.1) and what the gpu-agent
 * worker beside it reads (gpu-agent/worker/config.ts).
 */
import type { Workload } from './plan';
import { WORKER_ENV } from '../worker/config';

export interface PlatformContext {
  /** NVCF_BACKEND: `AWS` on EKS, `local` on one machine. */
  backend: string;
  /** NVCF_ENV, e.g. `prod` or `local`. */
  environment: string;
  region: string;
}

/** Variables injected into the function container: the platform's, then the function's own `containerEnvironment`. */
export function containerEnvironment(workload: Workload, platform: PlatformContext): Record<string, string> {
  const { version, spec } = workload;
  return {
    NVCF_BACKEND: platform.backend,
    NVCF_ENV: platform.environment,
    NVCF_FUNCTION_ID: version.functionId,
    NVCF_FUNCTION_NAME: version.name,
    NVCF_FUNCTION_VERSION_ID: version.versionId,
    NVCF_INSTANCETYPE: spec.instanceType,
    NVCF_NCA_ID: version.accountId,
    NVCF_REGION: platform.region,
    ...Object.fromEntries((version.containerEnvironment ?? []).map(({ key, value }) => [key, value])),
  };
}

/** Variables of the gpu-agent worker serving `workload`; the runtime adds where the container and the dirs are. */
export function workerEnvironment(workload: Workload, platform: PlatformContext): Record<string, string> {
  const { version, spec } = workload;
  return {
    [WORKER_ENV.functionId]: version.functionId,
    [WORKER_ENV.versionId]: version.versionId,
    [WORKER_ENV.backend]: platform.backend,
    [WORKER_ENV.environment]: platform.environment,
    [WORKER_ENV.region]: platform.region,
    [WORKER_ENV.gpu]: spec.gpu,
    [WORKER_ENV.instanceType]: spec.instanceType,
    [WORKER_ENV.maxRequestConcurrency]: String(spec.maxRequestConcurrency),
    ...(version.deployment ? { [WORKER_ENV.queueUrl]: version.deployment.queueUrl } : {}),
  };
}
