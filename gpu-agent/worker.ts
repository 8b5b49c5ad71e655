/**
 * The gpu-agent worker: one per instance, beside the function container.
 *
 * 1. Reads its configuration (gpu-agent/worker/config.ts) and the version;
 *    with a secrets file configured, writes it and keeps it current (every
 *    30 s it rewrites the file when the version's secrets changed; secrets-file.ts).
 * 2. Records the instance STARTING and waits for the container's health
 *    check, reporting the last answer in the DEPLOYING version's healthInfo
 *    every 10 s; never healthy within the health timeout → the version
 *    becomes ERROR with `healthInfo`, and the worker exits 3.
 * 3. READY: heartbeats keep the Instances item fresh; while the version is
 *    DEPLOYING, each heartbeat flips it ACTIVE once READY instances reach the
 *    sum of minInstances.
 * 4. Long-polls the version's queue with up to maxRequestConcurrency jobs in
 *    flight (gpu-agent/worker/job.ts). After a failed container call it stops
 *    receiving until the health check passes again.
 * 5. SIGTERM/SIGINT, or GET /drain on the drain port: stops receiving, lets
 *    jobs finish within the grace period, hands the rest back to the queue,
 *    removes the instance, exits 0. The drain endpoint answers 200 once that
 *    is done, so a container whose preStop hook calls it stays up exactly as
 *    long as the worker needs it.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { GetQueueAttributesCommand, ReceiveMessageCommand } from '@aws-sdk/client-sqs';
import { sqs } from '../core/aws';
import { maxReceiveCount as configuredMaxReceiveCount } from '../core/config';
import { changeStatus, getVersion, reportHealthProgress, reportVersionFailure } from '../core/functions';
import { countReadyInstances, putHeartbeat, removeInstance, type InstanceState } from '../core/instances';
import type { FunctionVersionRecord, GpuSpecification, HealthInfo } from '../core/model';
import { SecretsRefresher } from './secrets-file';
import { logger, readWorkerConfig, WORKER_EXIT_UNHEALTHY, type WorkerConfig } from './worker/config';
import { waitForHealthy } from './worker/container';
import { serveDrain } from './worker/drain';
import { Job } from './worker/job';
import { sweepRequestDirs } from './worker/request-dirs';

/** How long a job handed back at shutdown may take to finish storing a result it already has. */
const RELEASE_WAIT_MS = 15_000;

function specificationOf(version: FunctionVersionRecord, config: WorkerConfig): GpuSpecification | undefined {
  const specifications = version.deployment?.specifications ?? [];
  return (
    specifications.find((spec) => (!config.gpu || spec.gpu === config.gpu) && (!config.instanceType || spec.instanceType === config.instanceType)) ??
    specifications[0]
  );
}

function queueUrlOf(config: WorkerConfig, version: FunctionVersionRecord): string {
  const url = config.queueUrl ?? version.deployment?.queueUrl;
  if (!url) throw new Error(`version ${config.versionId} has no queue: is it deployed?`);
  return url;
}

async function queueMaxReceiveCount(queueUrl: string): Promise<number> {
  const { Attributes } = await sqs().send(new GetQueueAttributesCommand({ QueueUrl: queueUrl, AttributeNames: ['RedrivePolicy'] }));
  const policy = Attributes?.RedrivePolicy ? (JSON.parse(Attributes.RedrivePolicy) as { maxReceiveCount?: number | string }) : undefined;
  return Number(policy?.maxReceiveCount) || configuredMaxReceiveCount();
}

export class Worker {
  private state: InstanceState = 'STARTING';
  private stopping = false;
  private containerSuspect = false;
  private versionActive = false;
  private readonly jobs = new Set<Job>();
  private readonly running = new Set<Promise<void>>();
  private readonly receiving = new AbortController();
  private heartbeatTimer: NodeJS.Timeout | undefined;
  private readonly createdAt = new Date().toISOString();
  private readonly stopped: Promise<void>;
  private markStopped!: () => void;
  /** Resolves when a stop is asked for: the receive loop must not wait for a free slot past it. */
  private readonly stopRequested: Promise<void>;

  constructor(
    private readonly config: WorkerConfig,
    private readonly version: FunctionVersionRecord,
  ) {
    this.stopped = new Promise((resolve) => (this.markStopped = resolve));
    this.stopRequested = new Promise((resolve) => this.receiving.signal.addEventListener('abort', () => resolve(), { once: true }));
  }

  private get concurrency(): number {
    return this.config.maxRequestConcurrency ?? specificationOf(this.version, this.config)?.maxRequestConcurrency ?? 1;
  }

