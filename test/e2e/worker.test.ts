/**
 * The invocation path end to end: invocations Lambda (in-process gateway) →
 * SQS (fauxqs) → gpu-agent worker (child process) → echo container (child
 * process) → DynamoDB/S3 → answer.
 */
import { execFileSync } from 'node:child_process';
import { createHash, randomBytes, randomUUID } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PutObjectCommand } from '@aws-sdk/client-s3';
import { GetQueueAttributesCommand, SendMessageCommand } from '@aws-sdk/client-sqs';
import { GetCommand, PutCommand, UpdateCommand } from '@aws-sdk/lib-dynamodb';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { s3, sqs, dynamo } from '../../core/aws';
import { bucketName, tableName } from '../../core/config';
import { getVersion } from '../../core/functions';
import type { InvocationMessage } from '../../core/invocation-message';
import { claimInvocation, createQueuedInvocation, finishInvocation, getInvocation } from '../../core/invocations';
import { API_GATEWAY_POLL_CAP_SECONDS, INVOCATION_URL_POLL_CAP_SECONDS, MAX_PROBLEM_DETAIL_BYTES, MiB } from '../../core/limits';
import type { FunctionVersionRecord, HealthCheck } from '../../core/model';
import { ENV, FRONT_HEADER, FRONTS, assetObjectKey } from '../../core/names';
import { deployVersion, putVersion } from '../support/function-versions';
import { WORKER_EXIT_UNHEALTHY } from '../../gpu-agent/worker/config';
import { newAccount, startTestStack, type TestResponse, type TestStack } from '../support/stack';
import { freePort, startEcho, startWorker, stopAllProcesses, testWorkerEnv, waitFor, type EchoServer, type TestProcess } from '../support/processes';

let stack: TestStack;
let account: { accountId: string; key: string };
let echo: EchoServer;
let callLog: string;
let workDir: string;
let version: FunctionVersionRecord;

/** Stores a version and deploys it as D1 would: queues, then INACTIVE → DEPLOYING. */
async function deployedVersion(
  options: { functionId?: string; minInstances?: number; health?: Partial<HealthCheck>; status?: 'DEPLOYING' | 'ACTIVE'; concurrency?: number } = {},
): Promise<FunctionVersionRecord> {
  const record = await putVersion(account.accountId, {
    ...(options.functionId ? { functionId: options.functionId } : {}),
    health: { protocol: 'HTTP', uri: '/health', port: 8000, timeout: 'PT2S', expectedStatusCode: 200, ...options.health },
  });
  const specification = { minInstances: options.minInstances ?? 1, maxInstances: 2, maxRequestConcurrency: options.concurrency ?? 4 };
  return deployVersion(record, { status: options.status ?? 'DEPLOYING', specification });
}

let workers = 0;

/** A worker's environment; each worker gets directories of its own, as each pod does. */
function workerEnv(target: FunctionVersionRecord, extra: Record<string, string> = {}): Record<string, string> {
  const dir = join(workDir, `worker-${(workers += 1)}`);
  return {
    ...testWorkerEnv({ stackEnv: stack.env, version: target, containerUrl: echo.url, dir }),
    NVCF_WORKER_GRACE_SECONDS: '10',
    NVCF_WORKER_PROGRESS_INTERVAL_MS: '50',
    NVCF_INSTANCETYPE: 'g6e.xlarge',
    NVCF_BACKEND: 'AWS',
    ...extra,
  };
}

async function status(target: FunctionVersionRecord): Promise<string | undefined> {
  return (await getVersion(target.functionId, target.versionId))?.status;
}

function invoke(body: unknown, options: { headers?: Record<string, string>; target?: FunctionVersionRecord; pinned?: boolean } = {}): Promise<TestResponse> {
  const target = options.target ?? version;
  const path = options.pinned ? `/v2/nvcf/pexec/functions/${target.functionId}/versions/${target.versionId}` : `/v2/nvcf/pexec/functions/${target.functionId}`;
  return stack.call('POST', path, { key: account.key, body, headers: options.headers });
}

function poll(requestId: string, seconds = 10): Promise<TestResponse> {
  return stack.call('GET', `/v2/nvcf/pexec/status/${requestId}`, { key: account.key, headers: { 'NVCF-POLL-SECONDS': String(seconds) } });
}

