/**
 * The controller's `process` runtime, for the local stack: an instance is two
 * child processes on this machine, the function's command (from the image
 * map, in place of a container) and a gpu-agent worker beside it. Either one
 * exiting is a crashed pod: the other is stopped and the instance replaced on
 * the next pass. The controller decides how many instances run (`scale`).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { mkdir, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import * as z from 'zod';
import { formatLocalLogLine, localInstanceLogDir, localLogFileName } from '../../core/function-logs';
import { DEFAULT_TRITON_IMAGE, ENV } from '../../core/names';
import { fetchArtifacts } from '../fetch-artifacts';
import { deliverSecrets, SECRETS_FILE_NAME } from '../secrets-file';
import { WORKER_ENV, WORKER_EXIT_UNHEALTHY } from '../worker/config';
import { checkGrpcHealth } from '../worker/grpc-health';
import { containerEnvironment, workerEnvironment, type PlatformContext } from './environment';
import { workloadFingerprint, type Workload } from './plan';
import type { ObservedWorkload, Runtime } from './reconcile';

/** `NVCF_LOCAL_IMAGES`: which local command stands in for each container image. */
export const imageMapSchema = z.record(
  z.string().min(1),
  z.object({
    command: z.array(z.string()).min(1, 'must name the program to run'),
    env: z.record(z.string(), z.string()).optional(),
  }),
);
export type ImageMap = z.infer<typeof imageMapSchema>;

export type InstanceEvent =
  | { kind: 'ready' | 'stopped'; workload: Workload; instanceId: string; port: number }
  | { kind: 'started'; workload: Workload; instanceId: string; port: number; logDir: string }
  | { kind: 'crashed'; workload: Workload; instanceId: string; port: number; process: 'command' | 'worker'; exit: string; logDir: string }
  /** The controller asked for another number of instances: `from` run (or start), `to` will. */
  | { kind: 'scaling'; workload: Workload; from: number; to: number }
  /** Its worker gave up on the container's health check (and, while DEPLOYING, put the version in ERROR). */
  | { kind: 'unhealthy'; workload: Workload; instanceId: string; port: number; healthTimeoutSeconds: number; logDir: string };

export interface ProcessRuntimeOptions {
  /** The image map as it stands now: read whenever a workload is applied, so that it may change while the stack runs. */
  images: () => ImageMap;
  /** Working directory of the function commands (relative paths in the image map resolve from here). */
  imagesDir: string;
  /** How to start a worker: program and arguments, e.g. node with tsx and gpu-agent/main.ts worker. */
  workerCommand: string[];
  /** Environment of the workers beside their own configuration: AWS endpoints, table and bucket names. */
  workerBaseEnv: Record<string, string>;
  /** Per-instance directories (asset dir, large-output dir) go below it. */
  workDir: string;
  /** The instances' log files go below it, kept after they stop (core/function-logs.ts names them); default `<workDir>/logs`. */
  logsDir?: string;
  platform: PlatformContext;
  onEvent?: (event: InstanceEvent) => void;
  /** Visibility a job keeps on its message: how soon a crashed worker's job is retried. */
  leaseSeconds: number;
  /** Time an instance has to become healthy; also the worker's health timeout. */
  healthTimeoutSeconds?: number;
}

/*
 * Instances run in their own process groups (detached): a Ctrl-C in the terminal reaches only the
 * stack, which then stops each worker before its command, so in-flight jobs finish or are released.
 */

/** Instances are removed only once the demand has stayed lower this long (KEDA's cooldown on EKS), so bursts do not flap. */
const SCALE_DOWN_DELAY_MS = 30_000;
/** Crashes within this window that count towards a crash loop. */
const CRASH_WINDOW_MS = 120_000;
/** Crashes before an instance never became ready makes the workload failed. */
const CRASH_LOOP_THRESHOLD = 3;
/** The host variables a command may need to start at all; nothing else of this process leaks into it. */
const HOST_ENV = ['PATH', 'HOME', 'LANG', 'TMPDIR', 'SYSTEMROOT'];

interface Instance {
  id: string;
  port: number;
  dir: string;
  logDir: string;
  command: ChildProcess;
  worker: ChildProcess;
  ready: boolean;
  stopping?: Promise<void>;
}

