/**
 * gRPC functions on `npm start` (issue 15): the gRPC echo example
 * (examples/grpc-echo) deployed through the API, its health checked with
 * grpc.health.v1 by the process runtime and the worker, then called with
 * @grpc/grpc-js on the stack's own port (cleartext HTTP/2 beside the HTTP
 * API): unary, server-streaming, client-streaming, bidi, trailers, deadlines and cancellation
 * reaching the container, sessions, and the refusals as gRPC statuses.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { checkGrpcHealth } from '../../gpu-agent/worker/grpc-health';
import { ROOT, deployAndWait, startNpmStart, type NpmStart } from '../support/npm-start';
import { waitFor } from '../support/processes';

const GRPC_ECHO_IMAGE = 'nvcr.io/nvcf-examples/grpc-echo:1.0';
const ownerKey = `nvapi-${randomBytes(32).toString('base64url')}`;
/** The stack's idle session timeout in these tests: short enough to wait out. */
const IDLE_SECONDS = 2;

const definition = protoLoader.loadSync([join(ROOT, 'examples/grpc-echo/echo.proto'), join(ROOT, 'examples/grpc-echo/health.proto')], { longs: Number, enums: String, defaults: true });
const loaded = grpc.loadPackageDefinition(definition) as any;

interface EchoReply {
  message: string;
  index: number;
  metadata: string[];
}

