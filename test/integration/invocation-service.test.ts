/**
 * The invocation service on the emulators (real SQS, DynamoDB and S3 through
 * the AWS SDK), called over HTTP as a client would, with the test playing the
 * worker: it long-polls the deployment's queue, attaches back to the service
 * with the worker's attach client, and answers as each scenario dictates.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { createServer as createHttp2Server } from 'node:http2';
import type { AddressInfo } from 'node:net';
import { request as httpRequest, type IncomingMessage } from 'node:http';
import { PassThrough, Readable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { GetObjectCommand, PutObjectCommand } from '@aws-sdk/client-s3';
import { PutCommand, UpdateCommand } from '@aws-sdk/lib-dynamodb';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { revokeApiKey } from '../../core/api-keys';
import { ATTACH_STATE_HEADER, encodeFrame } from '../../core/attach';
import { dynamo, s3 } from '../../core/aws';
import { bucketName, tableName } from '../../core/config';
import { claimInvocation, finishInvocation, getInvocation, newOwnerToken } from '../../core/invocations';
import { API_GATEWAY_POLL_CAP_SECONDS, API_KEY_CACHE_SECONDS, INVOCATION_URL_POLL_CAP_SECONDS, MAX_INLINE_REQUEST_BYTES } from '../../core/limits';
import type { FunctionStatus, FunctionVersionRecord } from '../../core/model';
import { FRONT_HEADER, FRONTS, assetObjectKey, inputObjectKey } from '../../core/names';
import { attach, closeAttachSessions, type LiveChannel } from '../../gpu-agent/worker/attach';
import { InvocationService } from '../../invocation/service';
import { readSettings, type InvocationSettings } from '../../invocation/settings';
import { deployVersion, putVersion } from '../support/function-versions';
import { FRAME, callService, queueHasMessage, rawAttach, receiveJob, receiveJobs, type CallerRequest, type Job } from '../support/scripted-worker';
import { newAccount, startTestStack, type TestStack } from '../support/stack';

let stack: TestStack;
let account: { accountId: string; key: string };
/** The stack's own service, behind the same HTTP front as `npm start` (serveGateway). */
let service: InvocationService;
let front: { url: string };

function serviceSettings(overrides: Partial<InvocationSettings> = {}): InvocationSettings {
  return readSettings({}, { port: 0, listenHost: '127.0.0.1', attachPort: 0, attachHost: '127.0.0.1', invocationDomain: 'localhost', ...overrides });
}

async function versionWith(status: FunctionStatus = 'ACTIVE', overrides: Partial<FunctionVersionRecord> = {}): Promise<FunctionVersionRecord> {
  const record = await putVersion(account.accountId, overrides);
  return status === 'INACTIVE' ? record : deployVersion(record, { status });
}

function call(request: CallerRequest, baseUrl = front.url) {
  return callService(baseUrl, { ...request, headers: { authorization: `Bearer ${account.key}`, ...request.headers } });
}

/** POST pexec (I1) of `version`'s function with a JSON body. */
function pexec(version: Pick<FunctionVersionRecord, 'functionId'>, headers: Record<string, string> = {}, body: Buffer | string = '{"prompt":"hi"}', baseUrl?: string) {
  return call({ path: `/v2/nvcf/pexec/functions/${version.functionId}`, headers: { 'content-type': 'application/json', ...headers }, body }, baseUrl);
}

/** Attaches as a worker would; fails the test unless the call is live. */
async function attachLive(job: Job, workerId = 'worker-1'): Promise<LiveChannel> {
  const attached = await attach(job.message.replyTo!, job.message.requestId, workerId);
  if (attached.state !== 'live') throw new Error(`expected a live attach, got ${attached.state}`);
  return attached.channel;
}

/** The whole request body a live channel carries. */
async function bodyOf(channel: LiveChannel): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of channel.body) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

beforeAll(async () => {
  stack = await startTestStack();
  account = await newAccount();
  service = stack.service;
  front = { url: stack.url };
});
afterAll(async () => {
  closeAttachSessions();
  await stack?.stop();
});

describe('sync pexec', () => {
  it('relays the worker’s status, headers and body, and writes no Invocations item', async () => {
    const version = await versionWith();
    const { reply } = pexec(version, { 'NVCF-POLL-SECONDS': '5', 'x-trace': 'abc' });
    const job = await receiveJob(version);
    expect(job.message).toMatchObject({ functionId: version.functionId, versionId: version.versionId, body: { kind: 'inline', encoding: 'utf8', data: '{"prompt":"hi"}' } });
    expect(job.message.replyTo).toMatchObject({ host: '127.0.0.1', port: service.attachPort });
    expect(job.message.headers).toMatchObject({ 'x-trace': 'abc' });
    expect(job.message.headers).not.toHaveProperty('authorization');
    const channel = await attachLive(job);
    expect((await bodyOf(channel)).length).toBe(0);
    const body = Buffer.from('{"answer":42}');
    const verdict = await channel.answer({
      status: 201,
      headers: { 'content-type': 'application/json', 'x-model': 'm1', 'nvcf-status': 'forged', 'nvcf-reqid': 'forged', 'keep-alive': 'timeout=5', 'transfer-encoding': 'chunked' },
      bytes: body.length,
    });
    expect(verdict).toBe('accepted');
    expect(await channel.sendBody(body)).toBe(true);
    const response = await reply;
    expect(response.status).toBe(201);
    expect(response.headers).toMatchObject({ 'nvcf-reqid': job.message.requestId, 'nvcf-status': 'fulfilled', 'content-type': 'application/json', 'x-model': 'm1', 'content-length': String(body.length) });
    expect(response.headers).not.toHaveProperty('keep-alive');
    expect(response.body.equals(body)).toBe(true);
    expect(await getInvocation(job.message.requestId)).toBeUndefined();
    await job.done();
  });
});

