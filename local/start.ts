/**
 * `npm start`: the whole platform on one machine. Emulators for DynamoDB, SQS
 * and S3 on loopback, the Lambda handlers behind an in-process API Gateway on
 * http://127.0.0.1:$PORT, and the gpu-agent controller with the `process`
 * runtime. The interface (variables, output, signals) is DESIGN.md's
 * "Local embedded stack".
 */
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync, statSync } from 'node:fs';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { API_KEY_PREFIX, registerApiKey } from '../core/api-keys';
import { resetAwsClients } from '../core/aws';
import { listDeployedVersions } from '../core/deployments';
import { parseGpuConfiguration } from '../core/gpus';
import { installationQuotas } from '../core/quota-settings';
import type { FunctionVersionRecord } from '../core/model';
import { ENV, queueNameOf } from '../core/names';
import { sweepQueues } from '../core/sweeper';
import { matchRoute } from '../core/routes';
import { describeIssues, ourWords } from '../core/schema-messages';
import { imageMapSchema, ProcessRuntime, type ImageMap, type InstanceEvent } from '../gpu-agent/controller/process-runtime';
import { isHalted } from '../gpu-agent/controller/plan';
import { Controller } from '../gpu-agent/controller/reconcile';
import { InvocationService } from '../invocation/service';
import { readSettings } from '../invocation/settings';
import { DEFAULT_LOCAL_PORT, publishLocalStack } from './discovery';
import { startEmulators } from './emulators';
import { LocalGateway, type GatewayRequest } from './gateway';
import { serveGateway } from './http-server';
import { restoreQueues, saveQueues } from './queue-snapshot';
import { createLocalResources, localResourceEnv, localSecretsKeyEnv } from './resources';

const ROOT = resolve(dirname(new URL(import.meta.url).pathname), '..');
/** The account NVCF_API_KEY belongs to. */
const LOCAL_ACCOUNT_ID = 'local';
const RECONCILE_INTERVAL_MS = 1000;
/** The sweeper runs every minute on AWS; here more often, so that a terminal shows cleanups soon. */
const SWEEP_INTERVAL_MS = 10_000;
/** Visibility a job keeps on its message while its worker lives: how soon a crashed worker's job runs again. */
const LEASE_SECONDS = 10;
const DEFAULT_HEALTH_TIMEOUT_SECONDS = 120;

class ConfigError extends Error {}

function say(message: string): void {
  process.stdout.write(`${new Date().toISOString().slice(11, 19)}  ${message}\n`);
}

function readPort(): number {
  const raw = process.env.PORT || String(DEFAULT_LOCAL_PORT);
  const port = Number(raw);
  if (!Number.isInteger(port) || port < 1 || port > 65535) throw new ConfigError(`PORT must be a TCP port from 1 to 65535, got "${raw}"`);
  return port;
}

function parseImageMap(path: string, text: string): ImageMap {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (error) {
    throw new ConfigError(`NVCF_LOCAL_IMAGES: cannot read ${path} as JSON: ${(error as Error).message}`);
  }
  const parsed = imageMapSchema.safeParse(raw, { error: ourWords });
  if (!parsed.success) {
    throw new ConfigError(`NVCF_LOCAL_IMAGES: ${path} is not an image map: ${describeIssues(parsed.error)}; expected {"<containerImage>": {"command": ["..."], "env": {}}}`);
  }
  return parsed.data;
}

function readImageMapFile(path: string): ImageMap {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (error) {
    throw new ConfigError(`NVCF_LOCAL_IMAGES: cannot read ${path}: ${(error as Error).message}`);
  }
  return parseImageMap(path, text);
}

/**
 * The image map NVCF_LOCAL_IMAGES names, read at start (a broken one stops the
 * start) and again whenever the file changes; a change that breaks it is
 * reported and the map read before is kept.
 */
function watchedImageMap(): { path: string; current: () => ImageMap } {
  const path = resolve(process.env.NVCF_LOCAL_IMAGES || join(ROOT, 'examples', 'local-images.json'));
  const modified = () => statSync(path, { throwIfNoEntry: false })?.mtimeMs;
  let images = readImageMapFile(path);
  let readAt = modified();
  return {
    path,
    current: () => {
      const now = modified();
      if (now === readAt) return images;
      readAt = now;
      try {
        images = readImageMapFile(path);
        say(`image map re-read from ${path}`);
      } catch (error) {
        say(`${(error as Error).message}; keeping the image map read before`);
      }
      return images;
    },
  };
}

/** NVCF_LOCAL_LOG_LEVEL: `info` prints what changes what runs; `debug` also each invocation answered. */
function readLogLevel(): 'info' | 'debug' {
  const raw = process.env.NVCF_LOCAL_LOG_LEVEL?.trim().toLowerCase() || 'info';
  if (raw !== 'info' && raw !== 'debug') throw new ConfigError(`NVCF_LOCAL_LOG_LEVEL must be info or debug, got "${process.env.NVCF_LOCAL_LOG_LEVEL}"`);
  return raw;
}

