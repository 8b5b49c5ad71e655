/**
 * The invocation path on the local stack, against the same echo container
 * called directly in the same run: HTTP to the local front → invocation
 * service → SQS (fauxqs) → in-process gpu-agent workers attaching back → the
 * echo container (a child process). AWS SDK commands are counted by a
 * middleware on the shared clients (service and workers together).
 *
 * Figures: sequential sync overhead; AWS requests per sync and per async
 * call; sustained throughput of 32 closed-loop clients on 2 workers × 16
 * slots, with the CPU split between this process and the container; SSE time
 * to first event; caller disconnect → the container sees its request closed.
 *
 * Usage: npm run bench [-- <calls>]   (default 200). Prints one JSON object.
 */
import { readFileSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { request } from 'node:http';
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
const THROUGHPUT_CLIENTS = 32;
const THROUGHPUT_SECONDS = 15;
const WORKERS = 2;
const SLOTS_PER_WORKER = 16;
const SSE_TRIES = 20;
const DISCONNECT_TRIES = 20;

/** CPU seconds a process used so far (user + system), from /proc. */
function cpuSecondsOf(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

const round = (n: number) => Math.round(n * 100) / 100;

/** Milliseconds to the first body chunk of a streamed answer, and between the chunks. */
function firstEvent(url: string, headers: Record<string, string>, payload: string): Promise<{ first: number; gaps: number[] }> {
  return new Promise((resolve, reject) => {
    const started = performance.now();
    const times: number[] = [];
    const req = request(url, { method: 'POST', headers: { ...headers, 'content-type': 'application/json', accept: 'text/event-stream' } }, (res) => {
      res.on('data', () => times.push(performance.now() - started));
      res.on('end', () => resolve({ first: times[0]!, gaps: times.slice(1).map((t, i) => t - times[i]!) }));
    });
    req.on('error', reject);
    req.end(payload);
  });
}

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

function summary(samples: number[]) {
  const sorted = [...samples].sort((a, b) => a - b);
  return { p50: round(percentile(sorted, 50)), p99: round(percentile(sorted, 99)), mean: round(samples.reduce((a, b) => a + b, 0) / samples.length) };
}

async function main(): Promise<void> {
  process.env.POWERTOOLS_LOG_LEVEL ??= 'ERROR';
  const stack = await startTestStack();
  const workDir = await mkdtemp(join(tmpdir(), 'nvcf-bench-'));
  const callLog = join(workDir, 'calls.log');
  const echo = await startEcho({ env: { ECHO_CALL_LOG: callLog } });
  try {
    const { accountId, key } = await newAccount();
    const record = await putVersion(accountId, { name: 'echo-bench', health: { protocol: 'HTTP', uri: '/health', port: 8000, timeout: 'PT5S', expectedStatusCode: 200 } });
    const version = await deployVersion(record, { status: 'ACTIVE' });

    const workers = Array.from({ length: WORKERS }, (_, i) =>
      new Worker(
        readWorkerConfig({
          NVCF_FUNCTION_ID: version.functionId,
          NVCF_FUNCTION_VERSION_ID: version.versionId,
          NVCF_WORKER_INFERENCE_URL: echo.url,
          NVCF_WORKER_ASSET_DIR: join(workDir, `assets-${i}`),
          NVCF_WORKER_OUTPUT_DIR: join(workDir, `outputs-${i}`),
          NVCF_WORKER_GRACE_SECONDS: '5',
          NVCF_WORKER_MAX_CONCURRENCY: String(SLOTS_PER_WORKER),
        }),
        version,
      ),
    );
    // One worker for the sequential figures (a second one's idle long poll would be woken, and counted, by every message in the emulator); both for throughput.
    const running = [workers[0]!.run()];
    const auth = { authorization: `Bearer ${key}` };

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
    const perCall = (n: number) => (filter: (name: string) => boolean) =>
      round(Object.entries(counts).filter(([name]) => filter(name)).reduce((sum, [, c]) => sum + c, 0) / n);
    const requestsPer = (n: number) => {
      const per = perCall(n);
      return {
        DynamoDB: per((name) => name.startsWith('DynamoDB.')),
        SQS: per((name) => name.startsWith('SQS.')),
        S3: per((name) => name.startsWith('S3.')),
        byCommand: Object.fromEntries(Object.keys(counts).sort().map((name) => [name, per((c) => c === name)])),
      };
    };
    const syncRequests = requestsPer(calls);

    // Async: accepted at poll 0, then polled until the result is there.
    for (const name of Object.keys(counts)) delete counts[name];
    const ASYNC_CALLS = 20;
    for (let i = 0; i < ASYNC_CALLS; i += 1) {
      const accepted = await stack.call('POST', `/v2/nvcf/pexec/functions/${version.functionId}`, { key, body, headers: { 'NVCF-POLL-SECONDS': '0' } });
      const requestId = accepted.headers['nvcf-reqid']!;
      while ((await stack.call('GET', `/v2/nvcf/pexec/status/${requestId}`, { key, headers: { 'NVCF-POLL-SECONDS': '5' } })).statusCode !== 200);
    }
    const asyncRequests = requestsPer(ASYNC_CALLS);

    // Sustained throughput: closed-loop clients for THROUGHPUT_SECONDS, on both workers.
    running.push(...workers.slice(1).map((worker) => worker.run()));
    await new Promise((resolve) => setTimeout(resolve, 1000));
    const url = `${stack.url}/v2/nvcf/pexec/functions/${version.functionId}`;
    const payload = JSON.stringify(body);
    let completed = 0;
    let errors = 0;
    const cpuBefore = { self: process.cpuUsage(), echo: cpuSecondsOf(echo.child.pid!) };
    const startedAt = performance.now();
    const until = startedAt + THROUGHPUT_SECONDS * 1000;
    await Promise.all(
      Array.from({ length: THROUGHPUT_CLIENTS }, async () => {
        while (performance.now() < until) {
          const response = await fetch(url, { method: 'POST', headers: { ...auth, 'content-type': 'application/json' }, body: payload }).catch(() => undefined);
          if (response) await response.arrayBuffer();
          if (response?.status === 200) completed += 1;
          else errors += 1;
        }
      }),
    );
    const elapsed = (performance.now() - startedAt) / 1000;
    const selfCpu = process.cpuUsage(cpuBefore.self);
    const throughput = {
      clients: THROUGHPUT_CLIENTS,
      workers: `${WORKERS} × ${SLOTS_PER_WORKER} slots`,
      seconds: round(elapsed),
      callsPerSecond: round(completed / elapsed),
      errors,
      cpuSeconds: { stackAndWorkers: round((selfCpu.user + selfCpu.system) / 1e6), echoContainer: round(cpuSecondsOf(echo.child.pid!) - cpuBefore.echo) },
    };

    // SSE: time to the first event through the platform and directly, in turn.
    const stream = JSON.stringify({ message: 'tick', stream: true, delay: 0.2, repeats: 3 });
    const viaPlatform: number[] = [];
    const viaDirect: number[] = [];
    const gaps: number[] = [];
    for (let i = 0; i < SSE_TRIES; i += 1) {
      const platform = await firstEvent(url, auth, stream);
      viaPlatform.push(platform.first);
      gaps.push(...platform.gaps);
      viaDirect.push((await firstEvent(`${echo.url}/echo`, {}, stream)).first);
    }

    // Disconnect: the caller leaves a running call; when does the container see its request closed?
    const closedAfter: number[] = [];
    for (let i = 0; i < DISCONNECT_TRIES; i += 1) {
      const before = (await readFile(callLog, 'utf8')).split('\n').filter((line) => line.startsWith('start ')).length;
      const req = request(url, { method: 'POST', headers: { ...auth, 'content-type': 'application/json' } });
      req.on('error', () => undefined);
      req.end(JSON.stringify({ message: 'slow', delay: 5 }));
      let requestId: string | undefined;
      while (!requestId) {
        const starts = (await readFile(callLog, 'utf8')).split('\n').filter((line) => line.startsWith('start '));
        if (starts.length > before) requestId = starts.at(-1)!.split(' ')[1];
        else await new Promise((resolve) => setTimeout(resolve, 5));
      }
      const leftAt = Date.now();
      req.destroy();
      for (;;) {
        const aborted = (await readFile(callLog, 'utf8')).split('\n').find((line) => line.startsWith(`aborted ${requestId} `));
        if (aborted) {
          closedAfter.push(Number(aborted.split(' ')[2]) - leftAt);
          break;
        }
        await new Promise((resolve) => setTimeout(resolve, 5));
      }
    }

    const invokedSummary = summary(invoked);
    const directSummary = summary(direct);
    const overheads = summary(invoked.map((ms, i) => ms - direct[i]!));
    const sse = { platform: summary(viaPlatform), direct: summary(viaDirect) };
    process.stdout.write(
      `${JSON.stringify(
        {
          setup: 'one process: HTTP front + invocation service + emulators + 2 in-process workers; echo container as a child process',
          calls,
          overheadMs: { p50: round(invokedSummary.p50 - directSummary.p50), p99: round(invokedSummary.p99 - directSummary.p99), pairedP50: overheads.p50, pairedP99: overheads.p99 },
          invokeMs: invokedSummary,
          directMs: directSummary,
          awsRequestsPerInvocation: { sync: syncRequests, async: asyncRequests },
          throughput,
          sseFirstEventMs: { ...sse, platformMinusDirectP50: round(sse.platform.p50 - sse.direct.p50), eventGapMs: summary(gaps) },
          disconnectToContainerClosedMs: summary(closedAfter),
        },
        null,
        2,
      )}\n`,
    );
    for (const worker of workers) worker.stop();
    await Promise.all(running);
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
