/**
 * A gRPC session's failures with real processes: the invocation service
 * (in-process, behind the local front), a gpu-agent worker and the grpc-echo
 * container as child processes. A container that goes away answers its
 * callers UNAVAILABLE at once, not a hung call; a worker that goes away ends
 * its sessions, and the caller's next call gets a new session on another; a
 * worker told to stop ends its sessions with GOAWAY instead of holding them.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { GRPC_INFERENCE_URL } from '../../core/function-schemas';
import type { FunctionVersionRecord } from '../../core/model';
import { checkGrpcHealth } from '../../gpu-agent/worker/grpc-health';
import { deployVersion, putVersion } from '../support/function-versions';
import { freePort, startNode, startWorker, stopAllProcesses, testWorkerEnv, waitFor, type TestProcess } from '../support/processes';
import { newAccount, startTestStack, type TestStack } from '../support/stack';

const ROOT = new URL('../../', import.meta.url).pathname;
const definition = protoLoader.loadSync(join(ROOT, 'examples/grpc-echo/echo.proto'), { longs: Number, defaults: true });
const Echo = (grpc.loadPackageDefinition(definition) as any).nvcf.examples.Echo;

let stack: TestStack;
let workDir: string;
let version: FunctionVersionRecord;
let key: string;
let containerPort: number;
const clients: any[] = [];
const workers: TestProcess[] = [];

async function startContainer(): Promise<TestProcess> {
  const container = startNode('examples/grpc-echo/server.ts', [String(containerPort)], {});
  await waitFor('the gRPC echo container to serve', async () => (await checkGrpcHealth('127.0.0.1', containerPort, 1000)) === undefined, 30_000);
  return container;
}

async function addWorker(name: string, env: Record<string, string> = {}): Promise<TestProcess> {
  const worker = startWorker({
    ...testWorkerEnv({ stackEnv: stack.env, version, containerUrl: `http://127.0.0.1:${containerPort}`, dir: join(workDir, name) }),
    NVCF_INSTANCE_ID: name,
    POWERTOOLS_LOG_LEVEL: 'INFO',
    ...env,
  });
  await waitFor(`worker ${name} to be ready`, () => worker.output().includes('"instance ready"') || (worker.child.exitCode !== null && Promise.reject(new Error(worker.output()))), 30_000);
  workers.push(worker);
  return worker;
}

function client(): any {
  const made = new Echo(new URL(stack.url).host, grpc.credentials.createInsecure(), { 'grpc.use_local_subchannel_pool': 1 });
  clients.push(made);
  return made;
}

function call(target: any, deadlineMs = 10_000): Promise<{ reply?: { message: string; metadata: string[] }; error?: grpc.ServiceError }> {
  const metadata = new grpc.Metadata();
  metadata.set('authorization', `Bearer ${key}`);
  metadata.set('function-id', version.functionId);
  return new Promise((resolve) =>
    target.EchoMessage({ message: 'ping' }, metadata, { deadline: Date.now() + deadlineMs }, (error: grpc.ServiceError | null, reply: { message: string; metadata: string[] }) =>
      resolve(error ? { error } : { reply }),
    ),
  );
}

const sessionOf = (reply?: { metadata: string[] }) => reply?.metadata.find((entry) => entry.startsWith('nvcf-reqid='));

beforeAll(async () => {
  stack = await startTestStack();
  workDir = await mkdtemp(join(tmpdir(), 'nvcf-grpc-worker-e2e-'));
  containerPort = await freePort();
  let accountId: string;
  ({ accountId, key } = await newAccount());
  const health = { protocol: 'gRPC' as const, uri: '/', port: containerPort, timeout: 'PT2S', expectedStatusCode: 200 };
  const record = await putVersion(accountId, { inferenceUrl: GRPC_INFERENCE_URL, inferencePort: containerPort, health });
  version = await deployVersion(record, { status: 'ACTIVE', specification: { minInstances: 1, maxInstances: 2, maxRequestConcurrency: 2 } });
}, 60_000);

afterAll(async () => {
  for (const made of clients) made.close();
  await stopAllProcesses();
  await stack?.stop();
  if (workDir) await rm(workDir, { recursive: true, force: true });
});

describe('gRPC session failures', () => {
  it('answers UNAVAILABLE at once when the container is gone, and serves again once it is back', async () => {
    let container = await startContainer();
    await addWorker('worker-a');
    const caller = client();
    expect((await call(caller)).reply?.message).toBe('ping');

    await container.stop('SIGKILL');
    // The platform answers, long before the caller's own deadline would (DEADLINE_EXCEEDED).
    const { error } = await call(caller, 20_000);
    expect(error?.code).toBe(grpc.status.UNAVAILABLE);
    expect(error?.details).toContain('the function container could not be reached');

    container = await startContainer();
    const again = await waitFor('the session to reach the container again', async () => ((await call(caller)).reply ?? undefined), 20_000);
    expect(again.message).toBe('ping');
    await container.stop('SIGKILL');
  }, 90_000);

  it('ends a session whose worker dies; the next call on the same connection gets a new session from another worker', async () => {
    const container = await startContainer();
    // The only worker: it takes the session of the next connection.
    for (const earlier of workers.splice(0)) await earlier.stop('SIGKILL');
    const doomed = await addWorker('worker-b');
    const caller = client();
    const first = await call(caller);
    const session = sessionOf(first.reply);
    expect(session).toBeDefined();

    await doomed.stop('SIGKILL');
    await addWorker('worker-c');
    const next = await waitFor('a call through a new session', async () => ((await call(caller)).reply ?? undefined), 30_000);
    expect(sessionOf(next)).not.toBe(session);
    await container.stop('SIGKILL');
  }, 120_000);

  it('lets a stopping worker end its sessions: it exits well within its grace period, and the caller moves to another worker', async () => {
    const container = await startContainer();
    for (const earlier of workers.splice(0)) await earlier.stop('SIGKILL');
    // A minute of grace: without GOAWAY on the tunnel, the idle session would hold the worker until the service's idle timeout.
    const stopping = await addWorker('worker-d', { NVCF_WORKER_GRACE_SECONDS: '60' });
    const caller = client();
    const session = sessionOf((await call(caller)).reply);
    expect(session).toBeDefined();
    await addWorker('worker-e');

    // Killed after 15 s: less than the grace and than the service's 30 s idle timeout, which would otherwise end the session.
    expect(await stopping.stop('SIGTERM', 15_000)).toBe(0);
    const next = await call(caller);
    expect(next.reply?.message).toBe('ping');
    expect(sessionOf(next.reply)).not.toBe(session);
    await container.stop('SIGKILL');
  }, 60_000);
});
