/**
 * `npm start` as a user runs it: a child process group started with npm, the
 * README quick start run by bash against it, then the promises of the local
 * stack: crashed instance processes are replaced without losing invocations,
 * SIGTERM leaves no process behind, and NVCF_DATA_DIR keeps functions,
 * deployments and queued invocations across a restart.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import { mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort, waitFor } from '../support/processes';

const ROOT = new URL('../../', import.meta.url).pathname;
const ECHO_IMAGE = 'nvcr.io/nvcf-examples/echo:1.0';
/** The echo example again, told its port through the environment instead of its arguments. */
const ECHO_ENV_PORT_IMAGE = 'nvcr.io/nvcf-examples/echo-env-port:1.0';
const CRASHING_IMAGE = 'nvcr.io/nvcf-examples/crashing:1.0';
const run = promisify(execFile);
/** The stack's health timeout in these tests: long enough for the example to start, short enough to wait for. */
const HEALTH_TIMEOUT_SECONDS = 25;

/** Tags every process of this test's stacks (the stack and workers inherit it; commands get it from the image map). */
const MARKER = `nvcf-e2e-${randomUUID()}`;

interface LocalStack {
  child: ChildProcess;
  url: string;
  output(): string;
  /** The stack's own process, as its ready line prints it. */
  pid: number;
  /**
   * Sends `signal` to the whole process group, as a terminal's Ctrl-C does, or to one process
   * of it only (npm, or the stack), as a supervisor does; then waits until the group is gone.
   */
  stop(signal?: NodeJS.Signals, to?: 'group' | 'npm' | 'stack'): Promise<void>;
}