describe('gRPC functions on npm start', () => {
  let stack: NpmStart;
  let functionId: string;
  let versionId: string;
  const clients: grpc.Client[] = [];

  /** A client of `service` on its own connection to the stack's port. */
  function client(service: 'echo' | 'health' = 'echo'): any {
    const Service = service === 'echo' ? loaded.nvcf.examples.Echo : loaded.grpc.health.v1.Health;
    const made = new Service(`127.0.0.1:${stack.port}`, grpc.credentials.createInsecure(), { 'grpc.use_local_subchannel_pool': 1 });
    clients.push(made);
    return made;
  }

  function metadata(values: Record<string, string> = {}): grpc.Metadata {
    const made = new grpc.Metadata();
    for (const [key, value] of Object.entries({ authorization: `Bearer ${ownerKey}`, 'function-id': functionId, ...values })) made.set(key, value);
    return made;
  }

  function unary<T = EchoReply>(target: any, method: string, request: object, meta: grpc.Metadata, options: grpc.CallOptions = {}): Promise<{ reply?: T; error?: grpc.ServiceError; trailers?: grpc.Metadata }> {
    return new Promise((resolve) => {
      let trailers: grpc.Metadata | undefined;
      const call = target[method](request, meta, options, (error: grpc.ServiceError | null, reply: T) => setImmediate(() => resolve(error ? { error, trailers } : { reply, trailers })));
      call.on('status', (status: grpc.StatusObject) => (trailers = status.metadata));
    });
  }

  /** The container's record of the calls tagged `tag`. */
  async function events(tag: string): Promise<{ rpc: string; outcome: string; deadlineMs: number }[]> {
    const { reply } = await unary<{ events: { rpc: string; outcome: string; deadlineMs: number }[] }>(client(), 'Events', { tag }, metadata());
    return reply!.events;
  }

  beforeAll(async () => {
    stack = await startNpmStart({ NVCF_API_KEY: ownerKey, NVCF_GRPC_IDLE_SECONDS: String(IDLE_SECONDS) });
    const created = await stack.call(ownerKey, 'POST', '/v2/nvcf/functions', { name: 'grpc-echo', inferenceUrl: 'grpc.nvcf.nvidia.com:443', inferencePort: 8001, containerImage: GRPC_ECHO_IMAGE });
    if (created.status !== 200) throw new Error(`create answered ${created.status}: ${created.text}`);
    ({ id: functionId, versionId } = created.json.function);
    await deployAndWait(stack, ownerKey, functionId, versionId, { deploymentSpecifications: [{ gpu: 'LOCAL', instanceType: 'local.gpu', minInstances: 1, maxInstances: 1, maxRequestConcurrency: 4 }] });
  }, 120_000);
  afterAll(async () => {
    for (const made of clients) made.close();
    await stack?.stop();
  }, 90_000);

  it('shows a gRPC function with a grpc.health.v1 health check, no HTTP uri or status code', async () => {
    const shown = await stack.call(ownerKey, 'GET', `/v2/nvcf/functions/${functionId}/versions/${versionId}`);
    expect(shown.json.function.health).toEqual({ protocol: 'gRPC', port: 8001, timeout: 'PT10S' });
    expect(shown.json.function).not.toHaveProperty('healthUri');
    // ACTIVE means the process runtime and the worker both saw the container SERVING.
    expect(shown.json.function.status).toBe('ACTIVE');
  });

  it('answers a unary call with the container\'s reply, its trailers, and the metadata the container got', async () => {
    const { reply, error, trailers } = await unary(client(), 'EchoMessage', { message: 'hello gRPC' }, metadata({ 'x-caller': 'test' }));
    expect(error).toBeUndefined();
    expect(reply!.message).toBe('hello gRPC');
    expect(reply!.metadata).toEqual(expect.arrayContaining([`nvcf-function-id=${functionId}`, `nvcf-function-version-id=${versionId}`, 'nvcf-ncaid=local', 'x-caller=test']));
    // The key and the addressing metadata are the platform's: the container never sees them.
    expect(reply!.metadata.join(' ')).not.toContain(ownerKey);
    expect(trailers?.get('x-echo-trailer')).toEqual(['unary']);
  });

  it('streams server messages as the container sends them', async () => {
    const started = Date.now();
    const call = client().EchoStream({ message: 'tick', count: 4, delayMs: 400 }, metadata());
    const arrivals: { index: number; at: number }[] = [];
    let trailers: grpc.Metadata | undefined;
    await new Promise<void>((resolve, reject) => {
      call.on('data', (reply: EchoReply) => arrivals.push({ index: reply.index, at: Date.now() - started }));
      call.on('status', (status: grpc.StatusObject) => (trailers = status.metadata));
      call.on('error', reject);
      call.on('end', () => resolve());
    });
    expect(arrivals.map((arrival) => arrival.index)).toEqual([0, 1, 2, 3]);
    // Sent 400 ms apart: each arrives well after the one before it, none held back for the end.
    for (let i = 1; i < arrivals.length; i += 1) expect(arrivals[i]!.at - arrivals[i - 1]!.at).toBeGreaterThan(200);
    expect(arrivals[3]!.at - arrivals[0]!.at).toBeGreaterThan(900);
    expect(trailers?.get('x-echo-trailer')).toEqual(['streamed 4']);
  });

  it('carries a bidirectional call: each message answered before the next is sent', async () => {
    const call = client().EchoBidi(metadata());
    const replies: EchoReply[] = [];
    const next = () => new Promise<EchoReply>((resolve) => call.once('data', resolve));
    for (const message of ['one', 'two', 'three']) {
      const answered = next();
      call.write({ message, tag: 'bidi' });
      replies.push(await answered);
    }
    const ended = new Promise<void>((resolve) => call.on('end', () => resolve()));
    call.end();
    await ended;
    expect(replies.map((reply) => [reply.message, reply.index])).toEqual([['one', 0], ['two', 1], ['three', 2]]);
  });

  it('carries a client-streaming call: messages sent over time, one reply once the caller ends', async () => {
    const reply = await new Promise<EchoReply>((resolve, reject) => {
      const call = client().EchoCollect(metadata(), (error: grpc.ServiceError | null, answer: EchoReply) => (error ? reject(error) : resolve(answer)));
      void (async () => {
        for (const message of ['a', 'b', 'c']) {
          call.write({ message });
          await sleep(150);
        }
        call.end();
      })();
    });
    expect(reply).toMatchObject({ message: 'a b c', index: 3 });
  });

  it('passes the caller\'s deadline to the container, which sees it run out', async () => {
    const tag = randomUUID();
    const { error } = await unary(client(), 'EchoMessage', { message: 'slow', delayMs: 5000, tag }, metadata(), { deadline: Date.now() + 800 });
    expect(error?.code).toBe(grpc.status.DEADLINE_EXCEEDED);
    const [event] = await waitFor('the container to record the call', async () => ((await events(tag)).length > 0 ? events(tag) : undefined));
    expect(event).toMatchObject({ rpc: 'EchoMessage', outcome: 'deadline-exceeded' });
    // grpc-timeout arrived: the container's deadline is the caller's, less the time on the way.
    expect(event!.deadlineMs).toBeGreaterThan(300);
    expect(event!.deadlineMs).toBeLessThanOrEqual(800);
  });

  it('cancels the container\'s call when the caller cancels', async () => {
    const tag = randomUUID();
    const call = client().EchoStream({ message: 'long', count: 50, delayMs: 200, tag }, metadata());
    await new Promise((resolve) => call.once('data', resolve));
    call.on('error', () => undefined);
    call.cancel();
    const [event] = await waitFor('the container to see the cancel', async () => ((await events(tag)).length > 0 ? events(tag) : undefined));
    expect(event).toMatchObject({ rpc: 'EchoStream', outcome: 'cancelled', deadlineMs: -1 });
  });

  it('passes the container\'s own error status and message through', async () => {
    const { error } = await unary(client(), 'EchoMessage', { message: 'not allowed here', failCode: grpc.status.PERMISSION_DENIED }, metadata());
    expect(error?.code).toBe(grpc.status.PERMISSION_DENIED);
    expect(error?.details).toBe('not allowed here');
  });

  it('passes the container\'s health service through: SERVING for "" while another service toggles', async () => {
    const health = client('health');
    const overall = await unary<{ status: string }>(health, 'Check', { service: '' }, metadata());
    expect(overall.reply?.status).toBe('SERVING');
    const seen = new Set<string>();
    for (let i = 0; i < 12 && seen.size < 2; i += 1) {
      seen.add((await unary<{ status: string }>(health, 'Check', { service: 'nvcf.examples.Echo' }, metadata())).reply!.status);
      await sleep(300);
    }
    expect([...seen].sort()).toEqual(['NOT_SERVING', 'SERVING']);
  });

  it('serves one caller connection through one session, until it stays idle past the timeout', async () => {
    const sessionOf = async (target: any) => (await unary(target, 'EchoMessage', { message: 'which' }, metadata())).reply!.metadata.find((entry) => entry.startsWith('nvcf-reqid='));
    const first = client();
    const session = await sessionOf(first);
    expect(session).toBeDefined();
    expect(await sessionOf(first)).toBe(session);
    // Another connection is another session.
    expect(await sessionOf(client())).not.toBe(session);
    await sleep((IDLE_SECONDS + 1.5) * 1000);
    expect(await sessionOf(first)).not.toBe(session);
  });

  it('answers the load balancer\'s own gRPC health check (no function-id) for the service itself', async () => {
    expect(await checkGrpcHealth('127.0.0.1', stack.port, 2000)).toBeUndefined();
  });

  it('answers UNAUTHENTICATED for a missing or unknown key', async () => {
    const unknown = await unary(client(), 'EchoMessage', { message: 'x' }, metadata({ authorization: 'Bearer nvapi-not-a-key' }));
    expect(unknown.error?.code).toBe(grpc.status.UNAUTHENTICATED);
    const none = new grpc.Metadata();
    none.set('function-id', functionId);
    const missing = await unary(client(), 'EchoMessage', { message: 'x' }, none);
    expect(missing.error?.code).toBe(grpc.status.UNAUTHENTICATED);
    expect(missing.error?.details).toContain('Bearer');
  });

  it('answers NOT_FOUND for another account\'s function and for an unknown one, INVALID_ARGUMENT without a function id', async () => {
    const otherKey = await stack.adminKey('other-team');
    const others = await unary(client(), 'EchoMessage', { message: 'x' }, metadata({ authorization: `Bearer ${otherKey}` }));
    expect(others.error?.code).toBe(grpc.status.NOT_FOUND);
    const unknown = await unary(client(), 'EchoMessage', { message: 'x' }, metadata({ 'function-id': randomUUID() }));
    expect(unknown.error?.code).toBe(grpc.status.NOT_FOUND);
    const unaddressed = new grpc.Metadata();
    unaddressed.set('authorization', `Bearer ${ownerKey}`);
    const missing = await unary(client(), 'EchoMessage', { message: 'x' }, unaddressed);
    expect(missing.error?.code).toBe(grpc.status.INVALID_ARGUMENT);
  });

  it('answers FAILED_PRECONDITION naming the status for a function with no ACTIVE version', async () => {
    const created = await stack.call(ownerKey, 'POST', '/v2/nvcf/functions', { name: 'grpc-undeployed', inferenceUrl: 'grpc.nvcf.nvidia.com:443', inferencePort: 8001, containerImage: GRPC_ECHO_IMAGE });
    const { error } = await unary(client(), 'EchoMessage', { message: 'x' }, metadata({ 'function-id': created.json.function.id }));
    expect(error?.code).toBe(grpc.status.FAILED_PRECONDITION);
    expect(error?.details).toContain('INACTIVE');
  });

  it('answers PERMISSION_DENIED for a key without invoke_function, FAILED_PRECONDITION for a deployed HTTP function', async () => {
    const made = await stack.call(ownerKey, 'POST', '/v1/keys', { description: 'lister', expires_at: new Date(Date.now() + 3_600_000).toISOString(), authorizations: { policies: [{ scopes: ['list_functions'] }] } });
    expect(made.status).toBe(200);
    const denied = await unary(client(), 'EchoMessage', { message: 'x' }, metadata({ authorization: `Bearer ${made.json.value}` }));
    expect(denied.error?.code).toBe(grpc.status.PERMISSION_DENIED);
    expect(denied.error?.details).toContain('invoke_function');
    const http = await stack.call(ownerKey, 'POST', '/v2/nvcf/functions', { name: 'http-echo', inferenceUrl: '/echo', containerImage: 'nvcr.io/nvcf-examples/echo:1.0', healthUri: '/health' });
    await deployAndWait(stack, ownerKey, http.json.function.id, http.json.function.versionId);
    const { error } = await unary(client(), 'EchoMessage', { message: 'x' }, metadata({ 'function-id': http.json.function.id }));
    expect(error?.code).toBe(grpc.status.FAILED_PRECONDITION);
    expect(error?.details).toContain('HTTP function');
  }, 90_000);

  it('refuses HTTP/1.1 pexec of a gRPC function with a problem saying to use gRPC', async () => {
    const answered = await stack.call(ownerKey, 'POST', `/v2/nvcf/pexec/functions/${functionId}`, { message: 'hi' });
    expect(answered.status).toBe(400);
    expect(answered.headers.get('content-type')).toBe('application/problem+json');
    expect(answered.json.detail).toContain('gRPC');
  });
});
