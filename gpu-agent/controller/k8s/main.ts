/**
 * Entry of `gpu-agent controller`: the shared Controller over the Kubernetes
 * runtime, one pass every NVCF_CONTROLLER_INTERVAL_SECONDS (default 10) until
 * SIGTERM/SIGINT, which lets the current pass finish.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { Logger } from '@aws-lambda-powertools/logger';
import * as z from 'zod';
import { AWS_BACKEND } from '../../../core/gpus';
import { DEFAULT_TRITON_IMAGE, ENV, SERVICE_NAME, type CpuArch } from '../../../core/names';
import { KubernetesRuntime, ownersChartLogin, ownersNgcPullLogin, ownersPullLogin } from '../kubernetes';
import { Controller } from '../reconcile';
import { ClientNodeApi } from './api';
import { HelmCli } from './helm';
import { agentEnvironment } from './objects';

const agentImagesSchema = z.partialRecord(z.enum(['amd64', 'arm64']), z.string().min(1));

/** NVCF_AGENT_IMAGES, set by the CDK app: image URI per CPU architecture. */
function parseAgentImages(text: string | undefined): Partial<Record<CpuArch, string>> {
  try {
    return agentImagesSchema.parse(JSON.parse(text ?? ''));
  } catch {
    throw new Error(`${ENV.agentImages} must be a JSON object from CPU architecture (amd64, arm64) to gpu-agent image URI, got ${JSON.stringify(text)}`);
  }
}

export async function main(env: NodeJS.ProcessEnv = process.env): Promise<number> {
  const logger = new Logger({ serviceName: SERVICE_NAME, persistentKeys: { role: 'controller' } });
  const region = env.AWS_REGION;
  if (!region) throw new Error('AWS_REGION is not set');
  const intervalSeconds = z.coerce.number().int().min(1).max(3600).default(10).parse(env.NVCF_CONTROLLER_INTERVAL_SECONDS || undefined);
  const runtime = new KubernetesRuntime({
    api: new ClientNodeApi(),
    helm: new HelmCli(env.NVCF_HELM || 'helm'),
    platform: { backend: AWS_BACKEND, environment: env.NVCF_ENV || 'prod', region },
    agentImages: parseAgentImages(env[ENV.agentImages]),
    // The controller runs on the system nodes, where Helm functions' workers run too.
    systemArch: process.arch === 'arm64' ? 'arm64' : 'amd64',
    agentEnv: agentEnvironment(env),
    tritonImage: env[ENV.tritonImage] || DEFAULT_TRITON_IMAGE,
    pullLogin: ownersPullLogin,
    chartLogin: ownersChartLogin,
    chartPullLogin: ownersNgcPullLogin,
  });
  const controller = new Controller(runtime, {
    applied: (workload) => logger.info('workload applied', { workload: workload.key, functionId: workload.version.functionId }),
    removed: (key) => logger.info('workload removed', { workload: key }),
    failed: (workload, failure) => logger.warn('version failed', { workload: workload.key, versionId: workload.version.versionId, failure }),
    error: (step, error) => logger.error('step failed; retried next pass', { step, error: error as Error }),
  });

  const stopping = new AbortController();
  process.once('SIGTERM', () => stopping.abort());
  process.once('SIGINT', () => stopping.abort());
  logger.info('controller started', { intervalSeconds: intervalSeconds });
  while (!stopping.signal.aborted) {
    await controller.reconcile().catch((error: Error) => logger.error('pass failed; retrying', { error }));
    await sleep(intervalSeconds * 1000, undefined, { signal: stopping.signal }).catch(() => undefined);
  }
  logger.info('controller stopped');
  return 0;
}