interface Entry {
  workload: Workload;
  fingerprint: string;
  instances: Map<string, Instance>;
  /** Times of crashes of instances that never became ready. */
  crashes: number[];
  /** Instance counts asked for recently, newest last. */
  demand: { at: number; instances: number }[];
  /** No replacement starts before this time (back-off after crashes). */
  restartAfter: number;
  /** What stands in for the container: the image map's entry when the workload was applied. */
  command?: ImageMap[string];
  failure?: string;
}

/** What a workload runs: its container image, or Triton for a model-only function; undefined for a Helm chart. */
function imageOf({ version }: Workload): string | undefined {
  if (version.containerImage) return version.containerImage;
  return version.helmChart ? undefined : process.env[ENV.tritonImage] || DEFAULT_TRITON_IMAGE;
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

function alive(child: ChildProcess): boolean {
  return child.exitCode === null && child.signalCode === null;
}

function exited(child: ChildProcess): Promise<void> {
  return alive(child) ? new Promise((resolve) => child.once('exit', () => resolve())) : Promise.resolve();
}

/** Signals a process and waits for it, killing it after `graceMs`. */
async function terminate(child: ChildProcess, graceMs: number): Promise<void> {
  if (!alive(child)) return;
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
  await exited(child);
  clearTimeout(timer);
}

function describeExit(child: ChildProcess): string {
  return child.signalCode ? `was killed by ${child.signalCode}` : `exited with code ${child.exitCode}`;
}

export class ProcessRuntime implements Runtime {
  private readonly entries = new Map<string, Entry>();
  private readonly healthTimeoutSeconds: number;

  constructor(private readonly options: ProcessRuntimeOptions) {
    this.healthTimeoutSeconds = options.healthTimeoutSeconds ?? 120;
  }

  async observe(): Promise<Map<string, ObservedWorkload>> {
    return new Map([...this.entries].map(([key, entry]) => [key, { fingerprint: entry.fingerprint, ...(entry.failure ? { failure: entry.failure } : {}) }]));
  }

  /** A changed workload replaces its instances; `scale` starts the new ones. */
  async apply(workload: Workload): Promise<void> {
    const previous = this.entries.get(workload.key);
    const entry: Entry = { workload, fingerprint: workloadFingerprint(workload), instances: new Map(), demand: [], crashes: [], restartAfter: 0 };
    const image = imageOf(workload);
    entry.command = image === undefined ? undefined : this.options.images()[image];
    if (!image) entry.failure = 'Helm functions need the EKS deployment; the local stack runs container and model-only functions';
    else if (!entry.command) {
      const what = workload.version.containerImage ? 'container image' : 'image of model-only functions (NVIDIA Triton)';
      entry.failure = `${what} "${image}" is not in the local image map; add {"${image}": {"command": [...]}} to the file NVCF_LOCAL_IMAGES names, then undeploy and deploy again (no restart needed)`;
    }
    this.entries.set(workload.key, entry);
    if (previous) await Promise.all([...previous.instances.values()].map((instance) => this.stopInstance(previous, instance)));
  }

  async remove(key: string): Promise<void> {
    const entry = this.entries.get(key);
    if (!entry) return;
    this.entries.delete(key);
    await Promise.all([...entry.instances.values()].map((instance) => this.stopInstance(entry, instance)));
  }

  async scale(workload: Workload, instances: number): Promise<void> {
    const entry = this.entries.get(workload.key);
    if (!entry || entry.failure) return;
    entry.workload = workload;
    const now = Date.now();
    entry.demand = [...entry.demand.filter((demand) => now - demand.at < SCALE_DOWN_DELAY_MS), { at: now, instances }];
    instances = Math.max(...entry.demand.map((demand) => demand.instances));
    const running = [...entry.instances.values()].filter((instance) => !instance.stopping);
    const missing = instances - running.length;
    const starting = missing > 0 && Date.now() >= entry.restartAfter;
    if (missing < 0 || starting) this.options.onEvent?.({ kind: 'scaling', workload, from: running.length, to: instances });
    for (const extra of running.slice(instances).reverse()) void this.stopInstance(entry, extra);
    if (starting) await Promise.all(Array.from({ length: missing }, () => this.startInstance(entry)));
  }

  /** Stops every instance, letting workers finish or release their jobs. */
  async stopAll(): Promise<void> {
    await Promise.all([...this.entries.keys()].map((key) => this.remove(key)));
  }

  /** Kills every instance process at once, for a forced stop. */
  kill(): void {
    for (const entry of this.entries.values()) {
      for (const instance of entry.instances.values()) for (const child of [instance.worker, instance.command]) if (alive(child)) child.kill('SIGKILL');
    }
  }

  private async startInstance(entry: Entry): Promise<void> {
    const { workload } = entry;
    const { version } = workload;
    const image = entry.command!;
    const id = `local-${randomUUID().slice(0, 8)}`;
    const port = await freePort();
    const dir = join(this.options.workDir, 'instances', id);
    await Promise.all(['assets', 'outputs', 'secrets', 'config'].map((sub) => mkdir(join(dir, sub), { recursive: true })));
    // The init steps of a pod: the secrets file and the models and resources exist before the command starts;
    // the worker keeps the file current. `{config}` is the instance's /config.
    const secretsFile = join(dir, 'secrets', SECRETS_FILE_NAME);
    const configDir = join(dir, 'config');
    try {
      await deliverSecrets(version.functionId, version.versionId, secretsFile);
    } catch (error) {
      entry.failure = `writing the instance's secrets file failed: ${(error as Error).message}`;
      await rm(dir, { recursive: true, force: true });
      return;
    }
    try {
      if ((version.models?.length ?? 0) + (version.resources?.length ?? 0) > 0) await fetchArtifacts(version, configDir);
    } catch (error) {
      entry.failure = `downloading the version's models and resources failed: ${(error as Error).message}`;
      await rm(dir, { recursive: true, force: true });
      return;
    }

    const hostEnv = Object.fromEntries(HOST_ENV.flatMap((name) => (process.env[name] ? [[name, process.env[name]!]] : [])));
    const substitute = (text: string) => text.replaceAll('{port}', String(port)).replaceAll('{secrets}', secretsFile).replaceAll('{config}', configDir);
    const [program, ...args] = image.command.map(substitute);
    const imageEnv = Object.fromEntries(Object.entries(image.env ?? {}).map(([name, value]) => [name, substitute(value)]));
    const command = spawn(program!, [...args, ...(version.containerArgs ? version.containerArgs.split(/\s+/).filter(Boolean) : [])], {
      cwd: this.options.imagesDir,
      env: { ...hostEnv, ...imageEnv, ...containerEnvironment(workload, this.options.platform) },
      stdio: ['ignore', 'pipe', 'pipe'],
      detached: true,
    });
    const [workerProgram, ...workerArgs] = this.options.workerCommand;
    const worker = spawn(workerProgram!, workerArgs, {
      env: {
        ...process.env,
        ...this.options.workerBaseEnv,
        ...workerEnvironment(workload, this.options.platform),
        [WORKER_ENV.instanceId]: id,
        [WORKER_ENV.inferenceBaseUrl]: `http://127.0.0.1:${port}`,
        [WORKER_ENV.assetDir]: join(dir, 'assets'),
        [WORKER_ENV.outputDir]: join(dir, 'outputs'),
        [WORKER_ENV.secretsFile]: secretsFile,
        [WORKER_ENV.leaseSeconds]: String(this.options.leaseSeconds),
        // Instances here are stopped by signals; a drain endpoint would only fight over one port.
        [WORKER_ENV.drainPort]: '0',
        [WORKER_ENV.healthTimeoutSeconds]: String(this.healthTimeoutSeconds),
      },
      stdio: ['ignore', 'pipe', 'pipe'],
      detached: true,
    });
    // One file per process, the worker's apart from the container's: each line with its time and stream (core/function-logs.ts).
    const logDir = localInstanceLogDir(this.options.logsDir ?? join(this.options.workDir, 'logs'), version.functionId, version.versionId, id);
    await mkdir(logDir, { recursive: true });
    for (const [source, child] of [['container', command], ['worker', worker]] as const) {
      const log = createWriteStream(join(logDir, localLogFileName(source)), { flags: 'a' });
      for (const stream of ['stdout', 'stderr'] as const) {
        createInterface({ input: child[stream]!, crlfDelay: Infinity }).on('line', (line) => log.write(formatLocalLogLine(stream, line)));
      }
      // A program that cannot be started (ENOENT) reports here and exits; the exit handler below does the rest.
      child.once('error', (error) => log.write(formatLocalLogLine('stderr', String(error))));
    }

    const instance: Instance = { id, port, dir, logDir, command, worker, ready: false };
    entry.instances.set(id, instance);
    this.options.onEvent?.({ kind: 'started', workload, instanceId: id, port, logDir });
    command.once('exit', () => this.crashed(entry, instance, 'command'));
    worker.once('exit', () => this.crashed(entry, instance, 'worker'));
    void this.watchHealth(entry, instance);
  }

  private async watchHealth(entry: Entry, instance: Instance): Promise<void> {
    const { health } = entry.workload.version;
    const url = `http://127.0.0.1:${instance.port}${health.uri.startsWith('/') ? '' : '/'}${health.uri}`;
    const deadline = Date.now() + this.healthTimeoutSeconds * 1000;
    // A gRPC function answers grpc.health.v1 for the overall service, not an HTTP GET.
    const healthy = health.protocol === 'gRPC'
      ? async () => (await checkGrpcHealth('127.0.0.1', instance.port, 2000)) === undefined
      : async () => (await fetch(url, { signal: AbortSignal.timeout(2000) }).then((response) => response.status, () => 0)) === health.expectedStatusCode;
    while (!instance.stopping && alive(instance.command) && Date.now() < deadline) {
      if (await healthy()) {
        instance.ready = true;
        entry.crashes = [];
        this.options.onEvent?.({ kind: 'ready', workload: entry.workload, instanceId: instance.id, port: instance.port });
        return;
      }
      await new Promise((resolve) => setTimeout(resolve, 250));
    }
  }

  /** One of the instance's processes ended without being asked to: stop the other, count the crash, back off. */
  private crashed(entry: Entry, instance: Instance, which: 'command' | 'worker'): void {
    if (instance.stopping) return;
    const child = which === 'command' ? instance.command : instance.worker;
    const unhealthy = which === 'worker' && child.exitCode === WORKER_EXIT_UNHEALTHY;
    const exit = describeExit(child);
    const { workload } = entry;
    const { id: instanceId, port, logDir } = instance;
    this.options.onEvent?.(
      unhealthy
        ? { kind: 'unhealthy', workload, instanceId, port, healthTimeoutSeconds: this.healthTimeoutSeconds, logDir }
        : { kind: 'crashed', workload, instanceId, port, process: which, exit, logDir },
    );
    if (!instance.ready) {
      const now = Date.now();
      entry.crashes = [...entry.crashes.filter((time) => now - time < CRASH_WINDOW_MS), now];
      entry.restartAfter = now + Math.min(30_000, 1000 * 2 ** (entry.crashes.length - 1));
      if (entry.crashes.length >= CRASH_LOOP_THRESHOLD) {
        const what = unhealthy ? ` did not become healthy within ${this.healthTimeoutSeconds} s` : `'s ${which} ${exit} before the container became healthy`;
        entry.failure = `the instance${what}, ${entry.crashes.length} times in ${CRASH_WINDOW_MS / 1000} s; see the logs in ${logDir}`;
      }
    }
    void this.stopInstance(entry, instance, { crashed: true });
  }

  /** Its logs stay (they live apart from its working directory); a crashed instance was reported already and gets no 'stopped'. */
  private stopInstance(entry: Entry, instance: Instance, { crashed = false } = {}): Promise<void> {
    instance.stopping ??= (async () => {
      // The worker first: it finishes its jobs (or releases them) while the command still serves them.
      await terminate(instance.worker, 60_000);
      await terminate(instance.command, 5_000);
      entry.instances.delete(instance.id);
      await rm(instance.dir, { recursive: true, force: true }).catch(() => undefined);
      if (crashed) return;
      this.options.onEvent?.({ kind: 'stopped', workload: entry.workload, instanceId: instance.id, port: instance.port });
    })();
    return instance.stopping;
  }
}