describe('pexec answers', () => {
  it('turns a container error into a problem carrying the container’s own detail', async () => {
    const version = await versionWith();
    const { reply } = pexec(version);
    const job = await receiveJob(version);
    const channel = await attachLive(job);
    const said = Buffer.from(JSON.stringify({ detail: [{ loc: ['body', 'prompt'], msg: 'field required', type: 'missing' }] }));
    expect(await channel.answer({ status: 422, headers: { 'content-type': 'application/json' }, bytes: said.length })).toBe('accepted');
    await channel.sendBody(said);
    const response = await reply;
    expect([response.status, response.headers['content-type'], response.headers['nvcf-status']]).toEqual([422, 'application/problem+json', 'errored']);
    expect(JSON.parse(response.json.detail)).toEqual([{ loc: ['body', 'prompt'], msg: 'field required', type: 'missing' }]);
    await job.done();
  });

  it('answers a large result stored as a zip with 302 to a presigned URL of it', async () => {
    const version = await versionWith();
    const { reply } = pexec(version);
    const job = await receiveJob(version);
    const zipKey = `outputs/${job.message.requestId}/w1/result.zip`;
    await s3().send(new PutObjectCommand({ Bucket: bucketName(), Key: zipKey, Body: 'PK-zip' }));
    const channel = await attachLive(job);
    // A zip is the whole answer: no body follows (as the worker does it), and the call is over.
    expect(await channel.answer({ status: 200, headers: {}, zipKey })).toBe('accepted');
    const response = await reply;
    expect([response.status, response.headers['nvcf-status']]).toEqual([302, 'fulfilled']);
    expect(await channel.ended).toBe('gone');
    expect((await attach(job.message.replyTo!, job.message.requestId, 'worker-2')).state).toBe('finished');
    const zip = await fetch(String(response.headers.location));
    expect(await zip.text()).toBe('PK-zip');
    await job.done();
  });
});

