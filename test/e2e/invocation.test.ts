/**
 * The invocation plane end to end, with real processes: a caller over HTTP →
 * the invocation service (in-process, behind the local front) → SQS (fauxqs)
 * → gpu-agent workers (child processes) attaching back → the echo container
 * (child process). Streams, direct invocation, cancellation and crashes.
 */
import { createHash, randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { request, type IncomingMessage } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { MiB } from '../../core/limits';
import type { FunctionVersionRecord } from '../../core/model';
import { InvocationService } from '../../invocation/service';
import { readSettings } from '../../invocation/settings';
import { LocalGateway } from '../../local/gateway';
import { serveGateway } from '../../local/http-server';
import { deployVersion, putVersion } from '../support/function-versions';
import { startEcho, startWorker, stopAllProcesses, testWorkerEnv, waitFor, type EchoServer, type TestProcess } from '../support/processes';
import { newAccount, startTestStack, type TestStack } from '../support/stack';

let stack: TestStack;
let account: { accountId: string; key: string };
let echo: EchoServer;
let callLog: string;
let workDir: string;
let version: FunctionVersionRecord;
let workers: TestProcess[] = [];
let workerCount = 0;

function workerEnv(): Record<string, string> {
  const dir = join(workDir, `worker-${(workerCount += 1)}`);
  return { ...testWorkerEnv({ stackEnv: stack.env, version, containerUrl: echo.url, dir }), NVCF_WORKER_GRACE_SECONDS: '5' };
}

/** Starts a worker and waits until it takes jobs (its instance heartbeats READY). */
async function addWorker(): Promise<TestProcess> {
  const worker = startWorker(workerEnv());
  workers.push(worker);
  // The receive loop starts right after the health check; a short pause covers it.
  await sleep(1500);
  return worker;
}

interface Received {
  status: number;
  headers: IncomingMessage['headers'];
  body: Buffer;
  /** Each chunk as it arrived, with its arrival time (ms since the request was sent). */
  chunks: { at: number; data: string }[];
  /** How the response ended: completely, or cut (aborted). */
  complete: boolean;
}

/**
 * One request over HTTP to the local front, recording chunk arrival times.
 * `abortAfterMs` disconnects the caller after that long.
 */
function send(options: { method?: string; path: string; host?: string; headers?: Record<string, string>; body?: Buffer | string; abortAfterMs?: number }): Promise<Received> {
  const url = new URL(options.path, stack.url);
  return new Promise((resolve, reject) => {
    const started = Date.now();
    const req = request(
      url,
      {
        method: options.method ?? 'POST',
        headers: {
          authorization: `Bearer ${account.key}`,
          ...(options.host ? { host: options.host } : {}),
          // Node frames a DELETE body only with an explicit length.
          ...(options.body !== undefined ? { 'content-length': String(Buffer.byteLength(options.body)) } : {}),
          ...options.headers,
        },
      },
      (res) => {
        const chunks: Received['chunks'] = [];
        const data: Buffer[] = [];
        res.on('data', (chunk: Buffer) => {
          chunks.push({ at: Date.now() - started, data: chunk.toString('utf8') });
          data.push(chunk);
        });
        const finish = () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(data), chunks, complete: res.complete });
        res.on('end', finish);
        res.on('aborted', finish);
        res.on('error', finish);
      },
    );
    req.on('error', (error) => (options.abortAfterMs !== undefined ? resolve({ status: 0, headers: {}, body: Buffer.alloc(0), chunks: [], complete: false }) : reject(error)));
    if (options.abortAfterMs !== undefined) setTimeout(() => req.destroy(), options.abortAfterMs);
    req.end(options.body);
  });
}

const json = (value: unknown) => ({ body: JSON.stringify(value), headers: { 'content-type': 'application/json' } });

async function logLines(): Promise<string[]> {
  return existsSync(callLog) ? (await readFile(callLog, 'utf8')).split('\n').filter(Boolean) : [];
}

/** The request id of the newest call the container started (NVCF-REQID it received). */
async function latestStart(after: number): Promise<string> {
  return waitFor('the container to start a call', async () => {
    const starts = (await logLines()).filter((line) => line.startsWith('start '));
    return starts.length > after ? starts.at(-1)!.split(' ')[1] : undefined;
  });
}

async function startCount(): Promise<number> {
  return (await logLines()).filter((line) => line.startsWith('start ')).length;
}