/** NVCF_LOCAL_HEALTH_TIMEOUT_SECONDS: how long an instance has to pass its health check. */
function readHealthTimeout(): number {
  const raw = process.env.NVCF_LOCAL_HEALTH_TIMEOUT_SECONDS?.trim() || String(DEFAULT_HEALTH_TIMEOUT_SECONDS);
  const seconds = Number(raw);
  if (!Number.isInteger(seconds) || seconds < 1 || seconds > 3600) throw new ConfigError(`NVCF_LOCAL_HEALTH_TIMEOUT_SECONDS must be a whole number of seconds from 1 to 3600, got "${raw}"`);
  return seconds;
}

/**
 * NVCF_LOCAL_GPUS, as NVCF_GPUS JSON (`[{"gpu":"L40S","instanceTypes":["g6e.xlarge"]}]`)
 * or as a short list `L40S:g6e.xlarge|g6e.2xlarge,A10G` (a GPU without types gets `local.<gpu>`).
 */
function readGpus(): string | undefined {
  const raw = process.env.NVCF_LOCAL_GPUS?.trim();
  if (!raw) return undefined;
  const json = raw.startsWith('[')
    ? raw
    : JSON.stringify(
        raw.split(',').map((entry) => {
          const [gpu = '', types] = entry.trim().split(':');
          return { gpu, instanceTypes: types ? types.split('|') : [`local.${gpu.toLowerCase()}`] };
        }),
      );
  try {
    parseGpuConfiguration(json);
  } catch (error) {
    throw new ConfigError(`NVCF_LOCAL_GPUS: ${(error as Error).message.replace(`${ENV.gpus} `, '')} (or a list such as L40S:g6e.xlarge|g6e.2xlarge,A10G)`);
  }
  return json;
}

/** NVCF_QUOTAS (core/quotas.ts), checked before anything starts: the handlers read it from this process's environment. */
function checkQuotas(): void {
  try {
    installationQuotas();
  } catch (error) {
    throw new ConfigError((error as Error).message);
  }
}

/** NVCF_API_KEY, else the key generated on an earlier start with the same NVCF_DATA_DIR, else a new one. */
async function localApiKey(dataDir: string | undefined): Promise<string> {
  const given = process.env.NVCF_API_KEY?.trim();
  if (given) {
    if (!given.startsWith(API_KEY_PREFIX) || given.length < API_KEY_PREFIX.length + 32) {
      throw new ConfigError(`NVCF_API_KEY must start with "${API_KEY_PREFIX}" and carry at least 32 more characters`);
    }
    return given;
  }
  const file = dataDir ? join(dataDir, 'api-key') : undefined;
  if (file && existsSync(file)) return (await readFile(file, 'utf8')).trim();
  const key = `${API_KEY_PREFIX}${randomBytes(32).toString('base64url')}`;
  if (file) await writeFile(file, key, { mode: 0o600 });
  return key;
}

const LIFECYCLE_ROUTES: Record<string, (json: any, path: string) => string> = {
  F1: (json) => `function created: ${json.function.name} (${json.function.id}, version ${json.function.versionId})`,
  F2: (json) => `function version created: ${json.function.name} (${json.function.id}, version ${json.function.versionId})`,
  F7: (_, path) => {
    const [functionId, , versionId] = path.split('/').slice(-3);
    return `function version deleted: ${functionId} version ${versionId}`;
  },
  S1: (_, path) => {
    const [functionId, , versionId] = path.split('/').slice(-3);
    return `secrets replaced: ${functionId} version ${versionId} (running instances see them within a minute)`;
  },
  D1: (json) => `deployment requested: ${json.deployment.functionId} version ${json.deployment.functionVersionId}`,
  D3: (json) => `deployment updated: ${json.deployment.functionId} version ${json.deployment.functionVersionId}`,
  D4: (json) => `undeployed: ${json.function.id} version ${json.function.versionId}`,
  A1: (json) => `asset created: ${json.assetId}`,
};

/** One line for each request that changes what runs, as the user sees it in the terminal. */
function describeRequest(request: GatewayRequest, status: number, body: Buffer): string | undefined {
  const match = matchRoute(request.method, request.path);
  if (!match || 'allowed' in match || status >= 300) return undefined;
  const describe = LIFECYCLE_ROUTES[match.route.ref];
  if (!describe) return undefined;
  try {
    return describe(body.length ? JSON.parse(body.toString('utf8')) : {}, request.path);
  } catch {
    return undefined;
  }
}