describe('streaming', () => {
  it('passes each SSE event to the caller as the worker sends it, without a content-length', async () => {
    const version = await versionWith();
    const { reply } = pexec(version, { accept: 'text/event-stream' });
    const job = await receiveJob(version);
    expect(job.message.stream).toBe(true);
    const channel = await attachLive(job);
    expect(await channel.answer({ status: 200, headers: { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' } })).toBe('accepted');
    const events = new PassThrough();
    const sending = channel.sendBody(events);
    const sentAt: number[] = [];
    for (let i = 0; i < 5; i += 1) {
      if (i > 0) await sleep(200);
      sentAt.push(Date.now());
      events.write(`data: {"token":${i}}\n\n`);
    }
    events.end();
    expect(await sending).toBe(true);
    const response = await reply;
    expect(response.status).toBe(200);
    expect(response.headers['content-type']).toBe('text/event-stream');
    expect(response.headers).not.toHaveProperty('content-length');
    expect(response.chunks.map((chunk) => chunk.data.toString())).toEqual(sentAt.map((_, i) => `data: {"token":${i}}\n\n`));
    response.chunks.forEach((chunk, i) => expect(chunk.at - sentAt[i]!).toBeLessThan(60));
    await job.done();
  });
});

describe('stream heads', () => {
  it('passes an SSE head on before the first event is written', async () => {
    const version = await versionWith();
    const caller = httpRequest(new URL(`/v2/nvcf/pexec/functions/${version.functionId}`, front.url), {
      method: 'POST',
      agent: false,
      headers: { authorization: `Bearer ${account.key}`, accept: 'text/event-stream', 'content-type': 'application/json' },
    });
    const headAt = new Promise<number>((resolve) => caller.on('response', () => resolve(Date.now())));
    caller.on('error', () => undefined);
    caller.end('{}');
    const job = await receiveJob(version);
    const channel = await attachLive(job);
    const answeredAt = Date.now();
    expect(await channel.answer({ status: 200, headers: { 'content-type': 'text/event-stream' } })).toBe('accepted');
    const events = new PassThrough();
    const sending = channel.sendBody(events);
    const first = await Promise.race([headAt, sleep(300).then(() => undefined)]);
    events.end('data: late\n\n');
    await sending;
    expect(first).toBeDefined();
    expect(first! - answeredAt).toBeLessThan(100);
    caller.destroy();
    await job.done();
  });
});

describe('backpressure', () => {
  it('holds the worker back while the caller does not read, instead of buffering the answer', async () => {
    const version = await versionWith();
    const caller = httpRequest(new URL(`/v2/nvcf/pexec/functions/${version.functionId}`, front.url), {
      method: 'POST',
      agent: false,
      headers: { authorization: `Bearer ${account.key}`, accept: 'text/event-stream', 'content-type': 'application/json' },
    });
    const response = new Promise<IncomingMessage>((resolve) => caller.on('response', resolve));
    caller.on('error', () => undefined);
    caller.end('{}');
    const job = await receiveJob(version);
    const channel = await attachLive(job);
    expect(await channel.answer({ status: 200, headers: { 'content-type': 'text/event-stream' } })).toBe('accepted');
    let produced = 0;
    const chunk = Buffer.alloc(64 * 1024, 'x');
    const source = new Readable({
      read() {
        produced += chunk.length;
        this.push(chunk);
      },
    });
    const sending = channel.sendBody(source);
    (await response).pause();
    await sleep(500);
    // Sockets, HTTP/2 windows and stream buffers hold a few MiB at most; an unbounded relay would have taken far more by now.
    expect(produced).toBeLessThan(16 * 1024 * 1024);
    const before = produced;
    await sleep(200);
    expect(produced - before).toBeLessThan(256 * 1024);
    caller.destroy();
    expect(await channel.ended).toBe('canceled');
    source.destroy();
    expect(await sending).toBe(false);
    await job.done();
  });
});

describe('becoming durable', () => {
  it('answers 202 pending-evaluation when the poll window ends while queued, stores the call, and tells a late worker it is durable', async () => {
    const version = await versionWith();
    const response = await pexec(version, { 'NVCF-POLL-SECONDS': '1' }).reply;
    expect(response.status).toBe(202);
    expect(response.headers['nvcf-status']).toBe('pending-evaluation');
    const requestId = String(response.headers['nvcf-reqid']);
    expect(await getInvocation(requestId)).toMatchObject({ status: 'QUEUED', accountId: account.accountId, versionId: version.versionId });
    const job = await receiveJob(version);
    expect(job.message.requestId).toBe(requestId);
    expect((await attach(job.message.replyTo!, requestId, 'late-worker')).state).toBe('durable');
    const raw = await rawAttach(job.message);
    expect([raw.status, raw.state]).toEqual([410, 'durable']);
    raw.kill();
    await job.done();
  });

  it('hands a result that arrives as the poll window ends to exactly one of the caller and the store', async () => {
    const version = await versionWith();
    // Heads sent from well before to well after the deadline, most within a few ms of it.
    const offsets = [-80, -40, ...Array.from({ length: 31 }, (_, i) => i - 15), 40, 80];
    const replies = offsets.map(() => pexec(version, { 'NVCF-POLL-SECONDS': '1' }).reply);
    const jobs = await receiveJobs(version, offsets.length);
    expect(jobs).toHaveLength(offsets.length);
    const channels = await Promise.all(jobs.map((job) => attachLive(job)));
    const body = Buffer.from('{"done":true}');
    const verdicts = await Promise.all(
      jobs.map(async (job, i) => {
        const deadline = Date.parse(job.message.acceptedAt) + job.message.pollSeconds * 1000;
        await sleep(Math.max(0, deadline + offsets[i]! - Date.now()));
        const verdict = await channels[i]!.answer({ status: 200, headers: { 'content-type': 'application/json' }, bytes: body.length });
        if (verdict === 'accepted') await channels[i]!.sendBody(body);
        return verdict;
      }),
    );
    const byRequest = new Map(jobs.map((job, i) => [job.message.requestId, verdicts[i]!]));
    const outcomes = { relayed: 0, stored: 0 };
    for (const response of await Promise.all(replies)) {
      const requestId = String(response.headers['nvcf-reqid']);
      const verdict = byRequest.get(requestId);
      if (response.status === 200) {
        outcomes.relayed += 1;
        expect(verdict).toBe('accepted');
        expect(response.body.equals(body)).toBe(true);
        expect(await getInvocation(requestId)).toBeUndefined();
      } else {
        outcomes.stored += 1;
        expect([response.status, response.headers['nvcf-status'], verdict]).toEqual([202, 'in-progress', 'durable']);
        // The worker that heard "durable" stores the outcome; I3 then has it.
        const owner = newOwnerToken();
        expect(await claimInvocation(requestId, { owner, attempt: 1, instanceId: 'test', leaseMs: 60_000 })).toMatchObject({ kind: 'claimed' });
        expect(await finishInvocation(requestId, { result: { status: 200, headers: { 'content-type': 'application/json' }, body } }, owner)).toBe(true);
        const polled = await call({ method: 'GET', path: `/v2/nvcf/pexec/status/${requestId}` }).reply;
        expect([polled.status, polled.body.toString()]).toEqual([200, body.toString()]);
      }
    }
    expect(outcomes.relayed + outcomes.stored).toBe(offsets.length);
    expect(outcomes.relayed).toBeGreaterThan(0);
    expect(outcomes.stored).toBeGreaterThan(0);
    await Promise.all(jobs.map((job) => job.done()));
  });

  it('answers a progress update with 202, NVCF-PERCENT-COMPLETE and the partial response, and stores the progress', async () => {
    const version = await versionWith();
    const { reply } = pexec(version, { 'NVCF-POLL-SECONDS': '5' });
    const job = await receiveJob(version);
    const channel = await attachLive(job);
    channel.progress({ percentComplete: 40, partialResponse: '{"stage":"denoising"}' });
    const response = await reply;
    expect(response.status).toBe(202);
    expect(response.headers).toMatchObject({ 'nvcf-status': 'in-progress', 'nvcf-percent-complete': '40', 'nvcf-reqid': job.message.requestId });
    expect(response.json).toEqual({ stage: 'denoising' });
    expect(await channel.ended).toBe('durable');
    expect(await getInvocation(job.message.requestId)).toMatchObject({ status: 'IN_PROGRESS', percentComplete: 40, partialResponse: '{"stage":"denoising"}' });
    await job.done();
  });

  it('stores a body over the inline limit in S3 before answering 202', async () => {
    const version = await versionWith();
    const body = randomBytes(MAX_INLINE_REQUEST_BYTES + 1000);
    const response = await pexec(version, { 'NVCF-POLL-SECONDS': '1', 'content-type': 'application/octet-stream' }, body).reply;
    expect(response.status).toBe(202);
    const requestId = String(response.headers['nvcf-reqid']);
    const { Body } = await s3().send(new GetObjectCommand({ Bucket: bucketName(), Key: inputObjectKey(requestId) }));
    expect(Buffer.from(await Body!.transformToByteArray()).equals(body)).toBe(true);
    const job = await receiveJob(version);
    expect(job.message.body).toEqual({ kind: 'attach', bytes: body.length });
    await job.done();
  });

  it('queues an async call (poll 0) as QUEUED with its large body in S3 and its headers forwarded', async () => {
    const version = await versionWith();
    const body = randomBytes(MAX_INLINE_REQUEST_BYTES + 1000);
    const response = await pexec(version, { 'NVCF-POLL-SECONDS': '0', 'content-type': 'application/octet-stream', 'x-custom': 'kept', 'NVCF-REQID': 'forged' }, body).reply;
    expect([response.status, response.headers['nvcf-status']]).toEqual([202, 'pending-evaluation']);
    const requestId = String(response.headers['nvcf-reqid']);
    expect(await getInvocation(requestId)).toMatchObject({ status: 'QUEUED' });
    const job = await receiveJob(version);
    expect(job.message.replyTo).toBeUndefined();
    expect(job.message.body).toEqual({ kind: 's3', key: inputObjectKey(requestId), bytes: body.length });
    expect(job.message.headers).toMatchObject({ 'x-custom': 'kept' });
    expect(job.message.headers).not.toHaveProperty('nvcf-reqid');
    await job.done();
  });
});

describe('cancellation', () => {
  it('cancels a queued call whose caller disconnects: the worker that attaches later is told canceled', async () => {
    const version = await versionWith();
    const { request } = pexec(version, { 'NVCF-POLL-SECONDS': '10' });
    const job = await receiveJob(version);
    request.destroy();
    await sleep(100);
    expect((await attach(job.message.replyTo!, job.message.requestId, 'worker-1')).state).toBe('canceled');
    await job.done();
  });

  it('tells the worker of a running call within 1 s that its caller disconnected', async () => {
    const version = await versionWith();
    const { request } = pexec(version, { 'NVCF-POLL-SECONDS': '10' });
    const job = await receiveJob(version);
    const channel = await attachLive(job);
    const disconnectedAt = Date.now();
    request.destroy();
    expect(await channel.ended).toBe('canceled');
    expect(Date.now() - disconnectedAt).toBeLessThan(1000);
    await job.done();
  });

  it('stops the worker within 1 s when the caller of a stream disconnects mid-stream', async () => {
    const version = await versionWith();
    const caller = httpRequest(new URL(`/v2/nvcf/pexec/functions/${version.functionId}`, front.url), {
      method: 'POST',
      agent: false,
      headers: { authorization: `Bearer ${account.key}`, accept: 'text/event-stream', 'content-type': 'application/json' },
    });
    const firstEvent = new Promise<void>((resolve) => caller.on('response', (response) => response.once('data', () => resolve())));
    caller.on('error', () => undefined);
    caller.end('{}');
    const job = await receiveJob(version);
    const channel = await attachLive(job);
    expect(await channel.answer({ status: 200, headers: { 'content-type': 'text/event-stream' } })).toBe('accepted');
    const events = new PassThrough();
    const sending = channel.sendBody(events);
    events.write('data: 1\n\n');
    await firstEvent;
    const disconnectedAt = Date.now();
    caller.destroy();
    expect(await channel.ended).toBe('canceled');
    expect(Date.now() - disconnectedAt).toBeLessThan(1000);
    events.write('data: 2\n\n');
    events.end();
    expect(await sending).toBe(false);
    await job.done();
  });

  it('cancels a running sync call on the cancel route: the worker hears canceled, the caller gets 410 canceled', async () => {
    const version = await versionWith();
    const { reply } = pexec(version, { 'NVCF-POLL-SECONDS': '10' });
    const job = await receiveJob(version);
    const channel = await attachLive(job);
    const canceled = await call({ path: `/v2/nvcf/pexec/cancel/${job.message.requestId}` }).reply;
    expect([canceled.status, canceled.headers['nvcf-status']]).toEqual([204, 'canceled']);
    expect(await channel.ended).toBe('canceled');
    const response = await reply;
    expect([response.status, response.headers['content-type'], response.headers['nvcf-status']]).toEqual([410, 'application/problem+json', 'canceled']);
    expect(await getInvocation(job.message.requestId)).toBeUndefined();
    await job.done();
  });

  it('cancels a durable call with 204, after which status answers 410 canceled; another account’s request is 404', async () => {
    const version = await versionWith();
    const accepted = await pexec(version, { 'NVCF-POLL-SECONDS': '0' }).reply;
    const requestId = String(accepted.headers['nvcf-reqid']);
    const stranger = await newAccount();
    const foreign = await callService(front.url, { path: `/v2/nvcf/pexec/cancel/${requestId}`, headers: { authorization: `Bearer ${stranger.key}` } }).reply;
    expect(foreign.status).toBe(404);
    const canceled = await call({ path: `/v2/nvcf/pexec/cancel/${requestId}` }).reply;
    expect(canceled.status).toBe(204);
    const polled = await call({ method: 'GET', path: `/v2/nvcf/pexec/status/${requestId}` }).reply;
    expect(polled.status).toBe(410);
    expect(polled.headers).toMatchObject({ 'content-type': 'application/problem+json', 'nvcf-status': 'canceled' });
    expect(polled.json.detail).toContain('canceled');
    expect((await receiveJob(version)).message.requestId).toBe(requestId);
  });
});

describe('workers that fail or race', () => {
  it('waits for another attach when the first worker dies before its answer', async () => {
    const version = await versionWith();
    const { reply } = pexec(version, { 'NVCF-POLL-SECONDS': '10' });
    const job = await receiveJob(version);
    const first = await rawAttach(job.message);
    expect(first.state).toBe('live');
    await first.frame(FRAME.bodyEnd);
    first.kill();
    await sleep(50);
    const channel = await attachLive(job, 'worker-2');
    expect(await channel.answer({ status: 200, headers: { 'content-type': 'text/plain' }, bytes: 6 })).toBe('accepted');
    await channel.sendBody(Buffer.from('second'));
    const response = await reply;
    expect([response.status, response.body.toString()]).toEqual([200, 'second']);
    await job.done();
  });

  it('ends an SSE stream with an error event when its worker dies mid-body', async () => {
    const version = await versionWith();
    const { reply } = pexec(version, { accept: 'text/event-stream' });
    const job = await receiveJob(version);
    const worker = await rawAttach(job.message);
    worker.send(FRAME.head, JSON.stringify({ status: 200, headers: { 'content-type': 'text/event-stream' } }));
    await worker.frame(FRAME.accept);
    worker.send(FRAME.body, 'data: first\n\n');
    await sleep(50);
    worker.kill();
    const response = await reply;
    expect(response.status).toBe(200);
    const text = response.body.toString();
    expect(text.startsWith('data: first\n\n')).toBe(true);
    expect(text).toMatch(/event: error\ndata: .*\n\n$/);
    await job.done();
  });

  it('cuts a sized answer when its worker dies mid-body', async () => {
    const version = await versionWith();
    const { reply } = pexec(version);
    const job = await receiveJob(version);
    const worker = await rawAttach(job.message);
    worker.send(FRAME.head, JSON.stringify({ status: 200, headers: { 'content-type': 'application/octet-stream' }, bytes: 1000 }));
    await worker.frame(FRAME.accept);
    worker.send(FRAME.body, Buffer.alloc(100));
    await sleep(50);
    worker.kill();
    const response = await reply;
    expect(response.status).toBe(200);
    expect(response.error).toBeDefined();
    expect(response.body.length).toBe(100);
    await job.done();
  });

  it('tells the container the real wait: NVCF-POLL-SECONDS is cut to what the front the call came through allows', async () => {
    const version = await versionWith();
    for (const [headers, expected] of [
      [{}, INVOCATION_URL_POLL_CAP_SECONDS],
      [{ [FRONT_HEADER]: FRONTS.apiGateway }, API_GATEWAY_POLL_CAP_SECONDS],
    ] as const) {
      const { request } = pexec(version, { 'NVCF-POLL-SECONDS': '300', ...headers });
      const job = await receiveJob(version);
      expect(job.message.pollSeconds).toBe(expected);
      request.destroy();
      await job.done();
    }
  });

  it('tells a worker with a wrong token that the call is unknown (404)', async () => {
    const version = await versionWith();
    const { request } = pexec(version);
    const job = await receiveJob(version);
    const stranger = await rawAttach({ ...job.message, replyTo: { ...job.message.replyTo!, token: 'x'.repeat(32) } });
    expect([stranger.status, stranger.state]).toEqual([404, 'unknown']);
    stranger.kill();
    expect((await attach(job.message.replyTo!, job.message.requestId, 'worker-1')).state).toBe('live');
    request.destroy();
    await job.done();
  });

  it('tells a second worker attaching to a held call that it is held (409)', async () => {
    const version = await versionWith();
    const { reply } = pexec(version);
    const job = await receiveJob(version);
    const channel = await attachLive(job);
    expect((await attach(job.message.replyTo!, job.message.requestId, 'worker-2')).state).toBe('held');
    const raw = await rawAttach(job.message);
    expect([raw.status, raw.state]).toEqual([409, 'held']);
    raw.kill();
    expect(await channel.answer({ status: 200, headers: {}, bytes: 2 })).toBe('accepted');
    await channel.sendBody(Buffer.from('ok'));
    expect((await reply).status).toBe(200);
    expect((await attach(job.message.replyTo!, job.message.requestId, 'worker-3')).state).toBe('finished');
    await job.done();
  });
});

describe('refused calls', () => {
  it('answers 401 without a key or with an unknown one, and 404 for an unknown or another account’s function', async () => {
    const version = await versionWith();
    const path = `/v2/nvcf/pexec/functions/${version.functionId}`;
    const missing = await callService(front.url, { path, body: '{}' }).reply;
    expect([missing.status, missing.headers['content-type']]).toEqual([401, 'application/problem+json']);
    expect((await callService(front.url, { path, body: '{}', headers: { authorization: 'Bearer nvapi-unknown' } }).reply).status).toBe(401);
    const stranger = await newAccount();
    const foreign = await callService(front.url, { path, body: '{}', headers: { authorization: `Bearer ${stranger.key}` } }).reply;
    expect([foreign.status, foreign.headers['content-type']]).toEqual([404, 'application/problem+json']);
    expect((await pexec({ functionId: randomUUID() }).reply).status).toBe(404);
    expect(await queueHasMessage(version)).toBe(false);
  });

  it('answers 503 errored when the message cannot be queued: at once for a sync call, stored ERRORED for an async one', async () => {
    const broken = await deployVersion(await putVersion(account.accountId), { status: 'ACTIVE', queueUrl: 'http://127.0.0.1:1/000000000000/nowhere' });
    const sync = await pexec(broken, { 'NVCF-POLL-SECONDS': '5' }).reply;
    expect([sync.status, sync.headers['nvcf-status']]).toEqual([503, 'errored']);
    expect(await getInvocation(String(sync.headers['nvcf-reqid']))).toBeUndefined();
    const async = await pexec(broken, { 'NVCF-POLL-SECONDS': '0' }).reply;
    expect([async.status, async.headers['nvcf-status']]).toEqual([503, 'errored']);
    const requestId = String(async.headers['nvcf-reqid']);
    expect((await getInvocation(requestId))?.status).toBe('ERRORED');
    const polled = await call({ method: 'GET', path: `/v2/nvcf/pexec/status/${requestId}` }).reply;
    expect([polled.status, polled.headers['nvcf-status']]).toEqual([503, 'errored']);
  });

  it('answers 404 on polling an unknown, another account’s or an expired request', async () => {
    const version = await versionWith();
    expect((await call({ method: 'GET', path: `/v2/nvcf/pexec/status/${randomUUID()}` }).reply).status).toBe(404);
    const requestId = String((await pexec(version, { 'NVCF-POLL-SECONDS': '0' }).reply).headers['nvcf-reqid']);
    const stranger = await newAccount();
    expect((await callService(front.url, { method: 'GET', path: `/v2/nvcf/pexec/status/${requestId}`, headers: { authorization: `Bearer ${stranger.key}` } }).reply).status).toBe(404);
    await dynamo().send(
      new UpdateCommand({ TableName: tableName('invocations'), Key: { requestId }, UpdateExpression: 'SET expiresAt = :past', ExpressionAttributeValues: { ':past': Math.floor(Date.now() / 1000) - 1 } }),
    );
    expect((await call({ method: 'GET', path: `/v2/nvcf/pexec/status/${requestId}` }).reply).status).toBe(404);
    await (await receiveJob(version)).done();
  });

  it('answers 400 naming the status when the function has no ACTIVE version, pinned or not', async () => {
    const deploying = await versionWith('DEPLOYING');
    const response = await pexec(deploying).reply;
    expect(response.status).toBe(400);
    expect(response.json.detail).toMatch(/no ACTIVE version.*DEPLOYING/);
    const pinned = await call({ path: `/v2/nvcf/pexec/functions/${deploying.functionId}/versions/${deploying.versionId}`, body: '{}' }).reply;
    expect(pinned.status).toBe(400);
    expect(pinned.json.detail).toContain('Status DEPLOYING');
  });

  it('answers 400 for an NVCF-POLL-SECONDS outside the integers 0–3600 and queues nothing', async () => {
    const version = await versionWith();
    for (const value of ['abc', '3601', '-1', '1.5', '', '99999']) {
      const response = await pexec(version, { 'NVCF-POLL-SECONDS': value }).reply;
      expect([value, response.status, response.headers['content-type']]).toEqual([value, 400, 'application/problem+json']);
      expect(response.json.detail).toContain('NVCF-POLL-SECONDS must be an integer from 0 to 3600');
    }
    expect(await queueHasMessage(version)).toBe(false);
  });

  it('checks asset references before queueing: malformed 400, unknown, foreign or not uploaded 404, uploaded ones passed on', async () => {
    const version = await versionWith();
    const assetOf = async (owner: string, uploaded: boolean) => {
      const assetId = randomUUID();
      const s3Key = assetObjectKey(owner, assetId);
      const now = new Date().toISOString();
      await dynamo().send(
        new PutCommand({ TableName: tableName('assets'), Item: { assetId, accountId: owner, contentType: 'image/png', description: 'x', s3Key, status: 'CREATED', createdAt: now, expiresAt: Math.floor(Date.now() / 1000) + 600 } }),
      );
      if (uploaded) await s3().send(new PutObjectCommand({ Bucket: bucketName(), Key: s3Key, Body: 'png' }));
      return assetId;
    };
    const refer = (ids: string) => pexec(version, { 'NVCF-INPUT-ASSET-REFERENCES': ids, 'NVCF-POLL-SECONDS': '0' }).reply;
    expect((await refer('not-a-uuid')).status).toBe(400);
    expect((await refer(randomUUID())).status).toBe(404);
    expect((await refer(await assetOf('someone-else', true))).status).toBe(404);
    const empty = await assetOf(account.accountId, false);
    const notUploaded = await refer(empty);
    expect([notUploaded.status, notUploaded.headers['nvcf-reqid']]).toEqual([404, undefined]);
    expect(notUploaded.json.detail).toMatch(new RegExp(`^asset ${empty} has no content: upload it first`));
    expect(await queueHasMessage(version)).toBe(false);
    const uploaded = await assetOf(account.accountId, true);
    expect((await refer(uploaded)).status).toBe(202);
    const job = await receiveJob(version);
    expect(job.message.assetIds).toEqual([uploaded]);
    await job.done();
  });

  it('stops accepting a revoked key within API_KEY_CACHE_SECONDS', async () => {
    const holder = await newAccount();
    const poll = () => callService(front.url, { method: 'GET', path: `/v2/nvcf/pexec/status/${randomUUID()}`, headers: { authorization: `Bearer ${holder.key}` } }).reply;
    expect((await poll()).status).toBe(404);
    expect(await revokeApiKey(holder.key)).toBe(true);
    const revokedAt = Date.now();
    let status = 404;
    while (status !== 401 && Date.now() - revokedAt < (API_KEY_CACHE_SECONDS + 2) * 1000) {
      await sleep(250);
      status = (await poll()).status;
    }
    expect(status).toBe(401);
    expect(Date.now() - revokedAt).toBeLessThan((API_KEY_CACHE_SECONDS + 1) * 1000);
  }, (API_KEY_CACHE_SECONDS + 10) * 1000);
});

describe('limits of one service instance', () => {
  let limited: InvocationService;
  let limitedUrl: string;
  beforeAll(async () => {
    limited = new InvocationService(serviceSettings({ maxInFlight: 2, maxRequestBytes: 4096 }));
    await limited.start();
    limitedUrl = `http://127.0.0.1:${await limited.listen()}`;
  });
  afterAll(async () => limited?.close());

  it('answers 413 problem+json pointing to assets for a body over maxRequestBytes, declared or chunked', async () => {
    const version = await versionWith();
    const declared = await pexec(version, {}, Buffer.alloc(4097, 'a'), limitedUrl).reply;
    expect([declared.status, declared.headers['content-type']]).toEqual([413, 'application/problem+json']);
    expect(declared.json.detail).toMatch(/at most 4096 bytes.*POST \/v2\/nvcf\/assets.*NVCF-INPUT-ASSET-REFERENCES/);
    const chunked = await callService(limitedUrl, {
      path: `/v2/nvcf/pexec/functions/${version.functionId}`,
      headers: { authorization: `Bearer ${account.key}`, 'transfer-encoding': 'chunked', 'content-type': 'application/json' },
      body: Buffer.alloc(5000, 'a'),
    }).reply;
    expect([chunked.status, chunked.headers['content-type']]).toEqual([413, 'application/problem+json']);
    expect(await queueHasMessage(version)).toBe(false);
  });

  it('answers 429 with Retry-After beyond maxInFlight, and frees the slot of a caller that disconnects', async () => {
    const version = await versionWith();
    const held = [pexec(version, { 'NVCF-POLL-SECONDS': '10' }, '{}', limitedUrl), pexec(version, { 'NVCF-POLL-SECONDS': '10' }, '{}', limitedUrl)];
    const jobs = await receiveJobs(version, 2);
    expect(jobs).toHaveLength(2);
    const refused = await pexec(version, {}, '{}', limitedUrl).reply;
    expect(refused.error).toBeUndefined();
    expect([refused.status, refused.headers['content-type'], refused.headers['retry-after']]).toEqual([429, 'application/problem+json', '1']);
    for (const { request } of held) request.destroy();
    await sleep(100);
    const { reply } = pexec(version, { 'NVCF-POLL-SECONDS': '5' }, '{}', limitedUrl);
    const job = await receiveJob(version);
    const channel = await attachLive(job);
    expect(await channel.answer({ status: 200, headers: {}, bytes: 2 })).toBe('accepted');
    await channel.sendBody(Buffer.from('ok'));
    expect((await reply).status).toBe(200);
    await Promise.all([...jobs, job].map((each) => each.done()));
  });
});

describe('request bodies held at once', () => {
  let budgeted: InvocationService;
  let budgetedUrl: string;
  beforeAll(async () => {
    budgeted = new InvocationService(serviceSettings({ maxRequestBytes: 4096, maxHeldRequestBytes: 3000 }));
    await budgeted.start();
    budgetedUrl = `http://127.0.0.1:${await budgeted.listen()}`;
  });
  afterAll(async () => budgeted?.close());

  it('answers 429 with Retry-After while waiting calls hold the instance’s body budget, and frees it when they end', async () => {
    const version = await versionWith();
    const first = pexec(version, { 'NVCF-POLL-SECONDS': '10' }, Buffer.alloc(2000, 'a'), budgetedUrl);
    const [job] = await receiveJobs(version, 1);
    expect(job).toBeDefined();
    const refused = await pexec(version, {}, Buffer.alloc(2000, 'b'), budgetedUrl).reply;
    expect([refused.status, refused.headers['content-type'], refused.headers['retry-after']]).toEqual([429, 'application/problem+json', '1']);
    expect(refused.json.detail).toContain('bytes of request bodies');
    first.request.destroy();
    await sleep(100);
    const { reply } = pexec(version, { 'NVCF-POLL-SECONDS': '0' }, Buffer.alloc(2000, 'c'), budgetedUrl);
    expect((await reply).status).toBe(202);
    await job!.done();
  });
});

describe('direct invocation', () => {
  const port = () => new URL(front.url).port;

  it.each([
    ['GET', '/v1/models?limit=2&name=a%20b', undefined],
    ['PUT', '/items/42?force=true', '{"name":"x"}'],
    ['DELETE', '/items/42?soft=1&soft=2', undefined],
    ['PATCH', '/items/42?x=%E2%9C%93', '{"op":"rename"}'],
  ])('passes %s %s through verbatim to the function addressed by its host', async (method, path, body) => {
    const version = await versionWith();
    const { reply } = call({ method, path, headers: { host: `${version.functionId}.invocation.localhost:${port()}`, 'x-client': 'c1' }, body });
    const job = await receiveJob(version);
    expect(job.message.route).toEqual({ method, path });
    expect(job.message.headers).toMatchObject({ 'x-client': 'c1' });
    expect(job.message.body).toEqual({ kind: 'inline', encoding: 'utf8', data: body ?? '' });
    const channel = await attachLive(job);
    const answer = Buffer.from(`{"method":"${method}"}`);
    expect(await channel.answer({ status: 207, headers: { 'content-type': 'application/json', 'x-served-by': 'container' }, bytes: answer.length })).toBe('accepted');
    await channel.sendBody(answer);
    const response = await reply;
    expect(response.status).toBe(207);
    expect(response.headers).toMatchObject({ 'x-served-by': 'container', 'nvcf-reqid': job.message.requestId });
    expect(response.body.equals(answer)).toBe(true);
    await job.done();
  });

  it('addresses a pinned version by host {versionId}.{functionId} and by function-id headers on invocation.<domain>', async () => {
    const first = await versionWith();
    const second = await deployVersion(await putVersion(account.accountId, { functionId: first.functionId }), { status: 'ACTIVE' });
    const addressings: Record<string, string>[] = [
      { host: `${second.versionId}.${first.functionId}.invocation.localhost:${port()}` },
      { host: `invocation.localhost:${port()}`, 'function-id': first.functionId, 'function-version-id': second.versionId },
    ];
    for (const headers of addressings) {
      const { reply } = call({ method: 'GET', path: '/health', headers });
      const job = await receiveJob(second);
      expect([job.message.versionId, job.message.route]).toEqual([second.versionId, { method: 'GET', path: '/health' }]);
      expect(job.message.headers).not.toHaveProperty('function-id');
      expect(job.message.headers).not.toHaveProperty('function-version-id');
      const channel = await attachLive(job);
      expect(await channel.answer({ status: 204, headers: {}, bytes: 0 })).toBe('accepted');
      await channel.sendBody(Buffer.alloc(0));
      expect((await reply).status).toBe(204);
      await job.done();
    }
    const only = await versionWith();
    const { reply } = call({ method: 'POST', path: '/echo', headers: { host: `invocation.localhost:${port()}`, 'function-id': only.functionId }, body: 'x' });
    const job = await receiveJob(only);
    expect([job.message.versionId, job.message.route]).toEqual([only.versionId, { method: 'POST', path: '/echo' }]);
    const channel = await attachLive(job);
    expect(await channel.answer({ fail: { status: 503, detail: 'the container is not ready' } })).toBe('accepted');
    const failed = await reply;
    expect([failed.status, failed.headers['content-type'], failed.json.detail]).toEqual([503, 'application/problem+json', 'the container is not ready']);
    // A failure is the whole answer: the attach stream closes rather than lingering on the worker's session.
    expect(await channel.ended).toBe('gone');
    await job.done();
  });

  it('answers 400 for a malformed function-id and 404 for an unknown function or invocation host', async () => {
    const malformed = await call({ method: 'GET', path: '/', headers: { host: `invocation.localhost:${port()}`, 'function-id': 'not-a-uuid' } }).reply;
    expect([malformed.status, malformed.headers['content-type']]).toEqual([400, 'application/problem+json']);
    expect(malformed.json.detail).toContain('function-id');
    expect((await call({ method: 'GET', path: '/', headers: { host: `${randomUUID()}.invocation.localhost:${port()}` } }).reply).status).toBe(404);
    expect((await call({ method: 'GET', path: '/', headers: { host: `a.b.${randomUUID()}.invocation.localhost:${port()}` } }).reply).status).toBe(404);
    expect((await call({ method: 'GET', path: '/', headers: { host: `invocation.localhost:${port()}` } }).reply).status).toBe(400);
  });

  it('carries a 50 MiB request body to the worker over the attach channel', async () => {
    const version = await versionWith();
    const sent = randomBytes(50 * 1024 * 1024);
    const { reply } = call({ method: 'POST', path: '/upload', headers: { host: `${version.functionId}.invocation.localhost:${port()}`, 'content-type': 'application/octet-stream' }, body: sent });
    const job = await receiveJob(version, 10);
    expect(job.message.body).toEqual({ kind: 'attach', bytes: sent.length });
    const channel = await attachLive(job);
    expect((await bodyOf(channel)).equals(sent)).toBe(true);
    expect(await channel.answer({ status: 204, headers: {}, bytes: 0 })).toBe('accepted');
    await channel.sendBody(Buffer.alloc(0));
    expect((await reply).status).toBe(204);
    await job.done();
  });

  it('lets the worker fetch a binary body over the inline limit on the attach channel, and relays a binary answer byte-exact', async () => {
    const version = await versionWith();
    const sent = randomBytes(MAX_INLINE_REQUEST_BYTES * 2 + 12345);
    const { reply } = call({ method: 'PUT', path: '/blob?id=7', headers: { host: `${version.functionId}.invocation.localhost:${port()}`, 'content-type': 'application/octet-stream' }, body: sent });
    const job = await receiveJob(version);
    expect(job.message.body).toEqual({ kind: 'attach', bytes: sent.length });
    const channel = await attachLive(job);
    expect((await bodyOf(channel)).equals(sent)).toBe(true);
    const answer = randomBytes(3 * 1024 * 1024 + 17);
    expect(await channel.answer({ status: 200, headers: { 'content-type': 'application/octet-stream' }, bytes: answer.length })).toBe('accepted');
    expect(await channel.sendBody(answer)).toBe(true);
    const response = await reply;
    expect(response.status).toBe(200);
    expect(response.body.equals(answer)).toBe(true);
    await job.done();
  });
});

describe('the worker’s attach client', () => {
  it('fails the body, not the worker, when the service goes away in the middle of a request body', async () => {
    const server = createHttp2Server();
    server.on('stream', (stream) => {
      stream.respond({ ':status': 200, [ATTACH_STATE_HEADER]: 'live' });
      stream.write(encodeFrame(FRAME.body, Buffer.alloc(1000)));
      setTimeout(() => stream.session?.destroy(), 50);
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    try {
      const address = { host: '127.0.0.1', port: (server.address() as AddressInfo).port, token: 't'.repeat(32) };
      const attached = await attach(address, randomUUID(), 'worker-1');
      if (attached.state !== 'live') throw new Error(`expected live, got ${attached.state}`);
      expect(await attached.channel.ended).toBe('gone');
      await sleep(20);
      await expect(bodyOf(attached.channel)).rejects.toThrow(/before its body arrived/);
    } finally {
      await new Promise((resolve) => server.close(resolve));
    }
  });
});