/** Polls I3 until the request is no longer pending or running. */
async function settle(requestId: string): Promise<TestResponse> {
  return waitFor(`request ${requestId} to finish`, async () => {
    const response = await poll(requestId, 5);
    return response.statusCode === 202 ? undefined : response;
  }, 25_000);
}

async function calls(requestId: string): Promise<{ starts: number; dones: number }> {
  const lines = existsSync(callLog) ? (await readFile(callLog, 'utf8')).split('\n') : [];
  return { starts: lines.filter((l) => l === `start ${requestId}`).length, dones: lines.filter((l) => l === `done ${requestId}`).length };
}

function zipEntries(zip: Buffer): Record<string, Buffer> {
  const dir = join(workDir, `unzip-${randomUUID()}`);
  const file = `${dir}.zip`;
  execFileSync('mkdir', ['-p', dir]);
  execFileSync('sh', ['-c', 'cat > "$1"', 'sh', file], { input: zip });
  execFileSync('unzip', ['-q', file, '-d', dir]);
  const names = execFileSync('sh', ['-c', 'cd "$1" && find . -type f | sed "s|^./||"', 'sh', dir]).toString().trim().split('\n');
  return Object.fromEntries(names.map((name) => [name, execFileSync('cat', [join(dir, name)], { maxBuffer: 64 * MiB })]));
}

/** Messages waiting and in flight in a queue. */
async function queueCounts(queueUrl: string): Promise<{ waiting: string | undefined; inFlight: string | undefined }> {
  const { Attributes } = await sqs().send(
    new GetQueueAttributesCommand({ QueueUrl: queueUrl, AttributeNames: ['ApproximateNumberOfMessages', 'ApproximateNumberOfMessagesNotVisible'] }),
  );
  return { waiting: Attributes?.ApproximateNumberOfMessages, inFlight: Attributes?.ApproximateNumberOfMessagesNotVisible };
}

let worker: TestProcess;

beforeAll(async () => {
  stack = await startTestStack();
  account = await newAccount();
  workDir = await mkdtemp(join(tmpdir(), 'nvcf-worker-'));
  callLog = join(workDir, 'calls.log');
  echo = await startEcho({ env: { ECHO_CALL_LOG: callLog } });
  version = await deployedVersion();
  worker = startWorker(workerEnv(version));
  await waitFor('version to become ACTIVE', async () => {
    if (worker.child.exitCode !== null) throw new Error(`worker exited: ${worker.output()}`);
    return (await status(version)) === 'ACTIVE';
  });
});

afterAll(async () => {
  await stopAllProcesses();
  await stack?.stop();
  if (workDir) await rm(workDir, { recursive: true, force: true });
});

describe('deployment', () => {
  it('flips a DEPLOYING version to ACTIVE once its worker is ready, and records the instance', async () => {
    expect(await status(version)).toBe('ACTIVE');
    const { Items } = await import('@aws-sdk/lib-dynamodb').then(({ QueryCommand }) =>
      dynamo().send(new QueryCommand({ TableName: tableName('instances'), KeyConditionExpression: 'versionId = :v', ExpressionAttributeValues: { ':v': version.versionId } })),
    );
    expect(Items).toEqual([expect.objectContaining({ state: 'READY', inFlight: 0, functionId: version.functionId, expiresAt: expect.any(Number) })]);
  });

  it('puts a version whose container never becomes healthy in ERROR with healthInfo', async () => {
    const bad = await deployedVersion({ health: { uri: '/status/404' } });
    const badWorker = startWorker(workerEnv(bad, { NVCF_WORKER_HEALTH_TIMEOUT_SECONDS: '2' }));
    expect(await badWorker.exited).toBe(WORKER_EXIT_UNHEALTHY);
    const record = await getVersion(bad.functionId, bad.versionId);
    expect(record?.status).toBe('ERROR');
    expect(record?.deployment?.healthInfo).toEqual([
      expect.objectContaining({ gpu: 'L40S', instanceType: 'g6e.xlarge', error: expect.stringContaining('answered 404, expected 200') }),
    ]);
  });
});