  private get baseUrl(): string {
    return this.config.inferenceBaseUrl ?? `http://127.0.0.1:${this.version.inferencePort}`;
  }

  private get healthUrl(): string {
    const { health, inferencePort } = this.version;
    const base = health.port === inferencePort ? new URL(this.baseUrl) : Object.assign(new URL(this.baseUrl), { port: String(health.port) });
    return new URL(health.uri, base).toString();
  }

  /** Runs until stopped; resolves with the process exit code. */
  async run(): Promise<number> {
    try {
      return await this.serve();
    } finally {
      this.markStopped();
    }
  }

  private async serve(): Promise<number> {
    const queueUrl = queueUrlOf(this.config, this.version);
    // No job runs yet: whatever an earlier run left in the request directories is stale.
    await sweepRequestDirs(this.config);
    const maxReceiveCount = await queueMaxReceiveCount(queueUrl);
    await this.heartbeat();
    this.heartbeatTimer = setInterval(() => void this.heartbeat(), this.config.heartbeatSeconds * 1000);

    const failure = await waitForHealthy(this.healthUrl, this.version.health, this.config.healthTimeoutSeconds * 1000, () => this.stopping, (last, remainingMs) =>
      this.reportHealthProgress(last, remainingMs),
    );
    if (this.stopping) return this.shutdown();
    if (failure) {
      await this.reportUnhealthy(failure);
      return WORKER_EXIT_UNHEALTHY;
    }
    this.state = 'READY';
    await this.heartbeat();
    logger.info('instance ready', { instanceId: this.config.instanceId, queueUrl, concurrency: this.concurrency });

    const runtime = {
      config: this.config,
      version: this.version,
      queueUrl,
      maxReceiveCount,
      inferenceUrl: new URL(this.version.inferenceUrl, this.baseUrl).toString(),
      containerBaseUrl: this.baseUrl,
      stopping: this.receiving.signal,
      onContainerUnreachable: () => (this.containerSuspect = true),
    };
    while (!this.stopping) {
      const free = this.concurrency - this.running.size;
      if (free <= 0) {
        // Every slot busy: wait for one to free up, or for a stop, whose grace period starts at once.
        await Promise.race([...this.running, this.stopRequested]);
        continue;
      }
      if (this.containerSuspect) {
        await this.recheckHealth();
        continue;
      }
      try {
        const { Messages = [] } = await sqs().send(
          new ReceiveMessageCommand({
            QueueUrl: queueUrl,
            MaxNumberOfMessages: Math.min(10, free),
            WaitTimeSeconds: this.config.receiveWaitSeconds,
            VisibilityTimeout: this.config.leaseSeconds,
            MessageSystemAttributeNames: ['ApproximateReceiveCount'],
          }),
          { abortSignal: this.receiving.signal },
        );
        for (const message of Messages) this.start(new Job(runtime, message));
      } catch (error) {
        if (this.stopping) break;
        logger.warn('receive failed; retrying', { error: error as Error });
        await sleep(1000);
      }
    }
    return this.shutdown();
  }

  /** Asks the worker to stop (SIGTERM). */
  stop(): void {
    if (this.stopping) return;
    this.stopping = true;
    this.state = 'DRAINING';
    this.receiving.abort();
  }

  /** Stops the worker (if not yet) and resolves once it has stopped: jobs finished or handed back. */
  async drain(): Promise<void> {
    this.stop();
    await this.stopped;
  }

  private start(job: Job): void {
    this.jobs.add(job);
    const done = job.run().finally(() => {
      this.jobs.delete(job);
      this.running.delete(done);
    });
    this.running.add(done);
  }

  private async recheckHealth(): Promise<void> {
    this.state = 'STARTING';
    const failure = await waitForHealthy(this.healthUrl, this.version.health, this.config.healthTimeoutSeconds * 1000, () => this.stopping);
    if (failure) {
      logger.error('container unhealthy after a failed call', { failure });
      return;
    }
    this.containerSuspect = false;
    this.state = 'READY';
  }

  private async heartbeat(): Promise<void> {
    try {
      const spec = specificationOf(this.version, this.config);
      await putHeartbeat({
        versionId: this.config.versionId,
        instanceId: this.config.instanceId,
        functionId: this.config.functionId,
        state: this.state,
        inFlight: this.running.size,
        createdAt: this.createdAt,
        gpu: this.config.gpu ?? spec?.gpu,
        instanceType: this.config.instanceType ?? spec?.instanceType,
        backend: this.config.backend ?? spec?.backend,
        location: this.config.region,
      });
      if (this.state === 'READY' && !this.versionActive) await this.activateVersion();
    } catch (error) {
      logger.warn('heartbeat failed', { error: error as Error });
    }
  }