function describeInstance(event: InstanceEvent): string {
  const { version, spec } = event.workload;
  if (event.kind === 'scaling') {
    const why = isHalted(event.workload) ? 'the version is ERROR' : `for its queue; min ${spec.minInstances}, max ${spec.maxInstances}`;
    return `scaling ${version.name} version ${version.versionId} (${spec.gpu}) from ${event.from} to ${event.to} instance(s), ${why}`;
  }
  const what = `instance ${event.instanceId} of ${version.name} version ${version.versionId} (${spec.gpu}, port ${event.port})`;
  if (event.kind === 'crashed') return `${what} crashed: its ${event.process} ${event.exit}; logs in ${event.logDir}`;
  if (event.kind === 'unhealthy') return `${what} did not become healthy within ${event.healthTimeoutSeconds} s; logs in ${event.logDir}`;
  if (event.kind === 'started') return `${what} started; logs in ${event.logDir} (or GET /v2/nvcf/logs/functions/${version.functionId}/versions/${version.versionId})`;
  return `${what} ${event.kind}`;
}

/** Deployed versions, printing a line whenever one changes status, and each health report of a DEPLOYING one. */
function watchedVersions(): () => Promise<FunctionVersionRecord[]> {
  const known = new Map<string, string>();
  return async () => {
    const versions = await listDeployedVersions();
    const seen = new Set<string>();
    for (const version of versions) {
      seen.add(version.versionId);
      const { healthInfo, healthProgress } = version.deployment;
      const health =
        version.status === 'ERROR'
          ? `: ${healthInfo?.map((info) => info.error).join('; ') ?? 'no details'}`
          : version.status === 'DEPLOYING' && healthProgress
            ? `: ${healthProgress.error}`
            : '';
      const line = `deployment ${version.status}: ${version.name} (${version.functionId} version ${version.versionId})${health}`;
      if (known.get(version.versionId) === line) continue;
      known.set(version.versionId, line);
      say(line);
    }
    for (const versionId of known.keys()) if (!seen.has(versionId)) known.delete(versionId);
    return versions;
  };
}