describe('synchronous and asynchronous invocation', () => {
  it('answers 200 with the container body and NVCF headers', async () => {
    const response = await invoke({ message: 'hello', repeats: 2 });
    expect(response.statusCode).toBe(200);
    expect(response.json).toBe('hellohello');
    expect(response.headers['nvcf-status']).toBe('fulfilled');
    expect(response.headers['nvcf-reqid']).toMatch(/^[0-9a-f-]{36}$/);
    expect(response.headers['content-type']).toBe('application/json');
  });

  it('hands the container every NVCF-* header and the client headers, minus Authorization', async () => {
    const response = await invoke({ message: 'h', headers: true }, { headers: { 'x-trace': 'abc', 'NVCF-REQID': 'forged', 'NVCF-POLL-SECONDS': '7' } });
    expect(response.statusCode).toBe(200);
    const requestId = response.headers['nvcf-reqid'];
    const headers = response.json.headers as Record<string, string>;
    expect(headers).toMatchObject({
      'x-trace': 'abc',
      'nvcf-reqid': requestId,
      'nvcf-ncaid': account.accountId,
      'nvcf-sub': account.accountId,
      'nvcf-function-name': 'echo-fn',
      'nvcf-function-id': version.functionId,
      'nvcf-function-version-id': version.versionId,
      'nvcf-asset-dir': join(workDir, 'worker-1', 'assets', requestId!),
      'nvcf-large-output-dir': join(workDir, 'worker-1', 'outputs', requestId!),
      'nvcf-max-response-size-bytes': String(5 * MiB),
      'nvcf-instancetype': 'g6e.xlarge',
      'nvcf-backend': 'AWS',
    });
    expect(Number(headers['nvcf-poll-seconds'])).toBeLessThanOrEqual(7);
    expect(headers).not.toHaveProperty('authorization');
    expect(headers).not.toHaveProperty('nvcf-function-asset-ids');
  });

  it('answers 202 when the poll window ends first, then the result on polling, and again until expiry', async () => {
    const accepted = await invoke({ message: 'slow', delay: 1 }, { headers: { 'NVCF-POLL-SECONDS': '0' } });
    expect(accepted.statusCode).toBe(202);
    expect(accepted.headers['nvcf-status']).toBe('pending-evaluation');
    expect(accepted.body.length).toBe(0);
    const requestId = accepted.headers['nvcf-reqid']!;
    const done = await poll(requestId, 10);
    expect(done.statusCode).toBe(200);
    expect(done.json).toBe('slow');
    expect(done.headers['nvcf-status']).toBe('fulfilled');
    expect((await poll(requestId)).json).toBe('slow');
  });

  it('invokes a pinned version and refuses a pinned version that is not ACTIVE', async () => {
    const inactive = await putVersion(account.accountId, { functionId: version.functionId });
    const pinned = await invoke({ message: 'p', headers: true }, { pinned: true });
    expect(pinned.statusCode).toBe(200);
    expect(pinned.json.headers['nvcf-function-version-id']).toBe(version.versionId);
    const refused = await invoke({ message: 'p' }, { pinned: true, target: inactive });
    expect(refused.statusCode).toBe(400);
    expect(refused.json.detail).toContain('INACTIVE');
    // The unpinned call only ever picks the ACTIVE version.
    for (let i = 0; i < 3; i += 1) expect((await invoke({ message: 'x', headers: true })).json.headers['nvcf-function-version-id']).toBe(version.versionId);
  });
});

