/**
 * The invocation path on the local stack, against the same echo container
 * called directly in the same run. As `npm start` wires it: this process runs
 * the emulators (dynalite, fauxqs, s3rver) and the HTTP front with the
 * invocation service; each gpu-agent worker is a child process of its own
 * (as `npm start` and production run them, so a worker does not share the
 * service's event loop and the CPU split is per process), attaching back to
 * the service; the echo container is another child process.
 *
 * Figures: sequential sync overhead (paired with direct calls); AWS requests
 * per sync and per async call (SDK commands counted in this process and, via
 * bench/aws-counter.ts preloaded, in the worker); sustained throughput of 32
 * closed-loop clients on 2 workers × 16 slots, with the CPU of each process;
 * SSE time to first event and the gaps between events; caller disconnect →
 * the container sees its request closed (its ECHO_CALL_LOG `aborted` line);
 * the overhead of a rate limit (a limit too high to refuse anything, so only
 * its counter costs), in blocks alternating with the same calls unlimited.
 *
 * Usage: npm run bench:http [-- <calls>]   (default 200; npm run bench runs it, then bench/grpc.ts). Prints one JSON object.
 * BENCH_CPU_PROFILE=<dir>: CPU profiles of the throughput run (this process
 * and both workers) are written there and summarised in the JSON (`cpuProfile`).
 */
import './quiet';
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { request } from 'node:http';
import { Session } from 'node:inspector/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { updateVersionFields } from '../core/functions';
import { MAX_RATE_LIMIT_COUNT } from '../core/limits';
import { deployVersion, putVersion } from '../test/support/function-versions';
import { startEcho, stopAllProcesses, waitFor } from '../test/support/processes';
import { newAccount, startTestStack } from '../test/support/stack';
import { countAwsCommands } from './aws-counter';
import { summarise } from './cpu-profile';

const calls = Number(process.argv[2] ?? 200);
if (!Number.isInteger(calls) || calls < 10) throw new Error(`calls must be an integer ≥ 10, got ${process.argv[2]}`);
const WARMUP = 20;
const ASYNC_CALLS = 20;
const body = { message: 'hello', repeats: 2 };
const THROUGHPUT_CLIENTS = 32;
const THROUGHPUT_SECONDS = 15;
const WORKERS = 2;
const SLOTS_PER_WORKER = 16;
const SSE_TRIES = 20;
/** Blocks of sequential calls with a rate limit set, each after a block without. */
const RATE_LIMIT_BLOCKS = 4;
const DISCONNECT_TRIES = 20;
const ROOT = new URL('../', import.meta.url).pathname;
const profileDir = process.env.BENCH_CPU_PROFILE;

