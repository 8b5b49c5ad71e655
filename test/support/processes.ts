/**
 * Child processes for end-to-end tests: the example echo container and
 * gpu-agent workers, each a real Node process running TypeScript through tsx.
 * Every process started here is remembered; `stopAllProcesses()` kills the
 * ones still alive (call it in afterAll/afterEach, it is safe to repeat).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

const ROOT = new URL('../../', import.meta.url).pathname;

/** Resolves *.localhost (fauxqs queue URLs) to loopback in the child processes. */
const LOCALHOST_DNS = join(ROOT, 'local', 'localhost-dns.mjs');

export interface TestProcess {
  child: ChildProcess;
  /** Everything the process wrote to stdout and stderr so far. */
  output(): string;
  /** Resolves with the exit code (or the signal name) once the process ended. */
  exited: Promise<number | string>;
  /** Sends a signal and waits for the exit (SIGKILL after `timeoutMs`). */
  stop(signal?: NodeJS.Signals, timeoutMs?: number): Promise<number | string>;
}

const started = new Set<TestProcess>();

/** Starts `node --import tsx <script> ...args` from the package root. */
export function startNode(script: string, args: string[], env: Record<string, string | undefined>): TestProcess {
  const child = spawn(process.execPath, ['--import', 'tsx', '--import', LOCALHOST_DNS, script, ...args], {
    cwd: ROOT,
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout!.on('data', (chunk: Buffer) => (output += chunk.toString()));
  child.stderr!.on('data', (chunk: Buffer) => (output += chunk.toString()));
  const exited = new Promise<number | string>((resolve) => child.once('exit', (code, signal) => resolve(code ?? signal ?? -1)));
  const proc: TestProcess = {
    child,
    output: () => output,
    exited,
    async stop(signal = 'SIGTERM', timeoutMs = 10_000) {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill(signal);
        const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
        await exited;
        clearTimeout(timer);
      }
      started.delete(proc);
      return exited;
    },
  };
  started.add(proc);
  void exited.then(() => started.delete(proc));
  return proc;
}

/** Kills every process started by this module that is still running. */
export async function stopAllProcesses(): Promise<void> {
  await Promise.all([...started].map((proc) => proc.stop('SIGKILL')));
}

/** A TCP port nobody listens on right now. */
export async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  await new Promise((resolve) => server.close(resolve));
  return port;
}

/** Polls `check` every 50 ms until it returns a value other than undefined/false, or fails after `timeoutMs`. */
export async function waitFor<T>(what: string, check: () => Promise<T | undefined | false> | T | undefined | false, timeoutMs = 15_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value !== undefined && value !== false) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(50);
  }
}

export interface EchoServer extends TestProcess {
  port: number;
  url: string;
}

/** Starts examples/echo/server.ts on `port` (a free one by default) and waits until /health answers. */
export async function startEcho(options: { port?: number; env?: Record<string, string> } = {}): Promise<EchoServer> {
  const port = options.port ?? (await freePort());
  const proc = startNode('examples/echo/server.ts', [String(port)], options.env ?? {});
  const url = `http://127.0.0.1:${port}`;
  await waitFor(`echo server on port ${port}`, async () => {
    if (proc.child.exitCode !== null) throw new Error(`echo server exited: ${proc.output()}`);
    return fetch(`${url}/health`).then((response) => response.ok, () => false);
  });
  return Object.assign(proc, { port, url });
}

/** Starts `gpu-agent/main.ts worker` with the given environment (stack env + worker configuration). */
export function startWorker(env: Record<string, string>): TestProcess {
  return startNode('gpu-agent/main.ts', ['worker'], env);
}

/**
 * A test worker's environment: the stack's, the version and container it
 * serves, directories of its own under `dir` (as each pod has), and short
 * leases, heartbeats and polls so that tests see redeliveries quickly.
 */
export function testWorkerEnv(options: { stackEnv: Record<string, string>; version: { functionId: string; versionId: string }; containerUrl: string; dir: string }): Record<string, string> {
  return {
    ...options.stackEnv,
    NVCF_FUNCTION_ID: options.version.functionId,
    NVCF_FUNCTION_VERSION_ID: options.version.versionId,
    NVCF_WORKER_INFERENCE_URL: options.containerUrl,
    NVCF_WORKER_ASSET_DIR: join(options.dir, 'assets'),
    NVCF_WORKER_OUTPUT_DIR: join(options.dir, 'outputs'),
    NVCF_WORKER_DRAIN_PORT: '0',
    NVCF_WORKER_LEASE_SECONDS: '2',
    NVCF_WORKER_HEALTH_TIMEOUT_SECONDS: '10',
    NVCF_WORKER_HEARTBEAT_SECONDS: '1',
    NVCF_WORKER_RECEIVE_WAIT_SECONDS: '1',
    POWERTOOLS_LOG_LEVEL: 'WARN',
  };
}