beforeAll(async () => {
  stack = await startTestStack();
  account = await newAccount();
  workDir = await mkdtemp(join(tmpdir(), 'nvcf-invocation-e2e-'));
  callLog = join(workDir, 'calls.log');
  echo = await startEcho({ env: { ECHO_CALL_LOG: callLog } });
  const record = await putVersion(account.accountId, { health: { protocol: 'HTTP', uri: '/health', port: 8000, timeout: 'PT2S', expectedStatusCode: 200 } });
  version = await deployVersion(record, { status: 'ACTIVE', specification: { minInstances: 1, maxInstances: 2, maxRequestConcurrency: 4 } });
}, 60_000);

afterEach(async () => {
  await Promise.all(workers.map((worker) => worker.stop('SIGKILL')));
  workers = [];
});

afterAll(async () => {
  await stopAllProcesses();
  await stack?.stop();
  if (workDir) await rm(workDir, { recursive: true, force: true });
});

describe('streaming', () => {
  it('relays each SSE event as the container writes it, without content-length', async () => {
    await addWorker();
    const response = await send({ path: `/v2/nvcf/pexec/functions/${version.functionId}`, ...json({ message: 'tick', stream: true, delay: 0.3, repeats: 4 }), headers: { 'content-type': 'application/json', accept: 'text/event-stream' } });
    expect(response.status).toBe(200);
    expect(response.headers['content-type']).toMatch(/^text\/event-stream/);
    expect(response.headers['content-length']).toBeUndefined();
    const events = response.chunks.filter((chunk) => chunk.data.includes('data: tick'));
    // One chunk per event (no coalescing), about 300 ms apart.
    expect(events).toHaveLength(4);
    for (let i = 1; i < events.length; i += 1) expect(events[i]!.at - events[i - 1]!.at).toBeGreaterThan(200);
    expect(response.body.toString()).toBe('data: tick\n\n'.repeat(4));
  });

  it('ends the stream with an error event when the worker dies mid-stream, and never repeats events', async () => {
    const worker = await addWorker();
    const pending = send({ path: `/v2/nvcf/pexec/functions/${version.functionId}`, ...json({ message: 'ev', stream: true, delay: 0.3, repeats: 10 }), headers: { 'content-type': 'application/json', accept: 'text/event-stream' } });
    await sleep(1000);
    await worker.stop('SIGKILL');
    await addWorker();
    const response = await pending;
    const text = response.body.toString();
    expect(text).toMatch(/event: error\n/);
    const delivered = text.split('event: error')[0]!.match(/data: ev/g)!.length;
    expect(delivered).toBeGreaterThan(0);
    expect(delivered).toBeLessThan(10);
    // Nothing after the error event: the stream was not restarted.
    expect(text.split('event: error')[1]).not.toContain('data: ev');
  });
});

describe('direct invocation', () => {
  it('passes GET, PUT, DELETE and PATCH with path and query to the container, addressed by host or by header', async () => {
    await addWorker();
    const host = `${version.functionId}.invocation.localhost`;
    const yeet = await send({ method: 'GET', path: '/yeet', host });
    expect(yeet.status).toBe(200);
    expect(JSON.parse(yeet.body.toString())).toBe('yeet');
    const query = await send({ method: 'GET', path: '/query?name=nv&age=3', host: `${version.versionId}.${version.functionId}.invocation.localhost` });
    expect(JSON.parse(query.body.toString())).toMatchObject({ parameters: { name: 'nv', age: '3' } });
    for (const method of ['PUT', 'DELETE', 'PATCH']) {
      const body = randomBytes(1000);
      const response = await send({ method, path: '/things/7?x=1&y=two', host: 'invocation.localhost', headers: { 'function-id': version.functionId, 'content-type': 'application/octet-stream' }, body });
      expect(response.status, method).toBe(200);
      expect(JSON.parse(response.body.toString())).toMatchObject({ method, path: '/things/7', query: { x: '1', y: 'two' }, bytes: 1000, sha256: createHash('sha256').update(body).digest('hex') });
    }
  });

  it('carries a 50 MiB binary body to the container and a binary answer back byte for byte', async () => {
    await addWorker();
    const body = randomBytes(50 * MiB);
    const upload = await send({ method: 'PUT', path: '/blob', host: 'invocation.localhost', headers: { 'function-id': version.functionId, 'content-type': 'application/octet-stream' }, body });
    expect(upload.status).toBe(200);
    expect(JSON.parse(upload.body.toString())).toMatchObject({ bytes: body.length, sha256: createHash('sha256').update(body).digest('hex') });
    const download = await send({ method: 'GET', path: '/blob?binary=3000000', host: `${version.functionId}.invocation.localhost` });
    expect(download.status).toBe(200);
    expect(download.headers['content-type']).toBe('application/octet-stream');
    expect(download.body.length).toBe(3_000_000);
  }, 60_000);

  it('answers 404 for an unknown function host and 400 for a malformed function-id', async () => {
    const unknown = await send({ method: 'GET', path: '/yeet', host: '00000000-0000-4000-8000-000000000000.invocation.localhost' });
    expect(unknown.status).toBe(404);
    expect(unknown.headers['content-type']).toBe('application/problem+json');
    const malformed = await send({ method: 'GET', path: '/yeet', host: 'invocation.localhost', headers: { 'function-id': 'not-a-uuid' } });
    expect(malformed.status).toBe(400);
  });
});

