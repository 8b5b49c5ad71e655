/**
 * `npm start` as a user runs it, for the end-to-end tests: its own port, its
 * own temporary directory (TMPDIR, where the discovery file lets the admin
 * CLI and `nvcf` find it), its output kept, and a stop that leaves no process
 * behind. The local stack is started and stopped as a user does it; every
 * test file that needs it starts one of its own.
 */
import { execFile, spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { freePort, waitFor } from './processes';

export const ROOT = new URL('../../', import.meta.url).pathname;
const run = promisify(execFile);

export interface ApiAnswer {
  status: number;
  headers: Headers;
  text: string;
  /** The body as JSON (undefined when empty or not JSON). */
  json: any;
}

export interface NpmStart {
  url: string;
  port: number;
  /** The stack's own process, as its ready line prints it. */
  pid: number;
  /** Its temporary directory, removed by stop(). */
  workDir: string;
  /** The environment it runs with, for the commands a test runs beside it (npm run keys, nvcf). */
  env: NodeJS.ProcessEnv;
  /** Everything it printed so far. */
  output(): string;
  /** An API request with `key`; an object body goes as JSON. */
  call(key: string, method: string, path: string, body?: unknown, headers?: Record<string, string>): Promise<ApiAnswer>;
  /** `npm run keys -- <args>`, the admin command, against this stack; a failure rejects with its exit code and stderr. */
  admin(...args: string[]): Promise<{ stdout: string; stderr: string }>;
  /** `npm run keys -- create --account <account>`: the account's first key, from the admin command. */
  adminKey(account: string): Promise<string>;
  /** SIGTERM to the stack, as a user stops it; whatever is left of its process group is killed after 60 s. */
  stop(): Promise<void>;
}

/** Whether a process (or, for a negative pid, a process group) still exists. */
export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/**
 * Starts `npm start` with `env` over this process's environment (the
 * shipped image map and no data directory unless `env` names them) and
 * waits for its ready line.
 */
export async function startNpmStart(env: Record<string, string> = {}): Promise<NpmStart> {
  const workDir = await mkdtemp(join(tmpdir(), 'nvcf-e2e-'));
  const port = await freePort();
  const stackEnv: NodeJS.ProcessEnv = { ...process.env, NVCF_LOCAL_IMAGES: '', NVCF_DATA_DIR: '', ...env, PORT: String(port), TMPDIR: workDir };
  const child = spawn('npm', ['start', '--silent'], { cwd: ROOT, env: stackEnv, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
  let output = '';
  child.stdout!.on('data', (chunk: Buffer) => (output += chunk.toString()));
  child.stderr!.on('data', (chunk: Buffer) => (output += chunk.toString()));
  const group = -child.pid!;
  const stop = async () => {
    const pid = ready?.[2] ? Number(ready[2]) : undefined;
    if (pid && alive(pid)) process.kill(pid, 'SIGTERM');
    else if (alive(group)) process.kill(group, 'SIGTERM');
    await waitFor('npm start to stop', () => !alive(group), 60_000).catch(() => alive(group) && process.kill(group, 'SIGKILL'));
    await rm(workDir, { recursive: true, force: true });
  };
  let ready: RegExpExecArray | undefined;
  try {
    ready = await waitFor(
      'npm start to print that the API is ready',
      () => {
        if (child.exitCode !== null) throw new Error(`npm start exited ${child.exitCode}:\n${output}`);
        return /NVCF local stack ready at (http:\/\/127\.0\.0\.1:\d+) \(pid (\d+)/.exec(output) ?? undefined;
      },
      60_000,
    );
  } catch (error) {
    await stop();
    throw error;
  }
  const url = ready[1]!;

  const admin = (...args: string[]) => run(process.execPath, ['--import', 'tsx', 'bin/keys.ts', ...args], { cwd: ROOT, env: stackEnv });
  return {
    url,
    port,
    pid: Number(ready[2]),
    workDir,
    env: stackEnv,
    output: () => output,
    async call(key, method, path, body, headers = {}) {
      const response = await fetch(`${url}${path}`, {
        method,
        headers: { authorization: `Bearer ${key}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }), ...headers },
        body: body === undefined ? undefined : JSON.stringify(body),
      });
      const text = await response.text();
      let json: any;
      try {
        json = text ? JSON.parse(text) : undefined;
      } catch {
        json = undefined;
      }
      return { status: response.status, headers: response.headers, text, json };
    },
    admin,
    adminKey: async (account) => (await admin('create', '--account', account)).stdout.trim(),
    stop,
  };
}

/** The body of a deployment of one local instance (the GPU `npm start` offers). */
export const ONE_LOCAL_INSTANCE = { deploymentSpecifications: [{ gpu: 'LOCAL', instanceType: 'local.gpu', minInstances: 1, maxInstances: 1 }] };

/** Deploys a version with `body` and waits until it is ACTIVE. */
export async function deployAndWait(stack: NpmStart, key: string, functionId: string, versionId: string, body: unknown = ONE_LOCAL_INSTANCE): Promise<void> {
  const deployment = `/v2/nvcf/deployments/functions/${functionId}/versions/${versionId}`;
  const deployed = await stack.call(key, 'POST', deployment, body);
  if (deployed.status !== 200) throw new Error(`deploy answered ${deployed.status}: ${deployed.text}`);
  await waitFor('the version to become ACTIVE', async () => ((await stack.call(key, 'GET', deployment)).json?.deployment?.functionStatus === 'ACTIVE' ? true : undefined), 60_000);
}