describe('bodies, assets and outputs', () => {
  it('downloads referenced assets into the asset dir with identical bytes, and removes them afterwards', async () => {
    const assetId = randomUUID();
    const bytes = randomBytes(150_000);
    await s3().send(new PutObjectCommand({ Bucket: bucketName(), Key: assetObjectKey(account.accountId, assetId), Body: bytes }));
    const now = Math.floor(Date.now() / 1000);
    await dynamo().send(
      new PutCommand({
        TableName: tableName('assets'),
        Item: { assetId, accountId: account.accountId, contentType: 'application/octet-stream', description: 'in', s3Key: assetObjectKey(account.accountId, assetId), status: 'CREATED', createdAt: new Date().toISOString(), expiresAt: now + 3600 },
      }),
    );
    const response = await invoke({ message: 'a', assets: true, headers: true }, { headers: { 'NVCF-INPUT-ASSET-REFERENCES': ` ${assetId} ` } });
    expect(response.statusCode).toBe(200);
    expect(response.json.assets).toEqual({ [assetId]: createHash('sha256').update(bytes).digest('hex') });
    expect(response.json.headers['nvcf-function-asset-ids']).toBe(assetId);
    // The worker cleans up right after storing the result.
    await waitFor('the asset dir to be removed', () => !existsSync(response.json.headers['nvcf-asset-dir']), 2000);
  });

  it('delivers a 1 MiB request spilled to S3 intact', async () => {
    const message = 'abcdefghij'.repeat(MiB / 10);
    const response = await invoke({ message });
    expect(response.statusCode).toBe(200);
    expect(response.json).toBe(message);
  });

  it('passes a binary request through and returns binary bodies byte-exact, inline and from S3', async () => {
    const input = randomBytes(300_000);
    const digest = await invoke(input, { headers: { 'content-type': 'application/octet-stream' } });
    expect(digest.json).toEqual({ bytes: input.length, sha256: createHash('sha256').update(input).digest('hex') });
    for (const size of [1000, MiB]) {
      const response = await invoke({ responseBytes: size });
      expect(response.statusCode).toBe(200);
      expect(response.headers['content-type']).toBe('application/octet-stream');
      expect(response.body.equals(Buffer.from(Array.from({ length: size }, (_, i) => i % 251)))).toBe(true);
    }
  });

  it('answers 302 to a zip holding {requestId}.response and the finished output file', async () => {
    const response = await invoke({ message: 'zipped', outputFile: { name: 'image.bin', bytes: 4096 } });
    expect(response.statusCode).toBe(302);
    expect(response.headers['nvcf-status']).toBe('fulfilled');
    const requestId = response.headers['nvcf-reqid']!;
    const zip = Buffer.from(await (await fetch(response.headers.location!)).arrayBuffer());
    const entries = zipEntries(zip);
    expect(Object.keys(entries).sort()).toEqual([`${requestId}.response`, 'image.bin']);
    expect(entries[`${requestId}.response`]!.toString()).toBe('"zipped"');
    expect(entries['image.bin']!.equals(Buffer.alloc(4096, 'x'))).toBe(true);
  });

  it('answers 302 for a 6 MiB body, the zip holding it byte-exact', async () => {
    const response = await invoke({ responseBytes: 6 * MiB });
    expect(response.statusCode).toBe(302);
    const entries = zipEntries(Buffer.from(await (await fetch(response.headers.location!)).arrayBuffer()));
    const body = entries[`${response.headers['nvcf-reqid']}.response`]!;
    expect(body.length).toBe(6 * MiB);
    expect(body.equals(Buffer.from(Array.from({ length: 6 * MiB }, (_, i) => i % 251)))).toBe(true);
  });

  it('answers 202 with percent and partial response while the container reports progress', async () => {
    const accepted = await invoke({ message: 'p', delay: 2, progress: 3 }, { headers: { 'NVCF-POLL-SECONDS': '20' } });
    expect(accepted.statusCode).toBe(202);
    expect(accepted.headers['nvcf-status']).toBe('in-progress');
    expect(accepted.headers['nvcf-percent-complete']).toBe('25');
    expect(accepted.json).toEqual({ step: 1 });
    const next = await poll(accepted.headers['nvcf-reqid']!, 20);
    expect(next.statusCode).toBe(202);
    expect(Number(next.headers['nvcf-percent-complete'])).toBeGreaterThan(25);
    expect((await settle(accepted.headers['nvcf-reqid']!)).json).toBe('p');
  });

  it('turns a container error into its status with problem+json', async () => {
    const response = await invoke({ fail: { status: 500, error: 'model exploded' } });
    expect(response.statusCode).toBe(500);
    expect(response.headers['content-type']).toBe('application/problem+json');
    expect(response.headers['nvcf-status']).toBe('errored');
    expect(response.json).toMatchObject({
      type: 'urn:inference-service:problem-details:internal-server-error',
      title: 'Internal Server Error',
      status: 500,
      detail: 'model exploded',
      requestId: response.headers['nvcf-reqid'],
    });
    const teapot = await invoke({ fail: { status: 422, error: '' } });
    expect(teapot.json).toMatchObject({ status: 422, detail: 'Inference error' });
  });
});