/** CPU seconds a process used so far (user + system), from /proc. */
function cpuSecondsOf(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

const round = (n: number) => Math.round(n * 100) / 100;

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

function summary(samples: number[]) {
  const sorted = [...samples].sort((a, b) => a - b);
  return { p50: round(percentile(sorted, 50)), p99: round(percentile(sorted, 99)), mean: round(samples.reduce((a, b) => a + b, 0) / samples.length) };
}

interface BenchWorker {
  pid: number;
  /** This worker's AWS command counts so far (asks it for a snapshot). */
  counts(): Promise<Record<string, number>>;
  stop(): Promise<void>;
}

/** Starts `gpu-agent/main.ts worker` as `npm start` does, with the command counter preloaded; resolves once it is ready. */
async function startWorker(name: string, env: Record<string, string>, profile: boolean): Promise<BenchWorker> {
  const countsFile = join(env.NVCF_WORKER_OUTPUT_DIR!, '..', `aws-counts-${name}.json`);
  await mkdir(dirname(countsFile), { recursive: true });
  const args = [
    // One profile per thread (tsx's loader thread has its own) in a directory per worker.
    ...(profile && profileDir ? ['--cpu-prof', `--cpu-prof-dir=${join(profileDir, `worker-${name}`)}`] : []),
    '--import', 'tsx', '--import', join(ROOT, 'local', 'localhost-dns.mjs'), '--import', join(ROOT, 'bench', 'aws-counter.ts'),
    join(ROOT, 'gpu-agent', 'main.ts'), 'worker',
  ];
  const child = spawn(process.execPath, args, { cwd: ROOT, env: { ...process.env, ...env, POWERTOOLS_LOG_LEVEL: 'INFO', BENCH_AWS_COUNTS: countsFile }, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
  child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  process.once('exit', () => child.kill('SIGKILL'));
  await waitFor(`worker ${name} to be ready`, () => {
    if (child.exitCode !== null) throw new Error(`worker ${name} exited: ${output}`);
    return output.includes('"instance ready"');
  }, 30_000);
  let snapshot = 0;
  return {
    pid: child.pid!,
    async counts() {
      snapshot += 1;
      child.kill('SIGUSR2');
      const written = await waitFor(`worker ${name}'s AWS command counts`, async () => {
        const text = await readFile(countsFile, 'utf8').catch(() => '');
        const parsed = text ? (JSON.parse(text) as { snapshot: number; counts: Record<string, number> }) : undefined;
        return parsed && parsed.snapshot >= snapshot ? parsed : undefined;
      });
      return written.counts;
    },
    async stop() {
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 15_000);
      await exited;
      clearTimeout(timer);
    },
  };
}

interface LoadResult {
  completed: number;
  errors: number;
  failures: Record<string, number>;
  latencyMs: { p50: number; p99: number; max: number };
  seconds: number;
  cpuSeconds: number;
  firstError?: string;
}

/** Runs bench/load.ts in a child process; its counts and the CPU it used. */
async function runLoad(env: Record<string, string>): Promise<LoadResult> {
  const child = spawn(process.execPath, ['--import', 'tsx', join(ROOT, 'bench', 'load.ts')], { cwd: ROOT, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  let errors = '';
  child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
  child.stderr.on('data', (chunk: Buffer) => (errors += chunk.toString()));
  const code = await new Promise<number | null>((resolve) => child.once('exit', resolve));
  if (code !== 0) throw new Error(`load generator exited with ${code}: ${errors}`);
  return JSON.parse(output) as LoadResult;
}

/** Milliseconds to the first body chunk of a streamed answer, and between the chunks. */
function streamTimes(url: string, headers: Record<string, string>, payload: string): Promise<{ first: number; gaps: number[] }> {
  return new Promise((resolve, reject) => {
    const started = performance.now();
    const times: number[] = [];
    const req = request(url, { method: 'POST', headers: { ...headers, 'content-type': 'application/json', accept: 'text/event-stream' } }, (res) => {
      if (res.statusCode !== 200) reject(new Error(`stream answered ${res.statusCode}`));
      res.on('data', () => times.push(performance.now() - started));
      res.on('end', () => resolve({ first: times[0]!, gaps: times.slice(1).map((t, i) => t - times[i]!) }));
    });
    req.on('error', reject);
    req.end(payload);
  });
}

/** Counts of `after` minus `before`, per command. */
function difference(after: Record<string, number>, before: Record<string, number>): Record<string, number> {
  return Object.fromEntries(Object.entries(after).map(([name, n]) => [name, n - (before[name] ?? 0)]).filter(([, n]) => (n as number) > 0));
}

function merge(...all: Record<string, number>[]): Record<string, number> {
  const merged: Record<string, number> = {};
  for (const counts of all) for (const [name, n] of Object.entries(counts)) merged[name] = (merged[name] ?? 0) + n;
  return merged;
}

/** Requests per call by service and by command. */
function perCall(counts: Record<string, number>, n: number) {
  const per = (filter: (name: string) => boolean) => round(Object.entries(counts).filter(([name]) => filter(name)).reduce((sum, [, c]) => sum + c, 0) / n);
  return {
    total: per(() => true),
    DynamoDB: per((name) => name.startsWith('DynamoDB.')),
    SQS: per((name) => name.startsWith('SQS.')),
    S3: per((name) => name.startsWith('S3.')),
    byCommand: Object.fromEntries(Object.keys(counts).sort().map((name) => [name, per((c) => c === name)])),
  };
}

async function main(): Promise<void> {
  const stack = await startTestStack();
  const workDir = await mkdtemp(join(tmpdir(), 'nvcf-bench-'));
  const callLog = join(workDir, 'calls.log');
  const echo = await startEcho({ env: { ECHO_CALL_LOG: callLog } });
  try {
    const { accountId, key } = await newAccount();
    const record = await putVersion(accountId, { name: 'echo-bench', health: { protocol: 'HTTP', uri: '/health', port: 8000, timeout: 'PT5S', expectedStatusCode: 200 } });
    const version = await deployVersion(record, { status: 'ACTIVE' });
    const workerEnv = (name: string, target = version): Record<string, string> => ({
      ...stack.env,
      NVCF_FUNCTION_ID: target.functionId,
      NVCF_FUNCTION_VERSION_ID: target.versionId,
      NVCF_INSTANCE_ID: `bench-${name}`,
      NVCF_WORKER_INFERENCE_URL: echo.url,
      NVCF_WORKER_ASSET_DIR: join(workDir, name, 'assets'),
      NVCF_WORKER_OUTPUT_DIR: join(workDir, name, 'outputs'),
      NVCF_WORKER_DRAIN_PORT: '0',
      NVCF_WORKER_GRACE_SECONDS: '5',
      NVCF_WORKER_MAX_CONCURRENCY: String(SLOTS_PER_WORKER),
    });
    const ownCounts = countAwsCommands();
    const auth = { authorization: `Bearer ${key}` };
    const url = `${stack.url}/v2/nvcf/pexec/functions/${version.functionId}`;

    // One worker for the sequential figures: a second one's idle long poll would be woken, and counted, by every message in the emulator.
    const single = await startWorker('sequential', workerEnv('sequential'), false);
    /** Commands so far of the service's process and of the worker. */
    const countsNow = async () => ({ service: { ...ownCounts }, worker: await single.counts() });
    type Counts = Awaited<ReturnType<typeof countsNow>>;
    const requestsBetween = (from: Counts, to: Counts, n: number) => {
      const service = difference(to.service, from.service);
      const worker = difference(to.worker, from.worker);
      return { ...perCall(merge(service, worker), n), byProcess: { service: perCall(service, n).byCommand, worker: perCall(worker, n).byCommand } };
    };

    const invokeOnce = async () => {
      const started = performance.now();
      const response = await fetch(url, { method: 'POST', headers: { ...auth, 'content-type': 'application/json' }, body: JSON.stringify(body) });
      const answer = Buffer.from(await response.arrayBuffer());
      if (response.status !== 200) throw new Error(`invocation answered ${response.status}: ${answer.toString()}`);
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
    let before = await countsNow();
    const invoked: number[] = [];
    const direct: number[] = [];
    for (let i = 0; i < calls; i += 1) {
      direct.push(await directOnce());
      invoked.push(await invokeOnce());
    }
    let after = await countsNow();
    const syncRequests = requestsBetween(before, after, calls);

    // Rate limit on vs off, same version and worker, in alternating blocks so that drift hits both alike.
    const setLimit = async (rateLimit: { rateLimit: string } | null) => {
      await updateVersionFields(accountId, version.functionId, version.versionId, { rateLimit });
      stack.service.caches.forgetAccess(accountId, version.functionId);
      await invokeOnce();
    };
    const pairedRuns: Record<'unlimited' | 'limited', number[]> = { unlimited: [], limited: [] };
    const limitedCounts = { before: [] as Counts[], after: [] as Counts[] };
    const blockCalls = Math.max(5, Math.floor(calls / RATE_LIMIT_BLOCKS));
    for (let block = 0; block < RATE_LIMIT_BLOCKS * 2; block += 1) {
      const mode = block % 2 === 0 ? 'unlimited' : 'limited';
      await setLimit(mode === 'limited' ? { rateLimit: `${MAX_RATE_LIMIT_COUNT}-S` } : null);
      if (mode === 'limited') limitedCounts.before.push(await countsNow());
      for (let i = 0; i < blockCalls; i += 1) {
        const directMs = await directOnce();
        pairedRuns[mode].push((await invokeOnce()) - directMs);
      }
      if (mode === 'limited') limitedCounts.after.push(await countsNow());
    }
    await setLimit(null);
    const limitedRequests = limitedCounts.before.map((from, i) => requestsBetween(from, limitedCounts.after[i]!, blockCalls).DynamoDB);
    const withoutLimit = summary(pairedRuns.unlimited);
    const withLimit = summary(pairedRuns.limited);
    const rateLimitOverhead = {
      note: `paired overhead (platform minus direct) of ${RATE_LIMIT_BLOCKS} blocks of ${blockCalls} calls each way, alternating; the limit is ${MAX_RATE_LIMIT_COUNT}-S, never reached`,
      withoutLimitMs: withoutLimit,
      withLimitMs: withLimit,
      addedMs: { p50: round(withLimit.p50 - withoutLimit.p50), p99: round(withLimit.p99 - withoutLimit.p99) },
      dynamoRequestsPerCallWithLimit: round(limitedRequests.reduce((a, b) => a + b, 0) / limitedRequests.length),
      dynamoRequestsPerCallWithoutLimit: syncRequests.DynamoDB,
    };

    // Async: accepted at once (NVCF-POLL-SECONDS: 0), then polled until the result is there; counted from here (the rate-limit blocks made calls since).
    before = await countsNow();
    for (let i = 0; i < ASYNC_CALLS; i += 1) {
      const accepted = await stack.call('POST', `/v2/nvcf/pexec/functions/${version.functionId}`, { key, body, headers: { 'NVCF-POLL-SECONDS': '0' } });
      if (accepted.statusCode !== 202) throw new Error(`async invocation answered ${accepted.statusCode}: ${accepted.body.toString()}`);
      const requestId = accepted.headers['nvcf-reqid']!;
      for (;;) {
        const polled = await stack.call('GET', `/v2/nvcf/pexec/status/${requestId}`, { key, headers: { 'NVCF-POLL-SECONDS': '5' } });
        if (polled.statusCode === 200) break;
        if (polled.statusCode !== 202) throw new Error(`status poll answered ${polled.statusCode}: ${polled.body.toString()}`);
      }
    }
    after = await countsNow();
    const asyncRequests = requestsBetween(before, after, ASYNC_CALLS);

    // SSE: time to the first event through the platform and directly, in turn.
    const stream = JSON.stringify({ message: 'tick', stream: true, delay: 0.2, repeats: 3 });
    const viaPlatform: number[] = [];
    const viaDirect: number[] = [];
    const gaps: number[] = [];
    for (let i = 0; i < SSE_TRIES; i += 1) {
      const platform = await streamTimes(url, auth, stream);
      viaPlatform.push(platform.first);
      gaps.push(...platform.gaps);
      viaDirect.push((await streamTimes(`${echo.url}/echo`, {}, stream)).first);
    }

    // Disconnect: the caller leaves a running call; when does the container see its request closed?
    const closedAfter: number[] = [];
    const logLines = async (prefix: string) => (await readFile(callLog, 'utf8')).split('\n').filter((line) => line.startsWith(prefix));
    for (let i = 0; i < DISCONNECT_TRIES; i += 1) {
      const startsBefore = (await logLines('start ')).length;
      const req = request(url, { method: 'POST', headers: { ...auth, 'content-type': 'application/json' } });
      req.on('error', () => undefined);
      req.end(JSON.stringify({ message: 'slow', delay: 5 }));
      const requestId = await waitFor('the slow call to reach the container', async () => {
        const starts = await logLines('start ');
        return starts.length > startsBefore ? starts.at(-1)!.split(' ')[1] : undefined;
      });
      const leftAt = Date.now();
      req.destroy();
      const aborted = await waitFor(`the container to see call ${requestId} closed`, async () => (await logLines(`aborted ${requestId} `))[0], 10_000);
      closedAfter.push(Number(aborted.split(' ')[2]) - leftAt);
    }
    await single.stop();

    // Sustained throughput: closed-loop clients for THROUGHPUT_SECONDS on two fresh workers.
    if (profileDir) await mkdir(profileDir, { recursive: true });
    // A function of its own (its own queue): the stopped worker's aborted long poll is still open in fauxqs, which hands it the
    // next message sent to that queue, invisible until its lease ends (the first call would be answered 202 after 5 s).
    const loaded = await deployVersion(await putVersion(accountId, { name: 'echo-bench-load', health: record.health }), { status: 'ACTIVE' });
    const pair = await Promise.all(Array.from({ length: WORKERS }, (_, i) => startWorker(`throughput-${i}`, workerEnv(`throughput-${i}`, loaded), true)));
    await sleep(1000);
    const inspector = new Session();
    if (profileDir) {
      inspector.connect();
      await inspector.post('Profiler.enable');
      await inspector.post('Profiler.start');
    }
    const cpuBefore = { self: process.cpuUsage(), workers: pair.map((w) => cpuSecondsOf(w.pid)), echo: cpuSecondsOf(echo.child.pid!) };
    const load = await runLoad({ BENCH_URL: `${stack.url}/v2/nvcf/pexec/functions/${loaded.functionId}`, BENCH_AUTHORIZATION: auth.authorization, BENCH_BODY: JSON.stringify(body), BENCH_CLIENTS: String(THROUGHPUT_CLIENTS), BENCH_SECONDS: String(THROUGHPUT_SECONDS) });
    const selfCpu = process.cpuUsage(cpuBefore.self);
    const workerCpu = pair.map((w, i) => cpuSecondsOf(w.pid) - cpuBefore.workers[i]!);
    const echoCpu = cpuSecondsOf(echo.child.pid!) - cpuBefore.echo;
    if (profileDir) {
      const { profile } = await inspector.post('Profiler.stop');
      await writeFile(join(profileDir, 'stack.cpuprofile'), JSON.stringify(profile));
      inspector.disconnect();
    }
    await Promise.all(pair.map((w) => w.stop()));
    const stackCpu = (selfCpu.user + selfCpu.system) / 1e6;
    const throughput = {
      clients: THROUGHPUT_CLIENTS,
      workers: `${WORKERS} processes × ${SLOTS_PER_WORKER} slots`,
      seconds: round(load.seconds),
      callsPerSecond: round(load.completed / load.seconds),
      errors: load.errors,
      failures: load.failures,
      latencyMs: load.latencyMs,
      ...(load.firstError ? { firstError: load.firstError } : {}),
      cpuSeconds: {
        stackProcess: round(stackCpu),
        workerProcesses: workerCpu.map(round),
        loadClients: round(load.cpuSeconds),
        echoContainer: round(echoCpu),
        platformCpuMsPerCall: load.completed > 0 ? round(((stackCpu + workerCpu.reduce((a, b) => a + b, 0)) * 1000) / load.completed) : null,
      },
      note: 'stackProcess = HTTP front + invocation service + dynalite + fauxqs + s3rver; the clients run in a process of their own (loadClients)',
    };

    let cpuProfile: Record<string, unknown> | undefined;
    if (profileDir) {
      cpuProfile = { stack: summarise(JSON.parse(readFileSync(join(profileDir, 'stack.cpuprofile'), 'utf8')), 12) };
      for (let i = 0; i < WORKERS; i += 1) {
        // The worker's main thread: the busiest of its threads' profiles.
        const dir = join(profileDir, `worker-throughput-${i}`);
        const threads = await Promise.all((await readdir(dir)).map(async (name) => summarise(JSON.parse(await readFile(join(dir, name), 'utf8')), 12)));
        cpuProfile[`worker-${i}`] = threads.sort((a, b) => b.busyMs - a.busyMs)[0];
      }
    }

    const invokedSummary = summary(invoked);
    const directSummary = summary(direct);
    const paired = summary(invoked.map((ms, i) => ms - direct[i]!));
    const sse = { platform: summary(viaPlatform), direct: summary(viaDirect) };
    process.stdout.write(
      `${JSON.stringify(
        {
          setup:
            'as npm start: this process = emulators + HTTP front (serveGateway) + invocation service; each gpu-agent worker a child process (1 for the sequential figures, 2 fresh ones for throughput); echo container a child process',
          calls,
          overheadMs: { p50: round(invokedSummary.p50 - directSummary.p50), p99: round(invokedSummary.p99 - directSummary.p99), pairedP50: paired.p50, pairedP99: paired.p99 },
          invokeMs: invokedSummary,
          directMs: directSummary,
          awsRequestsPerInvocation: { sync: syncRequests, async: asyncRequests },
          rateLimitOverhead,
          throughput,
          sseFirstEventMs: { ...sse, platformMinusDirectP50: round(sse.platform.p50 - sse.direct.p50), eventGapMs: summary(gaps) },
          disconnectToContainerClosedMs: summary(closedAfter),
          ...(cpuProfile ? { cpuProfile } : {}),
        },
        null,
        2,
      )}\n`,
    );
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
