/**
 * Overhead of the invocation path on the local stack: sequential synchronous
 * invocations through the in-process API Gateway, the invocations Lambda,
 * SQS, an in-process gpu-agent worker and the echo container, against direct
 * calls to the same container measured in the same run. AWS SDK commands are
 * counted by a middleware on the shared clients (Lambda and worker together).
 *
 * Usage: npm run bench [-- <calls>]   (default 200). Prints one JSON object.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { dynamo, s3, sqs } from '../core/aws';
import { Worker } from '../gpu-agent/worker';
import { readWorkerConfig } from '../gpu-agent/worker/config';
import { deployVersion, putVersion } from '../test/support/function-versions';
import { startEcho, stopAllProcesses } from '../test/support/processes';
import { newAccount, startTestStack } from '../test/support/stack';

const calls = Number(process.argv[2] ?? 200);
const WARMUP = 20;
const body = { message: 'hello', repeats: 2 };

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

function summary(samples: number[]) {
  const sorted = [...samples].sort((a, b) => a - b);
  const round = (n: number) => Math.round(n * 100) / 100;
  return { p50: round(percentile(sorted, 50)), p99: round(percentile(sorted, 99)), mean: round(samples.reduce((a, b) => a + b, 0) / samples.length) };
}

async function main(): Promise<void> {
  process.env.POWERTOOLS_LOG_LEVEL ??= 'ERROR';
  const stack = await startTestStack();
  const workDir = await mkdtemp(join(tmpdir(), 'nvcf-bench-'));
  const echo = await startEcho();
  try {
    const { accountId, key } = await newAccount();
    const record = await putVersion(accountId, { name: 'echo-bench', health: { protocol: 'HTTP', uri: '/health', port: 8000, timeout: 'PT5S', expectedStatusCode: 200 } });
    const version = await deployVersion(record, { status: 'ACTIVE' });

    const worker = new Worker(
      readWorkerConfig({
        NVCF_FUNCTION_ID: version.functionId,
        NVCF_FUNCTION_VERSION_ID: version.versionId,
        NVCF_WORKER_INFERENCE_URL: echo.url,
        NVCF_WORKER_ASSET_DIR: join(workDir, 'assets'),
        NVCF_WORKER_OUTPUT_DIR: join(workDir, 'outputs'),
        NVCF_WORKER_GRACE_SECONDS: '5',
      }),
      version,
    );
    const running = worker.run();

    const counts: Record<string, number> = {};
    const counting = (service: string) => (next: (args: unknown) => Promise<unknown>, context: { commandName?: string }) => async (args: unknown) => {
      const name = `${service}.${context.commandName ?? 'unknown'}`;
      counts[name] = (counts[name] ?? 0) + 1;
      return next(args);
    };
    dynamo().middlewareStack.add(counting('DynamoDB') as never, { step: 'initialize', name: 'bench-count-DynamoDB' });
    sqs().middlewareStack.add(counting('SQS') as never, { step: 'initialize', name: 'bench-count-SQS' });
    s3().middlewareStack.add(counting('S3') as never, { step: 'initialize', name: 'bench-count-S3' });

    const invokeOnce = async () => {
      const started = performance.now();
      const response = await stack.call('POST', `/v2/nvcf/pexec/functions/${version.functionId}`, { key, body });
      if (response.statusCode !== 200) throw new Error(`invocation answered ${response.statusCode}: ${response.body.toString()}`);
      return performance.now() - started;
    };
    const directOnce = async () => {
      const started = performance.now();
      const response = await fetch(`${echo.url}/echo`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
      await response.arrayBuffer();
      return performance.now() - started;
    };

    for (let i = 0; i < WARMUP; i += 1) {
      await invokeOnce();
      await directOnce();
    }
    for (const name of Object.keys(counts)) delete counts[name];
    const invoked: number[] = [];
    const direct: number[] = [];
    for (let i = 0; i < calls; i += 1) {
      direct.push(await directOnce());
      invoked.push(await invokeOnce());
    }
    const perInvocation = (filter: (name: string) => boolean) =>
      Math.round((Object.entries(counts).filter(([name]) => filter(name)).reduce((sum, [, n]) => sum + n, 0) / calls) * 100) / 100;

    const invokedSummary = summary(invoked);
    const directSummary = summary(direct);
    const overheads = summary(invoked.map((ms, i) => ms - direct[i]!));
    process.stdout.write(
      `${JSON.stringify(
        {
          calls,
          overheadMs: { p50: Math.round((invokedSummary.p50 - directSummary.p50) * 100) / 100, p99: Math.round((invokedSummary.p99 - directSummary.p99) * 100) / 100, pairedP50: overheads.p50, pairedP99: overheads.p99 },
          invokeMs: invokedSummary,
          directMs: directSummary,
          awsRequestsPerInvocation: {
            DynamoDB: perInvocation((name) => name.startsWith('DynamoDB.')),
            SQS: perInvocation((name) => name.startsWith('SQS.')),
            S3: perInvocation((name) => name.startsWith('S3.')),
            byCommand: Object.fromEntries(Object.keys(counts).sort().map((name) => [name, perInvocation((n) => n === name)])),
          },
        },
        null,
        2,
      )}\n`,
    );
    worker.stop();
    await running;
  } finally {
    await stopAllProcesses();
    await stack.stop();
    await rm(workDir, { recursive: true, force: true });
  }
}

main().then(
  () => process.exit(0),
  (error: Error) => {
    process.stderr.write(`${error.stack ?? error.message}\n`);
    process.exit(1);
  },
);
