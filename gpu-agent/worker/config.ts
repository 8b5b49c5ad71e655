/**
 * The worker's configuration, read from the environment in one place and
 * validated with zod. The controller (or the local process runtime) sets these
 * on the worker beside each function container.
 */
import { randomUUID } from 'node:crypto';
import { hostname } from 'node:os';
import { Logger } from '@aws-lambda-powertools/logger';
import * as z from 'zod';
import { SERVICE_NAME } from '../../core/names';

/** The worker's structured logger. */
export const logger = new Logger({ serviceName: SERVICE_NAME, persistentKeys: { role: 'worker' } });

/** The worker's exit code when its container never passed the health check: a failed start, not a crash. */
export const WORKER_EXIT_UNHEALTHY = 3;

/** Environment variables the worker reads. The NVCF_* platform ones are also injected into the container (nvcf-api.md §4.1). */
export const WORKER_ENV = {
  functionId: 'NVCF_FUNCTION_ID',
  versionId: 'NVCF_FUNCTION_VERSION_ID',
  instanceId: 'NVCF_INSTANCE_ID',
  backend: 'NVCF_BACKEND',
  gpu: 'NVCF_GPU',
  instanceType: 'NVCF_INSTANCETYPE',
  region: 'NVCF_REGION',
  environment: 'NVCF_ENV',
  /** Base URL of the container, e.g. http://127.0.0.1:8000; default: loopback at the version's inferencePort. */
  inferenceBaseUrl: 'NVCF_WORKER_INFERENCE_URL',
  /** The version's queue; default: found by the version id. */
  queueUrl: 'NVCF_WORKER_QUEUE_URL',
  assetDir: 'NVCF_WORKER_ASSET_DIR',
  outputDir: 'NVCF_WORKER_OUTPUT_DIR',
  /** Jobs in flight at once; default: the deployment's maxRequestConcurrency. */
  maxRequestConcurrency: 'NVCF_WORKER_MAX_CONCURRENCY',
  /** Visibility a running job keeps on its message, renewed every third of it. */
  leaseSeconds: 'NVCF_WORKER_LEASE_SECONDS',
  /** How long the container may take to pass its health check. */
  healthTimeoutSeconds: 'NVCF_WORKER_HEALTH_TIMEOUT_SECONDS',
  heartbeatSeconds: 'NVCF_WORKER_HEARTBEAT_SECONDS',
  /** On SIGTERM, how long in-flight jobs may run before their messages are released. */
  graceSeconds: 'NVCF_WORKER_GRACE_SECONDS',
  /** Longest a single container call may take. */
  inferenceTimeoutSeconds: 'NVCF_WORKER_INFERENCE_TIMEOUT_SECONDS',
  receiveWaitSeconds: 'NVCF_WORKER_RECEIVE_WAIT_SECONDS',
  /** Least time between two progress writes of one job. */
  progressIntervalMs: 'NVCF_WORKER_PROGRESS_INTERVAL_MS',
  /** Port of the drain endpoint (GET /drain) on 0.0.0.0; 0 turns it off. */
  drainPort: 'NVCF_WORKER_DRAIN_PORT',
  /**
   * The one address besides loopback the drain endpoint answers: the node's, whence kubelet
   * calls preStop hooks (other pods could otherwise drain this worker). Unset: any address.
   */
  drainFrom: 'NVCF_WORKER_DRAIN_FROM',
  /** The version's secrets file this worker keeps current (shared with the container); unset: none. */
  secretsFile: 'NVCF_WORKER_SECRETS_FILE',
  /** How often the worker checks whether the version's secrets changed. */
  secretsPollSeconds: 'NVCF_WORKER_SECRETS_POLL_SECONDS',
} as const;

/** The variable that sets the worker's drain port (the local process runtime sets it to 0). */
export const WORKER_DRAIN_PORT_ENV = WORKER_ENV.drainPort;
/**
 * Default port of the drain endpoint: 8010 is reserved for the platform (nvcf-api.md §4.1), so
 * no function container listens on it. Kubernetes points the inference container's preStop
 * `httpGet` at `DRAIN_PATH` on this port, which keeps the container up while the worker drains.
 */
export const DEFAULT_DRAIN_PORT = 8010;
/** Path of the drain endpoint: GET starts the drain and answers 200 once it is over. */
export const DRAIN_PATH = '/drain';

const seconds = (fallback: number, max = 86_400) => z.coerce.number().int().min(1).max(max).default(fallback);
const optional = z.string().trim().min(1).optional();

const configSchema = z.object({
  functionId: z.uuid(),
  versionId: z.uuid(),
  instanceId: z.string().trim().min(1).default(() => `${hostname()}-${randomUUID().slice(0, 8)}`),
  backend: optional,
  gpu: optional,
  instanceType: optional,
  region: optional,
  environment: optional,
  inferenceBaseUrl: z.url().optional(),
  queueUrl: z.url().optional(),
  assetDir: z.string().min(1).default('/var/inf/inputAssets'),
  outputDir: z.string().min(1).default('/var/inf/response'),
  maxRequestConcurrency: z.coerce.number().int().min(1).max(16_384).optional(),
  leaseSeconds: seconds(60, 43_200),
  healthTimeoutSeconds: seconds(600),
  heartbeatSeconds: seconds(20, 60),
  graceSeconds: seconds(25, 3600),
  // SQS hides a received message for at most 12 h: a longer job's message would reappear while it runs.
  inferenceTimeoutSeconds: seconds(3600, 39_600),
  receiveWaitSeconds: z.coerce.number().int().min(0).max(20).default(20),
  progressIntervalMs: z.coerce.number().int().min(0).max(60_000).default(500),
  drainPort: z.coerce.number().int().min(0).max(65_535).default(DEFAULT_DRAIN_PORT),
  drainFrom: z.union([z.ipv4(), z.ipv6()]).optional(),
  secretsFile: z.string().min(1).optional(),
  // A PUT reaches running instances within a minute (nvcf-api.md §2.8): at most half of it waiting.
  secretsPollSeconds: seconds(30, 30),
});

export type WorkerConfig = z.infer<typeof configSchema>;

/** Reads and validates the worker's environment; throws naming every bad variable. */
export function readWorkerConfig(env: NodeJS.ProcessEnv = process.env): WorkerConfig {
  const raw = Object.fromEntries(
    Object.entries(WORKER_ENV).map(([key, name]) => [key, env[name] === '' ? undefined : env[name]]),
  );
  const result = configSchema.safeParse(raw);
  if (!result.success) {
    const problems = result.error.issues.map((issue) => `${WORKER_ENV[issue.path[0] as keyof typeof WORKER_ENV] ?? issue.path.join('.')}: ${issue.message}`);
    throw new Error(`invalid worker configuration: ${problems.join('; ')}`);
  }
  return result.data;
}