describe('failures', () => {
  it('redelivers a job whose container was killed mid-call and completes it exactly once', async () => {
    const accepted = await invoke({ message: 'survivor', delay: 1.5 }, { headers: { 'NVCF-POLL-SECONDS': '0' } });
    const requestId = accepted.headers['nvcf-reqid']!;
    await waitFor('the container to start the job', async () => (await calls(requestId)).starts === 1);
    await echo.stop('SIGKILL');
    echo = await startEcho({ port: echo.port, env: { ECHO_CALL_LOG: callLog } });
    const done = await settle(requestId);
    expect(done.statusCode).toBe(200);
    expect(done.json).toBe('survivor');
    expect(await calls(requestId)).toEqual({ starts: 2, dones: 1 });
    expect((await getInvocation(requestId))?.attempt).toBe(2);
  });

  it('completes a job exactly once on another worker when its worker is SIGKILLed mid-job', async () => {
    const other = await deployedVersion({ status: 'ACTIVE', minInstances: 0 });
    const first = startWorker(workerEnv(other, { NVCF_INSTANCE_ID: 'first' }));
    const accepted = await invoke({ message: 'orphan', delay: 1.5 }, { target: other, headers: { 'NVCF-POLL-SECONDS': '0' } });
    const requestId = accepted.headers['nvcf-reqid']!;
    await waitFor('the first worker to start the job', async () => (await calls(requestId)).starts === 1);
    const second = startWorker(workerEnv(other, { NVCF_INSTANCE_ID: 'second' }));
    await first.stop('SIGKILL');
    const done = await settle(requestId);
    expect(done.json).toBe('orphan');
    const record = await getInvocation(requestId);
    expect(record).toMatchObject({ status: 'FULFILLED', instanceId: 'second' });
    // Usually the second delivery; under load one more may meet the dead worker's lease still live and wait it out.
    expect(record!.attempt).toBeGreaterThanOrEqual(2);
    // The container ran it for the dead worker too (that answer went nowhere) and for the second; a delivery that met the lease ran nothing.
    expect((await calls(requestId)).starts).toBe(2);
    const { Attributes } = await sqs().send(
      new GetQueueAttributesCommand({ QueueUrl: other.deployment!.queueUrl, AttributeNames: ['ApproximateNumberOfMessages', 'ApproximateNumberOfMessagesNotVisible'] }),
    );
    expect(Attributes).toMatchObject({ ApproximateNumberOfMessages: '0', ApproximateNumberOfMessagesNotVisible: '0' });
    expect(await second.stop('SIGTERM')).toBe(0);
  });

  it('finishes in-flight jobs on SIGTERM, removes its instance and exits 0', async () => {
    const other = await deployedVersion({ status: 'ACTIVE', minInstances: 0 });
    const draining = startWorker(workerEnv(other, { NVCF_INSTANCE_ID: 'draining' }));
    const accepted = await invoke({ message: 'drained', delay: 1 }, { target: other, headers: { 'NVCF-POLL-SECONDS': '0' } });
    const requestId = accepted.headers['nvcf-reqid']!;
    await waitFor('the worker to start the job', async () => (await calls(requestId)).starts === 1);
    expect(await draining.stop('SIGTERM')).toBe(0);
    expect((await getInvocation(requestId))?.status).toBe('FULFILLED');
    const { Item } = await dynamo().send(new GetCommand({ TableName: tableName('instances'), Key: { versionId: other.versionId, instanceId: 'draining' } }));
    expect(Item).toBeUndefined();
  });

  it('hands its job back once the grace period is over on SIGTERM, also when every slot is busy', async () => {
    const other = await deployedVersion({ status: 'ACTIVE', minInstances: 0, concurrency: 1 });
    const busy = startWorker(workerEnv(other, { NVCF_WORKER_GRACE_SECONDS: '1' }));
    const accepted = await invoke({ message: 'long', delay: 12 }, { target: other, headers: { 'NVCF-POLL-SECONDS': '0' } });
    const requestId = accepted.headers['nvcf-reqid']!;
    await waitFor('the worker to start the job', async () => (await calls(requestId)).starts === 1);
    const stoppedAt = Date.now();
    expect(await busy.stop('SIGTERM')).toBe(0);
    expect(Date.now() - stoppedAt).toBeLessThan(6000);
    expect((await getInvocation(requestId))?.status).toBe('QUEUED');
  });

  it('errors a job whose container stays unreachable through the last delivery and leaves the message in the dead-letter queue', async () => {
    process.env[ENV.maxReceiveCount] = '2';
    const other = await deployedVersion({ status: 'ACTIVE', minInstances: 0 });
    delete process.env[ENV.maxReceiveCount];
    const crashing = await startEcho({ env: { ECHO_CALL_LOG: callLog } });
    const keeper = startWorker(workerEnv(other, { NVCF_WORKER_INFERENCE_URL: crashing.url }));
    const accepted = await invoke({ crash: true }, { target: other, headers: { 'NVCF-POLL-SECONDS': '0' } });
    const requestId = accepted.headers['nvcf-reqid']!;
    let server = crashing;
    // Play the controller: restart the container whenever it dies.
    const restarts = (async () => {
      for (let i = 0; i < 2; i += 1) {
        await server.exited;
        server = await startEcho({ port: crashing.port, env: { ECHO_CALL_LOG: callLog } });
      }
    })();
    const done = await settle(requestId);
    expect(done.statusCode).toBe(500);
    expect(done.json).toMatchObject({ type: 'urn:inference-connection:problem-details:internal-server-error', status: 500, detail: expect.stringContaining('2 attempts') });
    await restarts;
    await waitFor('the message to reach the dead-letter queue', async () => {
      const { Attributes } = await sqs().send(new GetQueueAttributesCommand({ QueueUrl: other.deployment!.deadLetterQueueUrl, AttributeNames: ['ApproximateNumberOfMessages'] }));
      return Attributes?.ApproximateNumberOfMessages === '1';
    });
    await keeper.stop();
  });
});