describe('cancellation', () => {
  it('closes the container connection within a second when a running caller disconnects', async () => {
    await addWorker();
    const before = await startCount();
    const disconnect = send({ path: `/v2/nvcf/pexec/functions/${version.functionId}`, ...json({ message: 'slow', delay: 5 }), abortAfterMs: 800 });
    const requestId = await latestStart(before);
    await disconnect;
    const gone = Date.now();
    const aborted = await waitFor('the container to see the call aborted', async () => (await logLines()).find((line) => line.startsWith(`aborted ${requestId}`)), 3000);
    expect(Number(aborted.split(' ')[2]) - gone).toBeLessThan(1000);
  });

  it('never runs a call whose caller disconnected while it was queued', async () => {
    const before = await startCount();
    await send({ path: `/v2/nvcf/pexec/functions/${version.functionId}`, ...json({ message: 'never' }), abortAfterMs: 300 });
    await addWorker();
    await sleep(2000);
    expect(await startCount()).toBe(before);
  });

  it('cancels a stored call with the cancel route: 204, then its status is 410 canceled and the container stops', async () => {
    await addWorker();
    const before = await startCount();
    const accepted = await send({ path: `/v2/nvcf/pexec/functions/${version.functionId}`, ...json({ message: 'later', delay: 6 }), headers: { 'content-type': 'application/json', 'nvcf-poll-seconds': '0' } });
    expect(accepted.status).toBe(202);
    const requestId = String(accepted.headers['nvcf-reqid']);
    expect(await latestStart(before)).toBe(requestId);
    const cancel = await send({ path: `/v2/nvcf/pexec/cancel/${requestId}` });
    expect(cancel.status).toBe(204);
    const status = await send({ method: 'GET', path: `/v2/nvcf/pexec/status/${requestId}` });
    expect(status.status).toBe(410);
    expect(status.headers['nvcf-status']).toBe('canceled');
    // The worker learns of it when it next renews its lease (every lease/3 s).
    await waitFor('the container to see the cancelled call closed', async () => (await logLines()).some((line) => line.startsWith(`aborted ${requestId}`)), 4000);
    expect((await send({ path: `/v2/nvcf/pexec/cancel/00000000-0000-4000-8000-000000000000` })).status).toBe(404);
  });
});

describe('crashes', () => {
  it('answers a sync call whose worker was killed mid-call from the next delivery, on the same connection', async () => {
    const first = await addWorker();
    const before = await startCount();
    const pending = send({ path: `/v2/nvcf/pexec/functions/${version.functionId}`, ...json({ message: 'again', delay: 1 }), headers: { 'content-type': 'application/json', 'nvcf-poll-seconds': '30' } });
    await latestStart(before);
    await first.stop('SIGKILL');
    await addWorker();
    const response = await pending;
    expect(response.status).toBe(200);
    expect(JSON.parse(response.body.toString())).toBe('again');
    expect(await startCount()).toBe(before + 2);
  }, 40_000);

  it('keeps stored results retrievable across a restart of the invocation service', async () => {
    await addWorker();
    const accepted = await send({ path: `/v2/nvcf/pexec/functions/${version.functionId}`, ...json({ message: 'kept' }), headers: { 'content-type': 'application/json', 'nvcf-poll-seconds': '0' } });
    expect(accepted.status).toBe(202);
    const requestId = String(accepted.headers['nvcf-reqid']);
    // Another instance of the service (the first one is gone for this caller) answers from the store.
    const other = new InvocationService(readSettings(stack.env, { attachHost: '127.0.0.1', attachPort: 0 }));
    await other.start();
    const front = await serveGateway(new LocalGateway(), 0, undefined, other);
    try {
      const result = await waitFor('the stored result', async () => {
        const response = await fetch(`${front.url}/v2/nvcf/pexec/status/${requestId}`, { headers: { authorization: `Bearer ${account.key}` } });
        return response.status === 200 ? response.json() : undefined;
      });
      expect(result).toBe('kept');
    } finally {
      await other.close();
      await front.close();
    }
  });
});