async function main(): Promise<void> {
  const port = readPort();
  const { current: images, path: imagesPath } = watchedImageMap();
  const gpus = readGpus();
  const healthTimeoutSeconds = readHealthTimeout();
  const logLevel = readLogLevel();
  checkQuotas();
  const dataDir = process.env.NVCF_DATA_DIR ? resolve(process.env.NVCF_DATA_DIR) : undefined;
  if (dataDir) await mkdir(dataDir, { recursive: true });
  process.env.POWERTOOLS_LOG_LEVEL ??= 'WARN';

  const emulators = await startEmulators({ dataDir });
  // Secrets sealed with a key kept beside the data survive restarts; without NVCF_DATA_DIR the key goes with the state.
  const keyDir = dataDir ?? (await mkdtemp(join(tmpdir(), 'nvcf-local-key-')));
  const stackEnv: Record<string, string> = { ...emulators.env, ...localResourceEnv(), ...(await localSecretsKeyEnv(keyDir)), ...(gpus ? { [ENV.gpus]: gpus } : {}) };
  Object.assign(process.env, stackEnv);
  resetAwsClients();
  await createLocalResources(stackEnv);
  const queueSnapshot = dataDir ? join(dataDir, 'sqs-messages.json') : undefined;
  if (queueSnapshot) {
    const restored = await restoreQueues(queueSnapshot);
    if (restored > 0) say(`restored ${restored} queued invocation(s) from ${dataDir}`);
  }
  const apiKey = await localApiKey(dataDir);
  await registerApiKey(apiKey, LOCAL_ACCOUNT_ID);

  const gateway = new LocalGateway();
  const handle = gateway.handle.bind(gateway);
  gateway.handle = async (request) => {
    const response = await handle(request);
    const line = describeRequest(request, response.statusCode, response.body);
    if (line) say(line);
    return response;
  };
  // Workers attach over loopback; direct invocation answers on invocation.localhost:$PORT and {functionId}.invocation.localhost:$PORT.
  const invocationService = new InvocationService(readSettings(process.env, { attachHost: '127.0.0.1', attachPort: 0, invocationDomain: 'localhost' }));
  await invocationService.start();
  const server = await serveGateway(gateway, port, (error) => say(`internal error: ${String(error)}`), invocationService);
  if (logLevel === 'debug') {
    server.server.on('request', (request: IncomingMessage, response: ServerResponse) => {
      if (!invocationService.handles(request)) return;
      const startedAt = Date.now();
      response.once('close', () => {
        const ending = response.writableFinished ? `answered ${response.statusCode}` : `left by its caller after ${response.headersSent ? response.statusCode : 'no answer'}`;
        say(`invocation ${request.method} ${request.url}: ${ending} in ${Date.now() - startedAt} ms`);
      });
    });
  }

  const workDir = await mkdtemp(join(tmpdir(), 'nvcf-local-'));
  // Instance logs outlive the stack with NVCF_DATA_DIR, like the rest of its state; the logs route reads them from here.
  const logsDir = dataDir ? join(dataDir, 'logs') : join(workDir, 'logs');
  process.env[ENV.localLogsDir] = logsDir;
  const runtime = new ProcessRuntime({
    images,
    imagesDir: dirname(imagesPath),
    workerCommand: [process.execPath, '--import', 'tsx', '--import', join(ROOT, 'local', 'localhost-dns.mjs'), join(ROOT, 'gpu-agent', 'main.ts'), 'worker'],
    workerBaseEnv: stackEnv,
    workDir,
    logsDir,
    platform: { backend: 'local', environment: 'local', region: stackEnv.AWS_REGION! },
    onEvent: (event) => say(describeInstance(event)),
    leaseSeconds: LEASE_SECONDS,
    healthTimeoutSeconds,
  });
  const controller = new Controller(runtime, {
    failed: (workload, failure) => say(`deployment ERROR: ${workload.version.name} (${workload.version.versionId}): ${failure}`),
    error: (step, error) => say(`controller: ${step} failed, retrying: ${(error as Error).message}`),
  }, watchedVersions());

  let stopping = false;
  /** Runs `step` every `intervalMs` until the stack stops; `current()` is the run in progress. */
  const every = (intervalMs: number, step: () => Promise<void>) => {
    let running: Promise<void> = Promise.resolve();
    void (async () => {
      while (!stopping) {
        running = step();
        await running;
        await new Promise((resolve) => setTimeout(resolve, intervalMs));
      }
    })();
    return () => running;
  };
  const reconciling = every(RECONCILE_INTERVAL_MS, () => controller.reconcile().catch((error) => say(`controller: ${(error as Error).message}`)));
  const sweeping = every(SWEEP_INTERVAL_MS, async () => {
    try {
      const report = await sweepQueues();
      if (report.errored > 0) say(`sweeper: ${report.errored} invocation(s) that can no longer run marked errored`);
      for (const url of report.deleted) say(`sweeper: queue ${queueNameOf(url)} deleted`);
    } catch (error) {
      say(`sweeper: ${(error as Error).message}`);
    }
  });
  const unpublish = await publishLocalStack(stackEnv, { url: server.url, apiKey });

  say(`API key (account "${LOCAL_ACCOUNT_ID}"): ${apiKey}`);
  say(`images from ${imagesPath}${dataDir ? `; state in ${dataDir}` : '; state in memory'}`);
  say(`NVCF local stack ready at ${server.url} (pid ${process.pid}; SIGINT or SIGTERM to it, or to npm, stops it)`);

  const shutdown = async (signal: string) => {
    stopping = true;
    say(`${signal}: stopping instances (a second signal stops at once)`);
    await Promise.all([reconciling(), sweeping()]);
    // Calls still waiting become durable (their outcome is stored); then the instances stop.
    await invocationService.drain(5);
    await runtime.stopAll();
    if (queueSnapshot) {
      const saved = await saveQueues(queueSnapshot, LEASE_SECONDS);
      if (saved > 0) say(`saved ${saved} queued invocation(s) to ${dataDir}`);
    }
    await server.close();
    await emulators.stop();
    await unpublish();
    await rm(workDir, { recursive: true, force: true });
    if (!dataDir) await rm(keyDir, { recursive: true, force: true });
    say('stopped');
  };
  let stopRequestedAt = 0;
  const stop = (reason: string) => {
    if (stopRequestedAt > 0) {
      // A signal to the process group reaches this process twice (directly, and relayed by npm): only a later one forces.
      if (Date.now() - stopRequestedAt < 1000) return;
      say('stopping now');
      runtime.kill();
      process.exit(130);
    }
    stopRequestedAt = Date.now();
    shutdown(reason).then(
      () => process.exit(0),
      (error) => {
        process.stderr.write(`shutdown failed: ${String(error)}\n`);
        process.exit(1);
      },
    );
  };
  for (const signal of ['SIGINT', 'SIGTERM'] as const) process.on(signal, () => stop(signal));
  // A supervisor killed without a chance to relay a signal (SIGKILL to npm) leaves this process to init: stop as if told to.
  const parent = process.ppid;
  setInterval(() => {
    if (process.ppid !== parent && !stopping) stop(`parent process ${parent} exited`);
  }, 1000).unref();
}

main().catch((error) => {
  process.stderr.write(error instanceof ConfigError ? `${error.message}\n` : `npm start failed: ${(error as Error).stack ?? String(error)}\n`);
  process.exit(error instanceof ConfigError ? 2 : 1);
});