describe('what the container and the client see', () => {
  it('forwards as NVCF-POLL-SECONDS the seconds left of the client’s real wait, at most the front’s cap', async () => {
    const response = await invoke({ message: 'p', headers: true }, { headers: { 'NVCF-POLL-SECONDS': '300' } });
    const seconds = Number(response.json.headers['nvcf-poll-seconds']);
    expect(seconds).toBeLessThanOrEqual(INVOCATION_URL_POLL_CAP_SECONDS);
    expect(seconds).toBeGreaterThanOrEqual(INVOCATION_URL_POLL_CAP_SECONDS - 2);
    const viaApiGateway = await invoke({ message: 'p', headers: true }, { headers: { 'NVCF-POLL-SECONDS': '300', [FRONT_HEADER]: FRONTS.apiGateway } });
    expect(Number(viaApiGateway.json.headers['nvcf-poll-seconds'])).toBeLessThanOrEqual(API_GATEWAY_POLL_CAP_SECONDS);
  });

  it('sends a client header value beyond Latin-1 to the container as its UTF-8 bytes instead of failing the job', async () => {
    const response = await invoke({ message: 'h', headers: true }, { headers: { 'x-name': 'Zoë 😀' } });
    expect(response.statusCode).toBe(200);
    expect(Buffer.from(response.json.headers['x-name'], 'latin1').toString('utf8')).toBe('Zoë 😀');
  });

  it('keeps the platform’s NVCF-REQID and NVCF-STATUS over nvcf-* headers the container answers', async () => {
    const response = await invoke({ message: 'forger', responseHeaders: { 'NVCF-STATUS': 'bogus', 'nvcf-reqid': 'forged', 'NVCF-PERCENT-COMPLETE': '7', 'x-kept': 'yes' } });
    expect(response.statusCode).toBe(200);
    expect(response.headers['nvcf-status']).toBe('fulfilled');
    expect(response.headers['nvcf-reqid']).toMatch(/^[0-9a-f-]{36}$/);
    expect(response.headers['x-kept']).toBe('yes');
    expect(response.headers).not.toHaveProperty('nvcf-percent-complete');
  });

  it('answers a text body within 5 MiB directly however much it would grow JSON-escaped (no Lambda on the path)', async () => {
    const response = await invoke({ responseText: { chunk: '"', repeats: 4 * MiB } });
    expect(response.statusCode).toBe(200);
    expect(response.body.equals(Buffer.alloc(4 * MiB, '"'))).toBe(true);
  });

  it('answers a 4.4 MiB binary body directly, since its base64 form fits Lambda’s answer', async () => {
    const size = Math.floor(4.4 * MiB);
    const response = await invoke({ responseBytes: size });
    expect(response.statusCode).toBe(200);
    expect(response.body.equals(Buffer.from(Array.from({ length: size }, (_, i) => i % 251)))).toBe(true);
  });

  it('errors a container error with a huge error field once, with its status and the detail cut to 4 KB', async () => {
    const response = await invoke({ fail: { status: 422, error: 'x', repeats: 1_000_000 } });
    expect(response.statusCode).toBe(422);
    expect(Buffer.byteLength(response.json.detail)).toBeLessThanOrEqual(MAX_PROBLEM_DETAIL_BYTES);
    expect(response.json.detail).toMatch(/^x+…$/);
    expect(await calls(response.headers['nvcf-reqid']!)).toEqual({ starts: 1, dones: 1 });
  });

  it('errors at once, without running the job again, when the container answered but the result cannot be stored; sweeps stale directories on start', async () => {
    const other = await deployedVersion({ status: 'ACTIVE', minInstances: 0 });
    const env = workerEnv(other, { NVCF_BUCKET: 'no-such-bucket' });
    // Left by an earlier run of the worker in the same pod.
    const stale = join(env.NVCF_WORKER_OUTPUT_DIR!, randomUUID());
    await mkdir(join(stale, 'sub'), { recursive: true });
    await writeFile(join(stale, 'sub', 'file'), 'x');
    const broken = startWorker(env);
    // 400 KiB is too large for the record: the worker of this async call must put it in the (missing) bucket.
    const accepted = await invoke({ responseBytes: 400 * 1024 }, { target: other, headers: { 'NVCF-POLL-SECONDS': '0' } });
    expect(accepted.statusCode).toBe(202);
    const response = await settle(accepted.headers['nvcf-reqid']!);
    expect(response.statusCode).toBe(500);
    expect(response.json).toMatchObject({ type: 'urn:nvcf-worker-service:problem-details:internal-server-error', detail: expect.stringContaining('storing the result') });
    expect(await calls(response.headers['nvcf-reqid']!)).toEqual({ starts: 1, dones: 1 });
    expect(existsSync(stale)).toBe(false);
    expect(await broken.stop()).toBe(0);
  });
});