async function startStack(env: Record<string, string>): Promise<LocalStack> {
  const child = spawn('npm', ['start', '--silent'], {
    cwd: ROOT,
    // Its temporary files (state, instance directories, discovery file) under this test's directory, removed with it even after a SIGKILL.
    env: { ...process.env, NVCF_E2E_MARKER: MARKER, TMPDIR: workDir, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: true,
  });
  let output = '';
  child.stdout!.on('data', (chunk: Buffer) => (output += chunk.toString()));
  child.stderr!.on('data', (chunk: Buffer) => (output += chunk.toString()));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const [url, pid] = await waitFor(
    'npm start to print that the API is ready',
    () => {
      if (child.exitCode !== null) throw new Error(`npm start exited ${child.exitCode}:\n${output}`);
      const ready = /NVCF local stack ready at (http:\/\/127\.0\.0\.1:\d+) \(pid (\d+);/.exec(output);
      return ready ? ([ready[1]!, Number(ready[2])] as const) : undefined;
    },
    60_000,
  );
  return {
    child,
    url,
    pid,
    output: () => output,
    async stop(signal = 'SIGTERM', to = 'group') {
      const group = -child.pid!;
      const alive = () => {
        try {
          process.kill(group, 0);
          return true;
        } catch {
          return false;
        }
      };
      if (alive()) process.kill({ group, npm: child.pid!, stack: pid }[to], signal);
      // npm exits at once; the stack in its group takes its time to stop instances and save state.
      await waitFor('every process of npm start to exit', () => !alive(), 60_000).catch(() => process.kill(group, 'SIGKILL'));
      await exited;
    },
  };
}

/** Processes of this test still alive, found by the marker in their environment. */
async function markedProcesses(): Promise<{ pid: number; cmdline: string; env: string }[]> {
  const found = [];
  for (const name of await readdir('/proc')) {
    if (!/^\d+$/.test(name) || Number(name) === process.pid) continue;
    try {
      const env = await readFile(`/proc/${name}/environ`, 'utf8');
      if (env.includes(MARKER)) found.push({ pid: Number(name), cmdline: (await readFile(`/proc/${name}/cmdline`, 'utf8')).replaceAll('\0', ' '), env });
    } catch {
      // gone meanwhile, or not ours to read
    }
  }
  return found;
}

let workDir: string;
let imageMap: string;
let callLog: string;
const apiKey = `nvapi-${randomBytes(32).toString('base64url')}`;

beforeAll(async () => {
  workDir = await mkdtemp(join(tmpdir(), 'nvcf-e2e-local-'));
  imageMap = join(workDir, 'images.json');
  callLog = join(workDir, 'calls.log');
  // The shipped echo example, with the marker and a call log in its environment.
  await writeFile(
    imageMap,
    JSON.stringify({
      [ECHO_IMAGE]: { command: [process.execPath, '--import', import.meta.resolve('tsx'), join(ROOT, 'examples/echo/server.ts'), '{port}'], env: { NVCF_E2E_MARKER: MARKER, ECHO_CALL_LOG: callLog } },
      [ECHO_ENV_PORT_IMAGE]: { command: [process.execPath, '--import', import.meta.resolve('tsx'), join(ROOT, 'examples/echo/server.ts')], env: { NVCF_E2E_MARKER: MARKER, PORT: '{port}' } },
      [CRASHING_IMAGE]: { command: [process.execPath, '-e', 'process.exit(3)'], env: { NVCF_E2E_MARKER: MARKER } },
    }),
  );
});

afterAll(async () => {
  for (const leftover of await markedProcesses()) process.kill(leftover.pid, 'SIGKILL');
  await rm(workDir, { recursive: true, force: true });
});

function api(stack: LocalStack) {
  return async (method: string, path: string, options: { body?: unknown; headers?: Record<string, string> } = {}) => {
    const response = await fetch(`${stack.url}${path}`, {
      method,
      redirect: 'manual',
      headers: { authorization: `Bearer ${apiKey}`, ...(options.body ? { 'content-type': 'application/json' } : {}), ...options.headers },
      body: options.body ? JSON.stringify(options.body) : undefined,
    });
    const text = await response.text();
    let json: any;
    try {
      json = JSON.parse(text);
    } catch {
      json = undefined;
    }
    return { status: response.status, headers: response.headers, text, json };
  };
}

type Spec = { minInstances: number; maxInstances: number; maxRequestConcurrency?: number };

/** Creates a function of `image` and deploys it; resolves once its status is `until`, with the version as the API shows it. */
async function deploy(call: ReturnType<typeof api>, image: string, spec: Spec, until = 'ACTIVE', healthUri = '/health') {
  const created = await call('POST', '/v2/nvcf/functions', {
    body: { name: 'echo-e2e', inferenceUrl: '/echo', inferencePort: 8000, containerImage: image, health: { protocol: 'HTTP', uri: healthUri, port: 8000, timeout: 'PT10S', expectedStatusCode: 200 } },
  });
  expect(created.status).toBe(200);
  const { id: functionId, versionId } = created.json.function;
  const deployed = await call('POST', `/v2/nvcf/deployments/functions/${functionId}/versions/${versionId}`, {
    body: { deploymentSpecifications: [{ gpu: 'LOCAL', instanceType: 'local.gpu', ...spec }] },
  });
  expect(deployed.status).toBe(200);
  const path = `/v2/nvcf/deployments/functions/${functionId}/versions/${versionId}`;
  const deployment = await waitFor(`the version to become ${until}`, async () => {
    const current = await call('GET', path);
    return current.json.deployment.functionStatus === until ? current.json.deployment : undefined;
  }, 30_000);
  return { functionId, versionId, deployment };
}

const deployEcho = (call: ReturnType<typeof api>, spec: Spec) => deploy(call, ECHO_IMAGE, spec);

async function pollResult(call: ReturnType<typeof api>, requestId: string, timeoutMs = 60_000) {
  return waitFor(`request ${requestId} to finish`, async () => {
    const polled = await call('GET', `/v2/nvcf/pexec/status/${requestId}`, { headers: { 'nvcf-poll-seconds': '5' } });
    return polled.status === 202 ? undefined : polled;
  }, timeoutMs);
}

/** The two processes of the instance serving `versionId`: its worker, and the command the worker calls. */
async function instanceOf(versionId: string) {
  const processes = await markedProcesses();
  const worker = processes.find((proc) => proc.cmdline.includes('gpu-agent/main.ts worker') && proc.env.includes(versionId))!;
  const port = /NVCF_WORKER_INFERENCE_URL=http:\/\/127\.0\.0\.1:(\d+)/.exec(worker.env)![1];
  const command = processes.find((proc) => proc.cmdline.includes('echo/server.ts') && proc.cmdline.trim().endsWith(` ${port}`))!;
  return { worker, command };
}

async function callCount(event: 'start' | 'done', requestId: string): Promise<number> {
  const log = await readFile(callLog, 'utf8').catch(() => '');
  return log.split('\n').filter((line) => line === `${event} ${requestId}`).length;
}

describe('npm start', () => {
  const dataDir = () => join(workDir, 'data');
  let stack: LocalStack;
  let port: number;

  beforeAll(async () => {
    port = await freePort();
    stack = await startStack({ PORT: String(port), NVCF_API_KEY: apiKey, NVCF_LOCAL_IMAGES: imageMap, NVCF_DATA_DIR: dataDir(), NVCF_LOCAL_HEALTH_TIMEOUT_SECONDS: String(HEALTH_TIMEOUT_SECONDS), NVCF_LOCAL_LOG_LEVEL: 'debug' });
  }, 90_000);
  // SIGTERM: a clean stop ends the instances too, which run in process groups of their own.
  afterAll(async () => stack?.stop('SIGTERM'), 90_000);

  it('runs the README quick start as written', async () => {
    const readme = await readFile(join(ROOT, 'README.md'), 'utf8');
    const section = readme.slice(readme.indexOf('<!-- quickstart:start -->'), readme.indexOf('<!-- quickstart:end -->'));
    const script = [...section.matchAll(/```sh\n([\s\S]*?)```/g)].map((match) => match[1]).join('\n');
    expect(script).toContain('/v2/nvcf/pexec/functions');
    const cwd = await mkdtemp(join(workDir, 'quickstart-'));

    const { stdout } = await run('bash', ['-c', `set -euo pipefail\n${script}`], { cwd, env: { ...process.env, PORT: String(port), NVCF_API_KEY: apiKey }, timeout: 120_000 });

    expect(stdout).toContain('"hello hello "'); // sync
    expect(stdout).toContain('"later"'); // async, polled
    expect(stdout).toMatch(/"assets":\{"[0-9a-f-]{36}":"[0-9a-f]{64}"\}/); // asset by presigned POST
    expect(stdout).toMatch(/HTTP\/1\.1 202[\s\S]*nvcf-percent-complete: \d+[\s\S]*\{"step":\d\}/i); // progress
    expect(stdout).toMatch(/[0-9a-f-]{36}\.response\n[\s\S]*1048576 .* result\.bin/); // zip listing
    expect(stdout).toMatch(/INACTIVE\n204\n$/); // undeploy, delete
    expect(stack.output()).toMatch(/function created: echo/);
    expect(stack.output()).toMatch(/instance local-\w+ of echo version [0-9a-f-]+ \(LOCAL, port \d+\) ready/);
    expect(stack.output()).toMatch(/deployment ACTIVE: echo/);
  }, 150_000);

  it('is found by the keys CLI from its PORT alone, though it keeps its state in NVCF_DATA_DIR', async () => {
    const env: NodeJS.ProcessEnv = { ...process.env, PORT: String(port), TMPDIR: workDir };
    delete env.NVCF_DATA_DIR;
    const { stdout, stderr } = await run('npm', ['run', '--silent', 'keys', '--', 'create', '--account', 'team-b'], { cwd: ROOT, env });
    const key = stdout.trim();
    expect(key).toMatch(/^nvapi-/);
    expect(stderr).toContain('created an API key for account team-b');
    const listed = await fetch(`${stack.url}/v2/nvcf/functions`, { headers: { authorization: `Bearer ${key}` } });
    expect(listed.status).toBe(200);
  }, 60_000);

  it('says in the terminal when it scales a version up for a call and down once idle, and (debug) each invocation answered', async () => {
    const call = api(stack);
    const { functionId, versionId } = await deployEcho(call, { minInstances: 0, maxInstances: 1 });
    const answered = await call('POST', `/v2/nvcf/pexec/functions/${functionId}`, { body: { message: 'wake up' } });
    expect(answered.json).toBe('wake up');

    const scaling = (from: number, to: number) => new RegExp(`scaling echo-e2e version ${versionId} \\(LOCAL\\) from ${from} to ${to} instance\\(s\\), for its queue; min 0, max 1`);
    expect(stack.output()).toMatch(scaling(0, 1));
    await waitFor('the invocation line', () => new RegExp(`invocation POST /v2/nvcf/pexec/functions/${functionId}: answered 200 in \\d+ ms`).test(stack.output()), 5000);
    // Down once the demand has stayed lower for the scale-down delay (30 s, KEDA's cooldown on EKS).
    await waitFor('the scale-down line', () => scaling(1, 0).test(stack.output()), 60_000);
  }, 120_000);

  it('replaces a killed function command and completes its invocation exactly once', async () => {
    const call = api(stack);
    const { functionId, versionId } = await deployEcho(call, { minInstances: 1, maxInstances: 1 });
    const accepted = await call('POST', `/v2/nvcf/pexec/functions/${functionId}`, { body: { message: 'survivor', delay: 3 }, headers: { 'nvcf-poll-seconds': '0' } });
    const requestId = accepted.headers.get('nvcf-reqid')!;
    await waitFor('the container to start the call', async () => (await callCount('start', requestId)) > 0);
    const { command } = await instanceOf(versionId);

    process.kill(command.pid, 'SIGKILL');

    const result = await pollResult(call, requestId);
    expect(result.status).toBe(200);
    expect(result.json).toBe('survivor');
    expect(await callCount('done', requestId)).toBe(1);
    expect(stack.output()).toMatch(/crashed: its command was killed by SIGKILL/);
  }, 90_000);

  it('replaces a killed worker and completes its invocation exactly once', async () => {
    const call = api(stack);
    const { functionId, versionId } = await deployEcho(call, { minInstances: 1, maxInstances: 1 });
    const accepted = await call('POST', `/v2/nvcf/pexec/functions/${functionId}`, { body: { message: 'orphan', delay: 2 }, headers: { 'nvcf-poll-seconds': '0' } });
    const requestId = accepted.headers.get('nvcf-reqid')!;
    await waitFor('the container to start the call', async () => (await callCount('start', requestId)) > 0);
    const { worker } = await instanceOf(versionId);

    process.kill(worker.pid, 'SIGKILL');

    // The message reappears once the dead worker's lease ends, and the new instance's worker runs it.
    const result = await pollResult(call, requestId);
    expect(result.status).toBe(200);
    expect(result.json).toBe('orphan');
    expect(result.headers.get('nvcf-status')).toBe('fulfilled');
    expect(stack.output()).toMatch(/crashed: its worker was killed by SIGKILL/);
  }, 90_000);

  it('passes the instance port through the image map environment', async () => {
    const call = api(stack);
    const { functionId } = await deploy(call, ECHO_ENV_PORT_IMAGE, { minInstances: 1, maxInstances: 1 });
    const result = await call('POST', `/v2/nvcf/pexec/functions/${functionId}`, { body: { message: 'via env' } });
    expect(result.status).toBe(200);
    expect(result.json).toBe('via env');
  }, 60_000);

  it('puts a version whose command keeps crashing, or whose image is not mapped, in ERROR with the reason in healthInfo', async () => {
    const call = api(stack);
    const crashing = await deploy(call, CRASHING_IMAGE, { minInstances: 1, maxInstances: 1 }, 'ERROR');
    expect(crashing.deployment.healthInfo).toEqual([
      expect.objectContaining({ gpu: 'LOCAL', instanceType: 'local.gpu', error: expect.stringMatching(/command exited with code 3 before the container became healthy, 3 times/) }),
    ]);
    const unmapped = await deploy(call, 'nvcr.io/nvcf-examples/not-mapped:1.0', { minInstances: 1, maxInstances: 1 }, 'ERROR');
    expect(unmapped.deployment.healthInfo[0].error).toContain('container image "nvcr.io/nvcf-examples/not-mapped:1.0" is not in the local image map');
    expect(stack.output()).toMatch(/deployment ERROR: echo-e2e .*not in the local image map/);
  }, 60_000);

  it('reads an image map entry added while the stack runs: a version that was ERROR for the lack of it deploys once deployed again', async () => {
    const call = api(stack);
    const image = `nvcr.io/nvcf-examples/added-later-${randomUUID().slice(0, 8)}:1.0`;
    const { functionId, versionId, deployment } = await deploy(call, image, { minInstances: 1, maxInstances: 1 }, 'ERROR');
    expect(deployment.healthInfo[0].error).toContain('then undeploy and deploy again (no restart needed)');

    const map = JSON.parse(await readFile(imageMap, 'utf8'));
    await writeFile(imageMap, JSON.stringify({ ...map, [image]: map[ECHO_IMAGE] }));
    const path = `/v2/nvcf/deployments/functions/${functionId}/versions/${versionId}`;
    expect((await call('DELETE', path)).status).toBe(200);
    expect((await call('POST', path, { body: { deploymentSpecifications: [{ gpu: 'LOCAL', minInstances: 1, maxInstances: 1 }] } })).status).toBe(200);
    await waitFor('the version to become ACTIVE', async () => (await call('GET', path)).json.deployment.functionStatus === 'ACTIVE', 30_000);

    expect((await call('POST', `/v2/nvcf/pexec/functions/${functionId}`, { body: { message: 'mapped now' } })).json).toBe('mapped now');
    expect(stack.output()).toContain(`image map re-read from ${imageMap}`);
  }, 90_000);

  it('shows a failing health check while DEPLOYING, then ERROR, and starts no more instances of the ERROR version', async () => {
    const call = api(stack);
    const { functionId, versionId } = await deploy(call, ECHO_IMAGE, { minInstances: 1, maxInstances: 1 }, 'DEPLOYING', '/status/404');
    const path = `/v2/nvcf/deployments/functions/${functionId}/versions/${versionId}`;

    const progress = await waitFor('a health report while DEPLOYING', async () => (await call('GET', path)).json.deployment.healthInfo, 20_000);
    expect(progress).toEqual([
      expect.objectContaining({ gpu: 'LOCAL', instanceType: 'local.gpu', error: expect.stringMatching(new RegExp(`is not healthy yet \\(\\d+ s of the ${HEALTH_TIMEOUT_SECONDS} s health timeout left\\): health check GET \\S+/status/404 answered 404, expected 200`)) }),
    ]);
    const reported = new RegExp(`deployment DEPLOYING: echo-e2e \\(${functionId} version ${versionId}\\): instance local-\\w+ is not healthy yet`);
    await waitFor('the terminal to show the health report', () => reported.test(stack.output()), 5000);

    const failed = await waitFor('the version to become ERROR', async () => {
      const { deployment } = (await call('GET', path)).json;
      return deployment.functionStatus === 'ERROR' ? deployment : undefined;
    }, (HEALTH_TIMEOUT_SECONDS + 20) * 1000);
    expect(failed.healthInfo).toEqual([expect.objectContaining({ error: expect.stringMatching(`did not become healthy within ${HEALTH_TIMEOUT_SECONDS} s: health check GET \\S+/status/404 answered 404`) })]);
    await waitFor('the terminal to say so', () => new RegExp(`instance local-\\w+ of echo-e2e version ${versionId} .* did not become healthy within`).test(stack.output()), 10_000);
    const linesAtError = stack.output().split('\n').length;

    // Several reconcile passes later, still no instance: none started, and no process of the version runs.
    await new Promise((resolve) => setTimeout(resolve, 5000));
    const since = stack.output().split('\n').slice(linesAtError - 1).join('\n');
    expect(since).not.toMatch(new RegExp(`version ${versionId} .* started`));
    expect(stack.output()).not.toMatch(new RegExp(`version ${versionId} .* crashed`));
    expect((await markedProcesses()).filter((proc) => proc.env.includes(versionId))).toEqual([]);
  }, 90_000);

  it('stops on SIGTERM with no process left, keeps state in NVCF_DATA_DIR, and serves it again after a restart', async () => {
    const call = api(stack);
    const { functionId, versionId } = await deployEcho(call, { minInstances: 0, maxInstances: 1, maxRequestConcurrency: 1 });
    // One call runs, two wait in the queue when the stack stops.
    const requestIds: string[] = [];
    for (const message of ['first', 'second', 'third']) {
      const accepted = await call('POST', `/v2/nvcf/pexec/functions/${functionId}`, { body: { message, delay: 2 }, headers: { 'nvcf-poll-seconds': '0' } });
      requestIds.push(accepted.headers.get('nvcf-reqid')!);
    }
    await waitFor('the first call to start', async () => (await callCount('start', requestIds[0]!)) > 0, 30_000);

    await stack.stop('SIGTERM');

    expect(stack.output()).toMatch(/ saved [12] queued invocation\(s\) to /);
    expect(stack.output().trimEnd().split('\n').at(-1)).toMatch(/^\d\d:\d\d:\d\d  stopped$/);
    expect(await markedProcesses()).toEqual([]);
    await expect(fetch(`${stack.url}/v2/nvcf/functions`)).rejects.toThrow();

    stack = await startStack({ PORT: String(port), NVCF_API_KEY: apiKey, NVCF_LOCAL_IMAGES: imageMap, NVCF_DATA_DIR: dataDir() });
    const restarted = api(stack);
    const version = await restarted('GET', `/v2/nvcf/functions/${functionId}/versions/${versionId}`);
    expect(version.status).toBe(200);
    expect(version.json.function.status).toBe('ACTIVE');
    for (const [i, message] of ['first', 'second', 'third'].entries()) {
      const result = await pollResult(restarted, requestIds[i]!);
      expect(result.status, `${message}: ${result.text}`).toBe(200);
      expect(result.json).toBe(message);
    }
  }, 150_000);
});

describe('stopping npm start', () => {
  /** A stack with one running instance, stopped by `stop`; then no process of it may be left. */
  async function stopsCleanly(stop: (stack: LocalStack) => Promise<void>) {
    const stack = await startStack({ PORT: String(await freePort()), NVCF_API_KEY: apiKey, NVCF_LOCAL_IMAGES: imageMap });
    try {
      const { versionId } = await deployEcho(api(stack), { minInstances: 1, maxInstances: 1 });
      expect((await markedProcesses()).some((proc) => proc.env.includes(versionId))).toBe(true);

      await stop(stack);

      expect(stack.output()).toMatch(/stopping instances/);
      expect(stack.output()).toMatch(/ stopped\n$/);
      expect(await markedProcesses()).toEqual([]);
    } finally {
      await stack.stop('SIGKILL');
    }
  }

  it('stops on SIGINT to the npm process alone', () => stopsCleanly((stack) => stack.stop('SIGINT', 'npm')), 120_000);

  it('stops on SIGTERM to the npm process alone', () => stopsCleanly((stack) => stack.stop('SIGTERM', 'npm')), 120_000);

  it('stops on SIGTERM to the pid it printed', () => stopsCleanly((stack) => stack.stop('SIGTERM', 'stack')), 120_000);

  it('stops when npm is killed without a chance to relay a signal', () => stopsCleanly((stack) => stack.stop('SIGKILL', 'npm')), 120_000);
});
