/**
 * gRPC invocation on the local stack against the same gRPC echo container
 * called directly in the same run: this process runs the emulators and the
 * HTTP front with the invocation service (which tells gRPC by the HTTP/2
 * preface), a gpu-agent worker is a child process dialling its sessions back,
 * examples/grpc-echo another child process.
 *
 * Figures: unary call overhead on a warm session (calls through the
 * platform paired with direct calls, one connection each), p50/p99 of both
 * and of their difference; the first call of a new connection (queue
 * message, worker attach, tunnel), which a session pays once.
 *
 * Usage: npm run bench:grpc [-- <calls>]   (default 300); `npm run bench` runs it after
 * bench/invoke.ts. Prints one JSON object.
 */
import './quiet';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { GRPC_INFERENCE_URL } from '../core/function-schemas';
import { checkGrpcHealth } from '../gpu-agent/worker/grpc-health';
import { deployVersion, putVersion } from '../test/support/function-versions';
import { freePort, startNode, startWorker, stopAllProcesses, testWorkerEnv, waitFor } from '../test/support/processes';
import { newAccount, startTestStack } from '../test/support/stack';

const calls = Number(process.argv[2] ?? 300);
if (!Number.isInteger(calls) || calls < 10) throw new Error(`calls must be an integer ≥ 10, got ${process.argv[2]}`);
const WARMUP = 20;
const NEW_SESSIONS = 10;
const ROOT = new URL('../', import.meta.url).pathname;

const definition = protoLoader.loadSync(join(ROOT, 'examples/grpc-echo/echo.proto'), { longs: Number, defaults: true });
const Echo = (grpc.loadPackageDefinition(definition) as any).nvcf.examples.Echo;

const round = (n: number) => Math.round(n * 100) / 100;
function summary(samples: number[]) {
  const sorted = [...samples].sort((a, b) => a - b);
  const at = (p: number) => sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
  return { p50: round(at(50)), p99: round(at(99)), mean: round(samples.reduce((a, b) => a + b, 0) / samples.length) };
}

function unary(client: any, metadata: grpc.Metadata): Promise<number> {
  const started = performance.now();
  return new Promise((resolve, reject) =>
    client.EchoMessage({ message: 'hello' }, metadata, (error: grpc.ServiceError | null) => (error ? reject(error) : resolve(performance.now() - started))),
  );
}

async function main(): Promise<void> {
  const stack = await startTestStack();
  const workDir = await mkdtemp(join(tmpdir(), 'nvcf-bench-grpc-'));
  const containerPort = await freePort();
  startNode('examples/grpc-echo/server.ts', [String(containerPort)], {});
  const clients: any[] = [];
  try {
    await waitFor('the gRPC echo container to serve', async () => (await checkGrpcHealth('127.0.0.1', containerPort, 1000)) === undefined, 30_000);
    const { accountId, key } = await newAccount();
    const record = await putVersion(accountId, {
      name: 'grpc-echo-bench',
      inferenceUrl: GRPC_INFERENCE_URL,
      inferencePort: containerPort,
      health: { protocol: 'gRPC', uri: '/', port: containerPort, timeout: 'PT5S', expectedStatusCode: 200 },
    });
    const version = await deployVersion(record, { status: 'ACTIVE' });
    const worker = startWorker({
      ...testWorkerEnv({ stackEnv: stack.env, version, containerUrl: `http://127.0.0.1:${containerPort}`, dir: join(workDir, 'worker') }),
      NVCF_WORKER_LEASE_SECONDS: '60',
      NVCF_WORKER_RECEIVE_WAIT_SECONDS: '20',
      NVCF_WORKER_MAX_CONCURRENCY: String(NEW_SESSIONS + 2),
      POWERTOOLS_LOG_LEVEL: 'INFO',
    });
    await waitFor('the worker to be ready', () => worker.output().includes('"instance ready"') || (worker.child.exitCode !== null && Promise.reject(new Error(worker.output()))), 30_000);

    const metadata = new grpc.Metadata();
    metadata.set('authorization', `Bearer ${key}`);
    metadata.set('function-id', version.functionId);
    const client = (address: string) => {
      const made = new Echo(address, grpc.credentials.createInsecure(), { 'grpc.use_local_subchannel_pool': 1 });
      clients.push(made);
      return made;
    };
    const platformAddress = new URL(stack.url).host;

    // The first call of each new connection: queue message, worker attach, tunnel, then the call.
    const firstCalls: number[] = [];
    for (let i = 0; i < NEW_SESSIONS; i += 1) firstCalls.push(await unary(client(platformAddress), metadata));

    const viaPlatform = client(platformAddress);
    const direct = client(`127.0.0.1:${containerPort}`);
    for (let i = 0; i < WARMUP; i += 1) {
      await unary(viaPlatform, metadata);
      await unary(direct, new grpc.Metadata());
    }
    const platform: number[] = [];
    const straight: number[] = [];
    const overhead: number[] = [];
    for (let i = 0; i < calls; i += 1) {
      const through = await unary(viaPlatform, metadata);
      const alone = await unary(direct, new grpc.Metadata());
      platform.push(through);
      straight.push(alone);
      overhead.push(through - alone);
    }
    console.log(
      JSON.stringify(
        {
          grpcUnary: { calls, viaPlatformMs: summary(platform), directMs: summary(straight), overheadMs: summary(overhead) },
          grpcNewSession: { sessions: NEW_SESSIONS, firstCallMs: summary(firstCalls) },
        },
        null,
        2,
      ),
    );
  } finally {
    for (const made of clients) made.close();
    await stopAllProcesses();
    await stack.stop();
    await rm(workDir, { recursive: true, force: true });
  }
}

await main();