describe('ownership of a running job', () => {
  function messageFor(requestId: string, body: unknown): InvocationMessage {
    return {
      requestId,
      accountId: account.accountId,
      functionId: version.functionId,
      versionId: version.versionId,
      headers: { 'content-type': 'application/json' },
      body: { kind: 'inline', encoding: 'utf8', data: JSON.stringify(body) },
      assetIds: [],
      pollSeconds: 0,
      acceptedAt: new Date().toISOString(),
    };
  }

  it('runs a job once when its message arrives twice (a retried send), and drops the duplicate', async () => {
    const requestId = randomUUID();
    const now = new Date();
    await createQueuedInvocation({
      requestId,
      accountId: account.accountId,
      functionId: version.functionId,
      versionId: version.versionId,
      status: 'QUEUED',
      createdAt: now.toISOString(),
      updatedAt: now.toISOString(),
      expiresAt: Math.floor(now.getTime() / 1000) + 600,
    });
    // Longer than the 2 s lease: a duplicate that waited for the lease would take the job over.
    const body = JSON.stringify(messageFor(requestId, { message: 'twice', delay: 2.5 }));
    await Promise.all([1, 2].map(() => sqs().send(new SendMessageCommand({ QueueUrl: version.deployment!.queueUrl, MessageBody: body }))));
    const done = await settle(requestId);
    expect(done.json).toBe('twice');
    expect(await calls(requestId)).toEqual({ starts: 1, dones: 1 });
    await waitFor('both messages to be gone', async () => {
      const counts = await queueCounts(version.deployment!.queueUrl);
      return counts.waiting === '0' && counts.inFlight === '0';
    }, 5000);
  });

  it('stops a job whose claim was taken over and leaves the invocation to its new owner', async () => {
    const accepted = await invoke({ message: 'stolen', delay: 2 }, { headers: { 'NVCF-POLL-SECONDS': '0' } });
    const requestId = accepted.headers['nvcf-reqid']!;
    await waitFor('the container to start the job', async () => (await calls(requestId)).starts === 1);
    // Another delivery takes the invocation over, as it would once a lease lapsed.
    await dynamo().send(
      new UpdateCommand({
        TableName: tableName('invocations'),
        Key: { requestId },
        UpdateExpression: 'SET #owner = :thief, leaseUntil = :later',
        ExpressionAttributeNames: { '#owner': 'owner' },
        ExpressionAttributeValues: { ':thief': 'thief', ':later': Date.now() + 60_000 },
      }),
    );
    await waitFor('the worker to notice', () => worker.output().includes('the claim on the invocation was lost'), 3000);
    await waitFor('the container to finish the call', async () => (await calls(requestId)).dones === 1);
    await new Promise((resolve) => setTimeout(resolve, 500));
    const record = await getInvocation(requestId);
    expect(record).toMatchObject({ status: 'IN_PROGRESS', owner: 'thief' });
    expect(record).not.toHaveProperty('result');
    // The new owner finishes; the message is then dropped by whoever sees it.
    expect(await finishInvocation(requestId, { result: { status: 200, headers: {}, body: Buffer.from('"thief"') } }, 'thief')).toBe(true);
  });

  it('hands a job back at shutdown on its last allowed delivery with a fresh copy, which another worker completes', async () => {
    process.env[ENV.maxReceiveCount] = '1';
    const other = await deployedVersion({ status: 'ACTIVE', minInstances: 0 });
    delete process.env[ENV.maxReceiveCount];
    const leaving = startWorker(workerEnv(other, { NVCF_WORKER_GRACE_SECONDS: '1' }));
    const accepted = await invoke({ message: 'carried on', delay: 2 }, { target: other, headers: { 'NVCF-POLL-SECONDS': '0' } });
    const requestId = accepted.headers['nvcf-reqid']!;
    await waitFor('the first worker to start the job', async () => (await calls(requestId)).starts === 1);
    const staying = startWorker(workerEnv(other));
    expect(await leaving.stop('SIGTERM')).toBe(0);
    const done = await settle(requestId);
    expect(done.json).toBe('carried on');
    expect(await calls(requestId)).toMatchObject({ starts: 2 });
    const { Attributes } = await sqs().send(new GetQueueAttributesCommand({ QueueUrl: other.deployment!.deadLetterQueueUrl, AttributeNames: ['ApproximateNumberOfMessages'] }));
    expect(Attributes?.ApproximateNumberOfMessages).toBe('0');
    expect(await staying.stop()).toBe(0);
  });

  it('carries a job on with a fresh copy when its last allowed delivery finds it still held, instead of dead-lettering it', async () => {
    process.env[ENV.maxReceiveCount] = '1';
    const other = await deployedVersion({ status: 'ACTIVE', minInstances: 0 });
    delete process.env[ENV.maxReceiveCount];
    const requestId = randomUUID();
    const now = new Date();
    await createQueuedInvocation({ requestId, accountId: account.accountId, functionId: other.functionId, versionId: other.versionId, status: 'QUEUED', createdAt: now.toISOString(), updatedAt: now.toISOString(), expiresAt: Math.floor(now.getTime() / 1000) + 600 });
    const message = { ...messageFor(requestId, { message: 'still held' }), functionId: other.functionId, versionId: other.versionId };
    const { MessageId } = await sqs().send(new SendMessageCommand({ QueueUrl: other.deployment!.queueUrl, MessageBody: JSON.stringify(message) }));
    // Its owner (whose visibility lapsed) holds a live lease for a few seconds more, then dies.
    await claimInvocation(requestId, { owner: 'lapsed', attempt: 1, instanceId: 'elsewhere', messageId: MessageId, leaseMs: 3000 });

    const taking = startWorker(workerEnv(other));
    const done = await settle(requestId);

    expect(done.json).toBe('still held');
    const { Attributes } = await sqs().send(new GetQueueAttributesCommand({ QueueUrl: other.deployment!.deadLetterQueueUrl, AttributeNames: ['ApproximateNumberOfMessages'] }));
    expect(Attributes?.ApproximateNumberOfMessages).toBe('0');
    expect(await taking.stop()).toBe(0);
  });

  it('drains on GET /drain: answers 200 once its in-flight job is done, then exits 0', async () => {
    const other = await deployedVersion({ status: 'ACTIVE', minInstances: 0 });
    const port = await freePort();
    const draining = startWorker(workerEnv(other, { NVCF_WORKER_DRAIN_PORT: String(port) }));
    const accepted = await invoke({ message: 'drained over http', delay: 1 }, { target: other, headers: { 'NVCF-POLL-SECONDS': '0' } });
    const requestId = accepted.headers['nvcf-reqid']!;
    await waitFor('the worker to start the job', async () => (await calls(requestId)).starts === 1);
    const response = await fetch(`http://127.0.0.1:${port}/drain`);
    expect(response.status).toBe(200);
    // The answer came only once the job was done.
    expect((await getInvocation(requestId))?.status).toBe('FULFILLED');
    expect(await draining.exited).toBe(0);
  });
});