  /** DEPLOYING → ACTIVE once READY instances reach the deployment's minimum. */
  private async activateVersion(): Promise<void> {
    const version = await getVersion(this.config.functionId, this.config.versionId);
    if (version?.status !== 'DEPLOYING') {
      this.versionActive = version?.status === 'ACTIVE';
      return;
    }
    const required = (version.deployment?.specifications ?? []).reduce((sum, spec) => sum + spec.minInstances, 0);
    if ((await countReadyInstances(this.config.versionId)) < required) return;
    const activated = await changeStatus({ functionId: version.functionId, versionId: version.versionId, from: ['DEPLOYING'], to: 'ACTIVE' });
    if (activated) {
      this.versionActive = true;
      logger.info('version active', { versionId: version.versionId });
    }
  }

  /** healthInfo about this instance: its GPU, instance type and backend, and `error`. */
  private healthInfo(error: string): HealthInfo {
    const spec = specificationOf(this.version, this.config);
    const backend = spec?.backend ?? this.config.backend;
    const instanceType = spec?.instanceType ?? this.config.instanceType;
    return { gpu: spec?.gpu ?? this.config.gpu ?? 'unknown', ...(backend ? { backend } : {}), ...(instanceType ? { instanceType } : {}), error };
  }

  /** Not healthy yet: while DEPLOYING, the version's healthInfo shows the last health check and the time left. */
  private async reportHealthProgress(failure: string, remainingMs: number): Promise<void> {
    const { deployment } = this.version;
    if (!deployment) return;
    const left = `${Math.ceil(remainingMs / 1000)} s of the ${this.config.healthTimeoutSeconds} s health timeout left`;
    logger.info('container not healthy yet', { failure, remainingSeconds: Math.ceil(remainingMs / 1000) });
    const info = this.healthInfo(`instance ${this.config.instanceId} is not healthy yet (${left}): ${failure}`);
    await reportHealthProgress({ ...this.version, deployment }, info).catch((error: Error) => logger.warn('could not report health progress', { error }));
  }

  /** The container never passed its health check: the DEPLOYING version becomes ERROR with the reason. */
  private async reportUnhealthy(failure: string): Promise<void> {
    logger.error('container never became healthy', { failure });
    this.state = 'ERROR';
    clearInterval(this.heartbeatTimer);
    const version = await getVersion(this.config.functionId, this.config.versionId);
    if (version?.status === 'DEPLOYING' && version.deployment) {
      const info = this.healthInfo(`instance ${this.config.instanceId} did not become healthy within ${this.config.healthTimeoutSeconds} s: ${failure}`);
      await reportVersionFailure({ ...version, deployment: version.deployment }, info, ['DEPLOYING']);
    }
    await removeInstance(this.config.versionId, this.config.instanceId);
  }

  private async shutdown(): Promise<number> {
    const grace = sleep(this.config.graceSeconds * 1000, 'timeout' as const);
    if ((await Promise.race([Promise.allSettled(this.running), grace])) === 'timeout') {
      logger.warn('grace period over; handing unfinished jobs back', { jobs: this.jobs.size });
      const released = Promise.allSettled([...this.jobs].map((job) => job.release()));
      if ((await Promise.race([released, sleep(RELEASE_WAIT_MS, 'timeout' as const)])) === 'timeout') logger.error('jobs still busy after being handed back', { jobs: this.jobs.size });
    }
    clearInterval(this.heartbeatTimer);
    await removeInstance(this.config.versionId, this.config.instanceId);
    logger.info('worker stopped', { instanceId: this.config.instanceId });
    return 0;
  }
}

/** Entry of `gpu-agent worker`: runs the worker of this instance until SIGTERM. */
export async function main(): Promise<number> {
  const config = readWorkerConfig();
  const version = await getVersion(config.functionId, config.versionId);
  if (!version) throw new Error(`function ${config.functionId} has no version ${config.versionId}`);
  const worker = new Worker(config, version);
  // Before serving: the container may read its secrets as soon as it starts.
  const secrets = config.secretsFile ? new SecretsRefresher(config.functionId, config.versionId, config.secretsFile, config.secretsPollSeconds) : undefined;
  await secrets?.start();
  process.once('SIGTERM', () => worker.stop());
  process.once('SIGINT', () => worker.stop());
  const drain = config.drainPort > 0 ? await serveDrain(config.drainPort, () => worker.drain(), { allowedAddress: config.drainFrom }) : undefined;
  const code = await worker.run();
  await secrets?.stop();
  // Lets the drain endpoint's 200 reach the caller before the process exits.
  await drain?.close();
  return code;
}

