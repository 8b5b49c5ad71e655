/**
 * The invocation service on its own port, as on EKS (InvocationService.listen):
 * HTTP/1.1 probes and gRPC on one port, the service's own grpc.health.v1
 * answer for the ALB's gRPC target group, a drain that tells gRPC
 * connections GOAWAY and fails that health check, the session's queue
 * message, and the limits a gRPC call meets (NVCF_MAX_IN_FLIGHT per call, the
 * version's rate limit per session).
 */
import { ReceiveMessageCommand } from '@aws-sdk/client-sqs';
import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sqs } from '../../core/aws';
import { GRPC_INFERENCE_URL } from '../../core/function-schemas';
import { invocationMessageSchema } from '../../core/invocation-message';
import type { FunctionVersionRecord } from '../../core/model';
import { INVOCATION_SERVICE_PATHS } from '../../core/names';
import { checkGrpcHealth } from '../../gpu-agent/worker/grpc-health';
import { InvocationService } from '../../invocation/service';
import { readSettings, type InvocationSettings } from '../../invocation/settings';
import { deployVersion, putVersion } from '../support/function-versions';
import { newAccount, startTestStack, type TestStack } from '../support/stack';

/** A gRPC call of any method with raw bytes, resolving with its error (or undefined). */
function rawCall(client: grpc.Client, metadata: grpc.Metadata, started?: (call: grpc.ClientUnaryCall) => void): Promise<grpc.ServiceError | undefined> {
  return new Promise((resolve) => {
    const call = client.makeUnaryRequest('/any.Service/Method', (value: Buffer) => value, (value: Buffer) => value, Buffer.alloc(0), metadata, (error) => resolve(error ?? undefined));
    started?.(call);
  });
}

let stack: TestStack;
beforeAll(async () => {
  stack = await startTestStack();
});
afterAll(() => stack?.stop());

/**
 * The service on a port of its own (no worker runs) and an ACTIVE gRPC version of a new account, with the
 * metadata that calls it and gRPC clients that close with the service.
 */
async function serviceWithGrpcVersion(settings: Partial<InvocationSettings>, fields: Partial<FunctionVersionRecord> = {}) {
  const service = new InvocationService(readSettings(stack.env, { port: 0, listenHost: '127.0.0.1', attachPort: 0, attachHost: '127.0.0.1', ...settings }));
  await service.start();
  const port = await service.listen();
  const { accountId, key } = await newAccount();
  const health = { protocol: 'gRPC' as const, uri: '/', port: 8001, timeout: 'PT10S', expectedStatusCode: 200 };
  const version = await deployVersion(await putVersion(accountId, { inferenceUrl: GRPC_INFERENCE_URL, inferencePort: 8001, health, ...fields }), { status: 'ACTIVE' });
  const metadata = new grpc.Metadata();
  metadata.set('authorization', `Bearer ${key}`);
  metadata.set('function-id', version.functionId);
  const clients: grpc.Client[] = [];
  return {
    service,
    accountId,
    version,
    metadata,
    /** A client of its own connection. */
    client() {
      const made = new grpc.Client(`127.0.0.1:${port}`, grpc.credentials.createInsecure(), { 'grpc.use_local_subchannel_pool': 1 });
      clients.push(made);
      return made;
    },
    async close() {
      for (const made of clients) made.close();
      await service.close();
    },
  };
}

describe('the invocation service on its own port', () => {
  it('serves HTTP probes and gRPC on one port, answers gRPC refusals, and drains gRPC connections with GOAWAY', async () => {
    const service = new InvocationService(readSettings(stack.env, { port: 0, listenHost: '127.0.0.1', attachPort: 0, attachHost: '127.0.0.1' }));
    await service.start();
    const port = await service.listen();
    try {
      const ready = await fetch(`http://127.0.0.1:${port}${INVOCATION_SERVICE_PATHS.ready}`);
      expect(ready.status).toBe(200);
      expect(await checkGrpcHealth('127.0.0.1', port, 2000)).toBeUndefined();

      // A gRPC call to a function goes through the same checks as on the local front.
      const { key } = await newAccount();
      const client = new grpc.Client(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
      const metadata = new grpc.Metadata();
      metadata.set('authorization', `Bearer ${key}`);
      metadata.set('function-id', '6f1b1c3e-8d3a-4c55-9f0e-3d2f4b5a6c7d');
      const refused = await rawCall(client, metadata);
      expect(refused?.code).toBe(grpc.status.NOT_FOUND);
      expect(refused?.details).toContain("Function id '6f1b1c3e-8d3a-4c55-9f0e-3d2f4b5a6c7d' not found");

      const draining = service.drain(30);
      // The caller's connection is told GOAWAY and closes; the instance's own health check fails meanwhile.
      expect(await checkGrpcHealth('127.0.0.1', port, 2000)).toMatch(/UNAVAILABLE .*draining/);
      // The drain waits for open gRPC connections up to its 30 s grace: it ends within the test's time only if GOAWAY closed them.
      await draining;
      client.close();
    } finally {
      await service.close();
    }
  }, 20_000);

  it('queues one gRPC session message with its reply address, and counts a waiting call against NVCF_MAX_IN_FLIGHT', async () => {
    const { service, accountId, version, metadata, client, close } = await serviceWithGrpcVersion({ maxInFlight: 1 });
    try {
      // No worker runs: the first call waits for one to take its session.
      let waiting: grpc.ClientUnaryCall | undefined;
      const first = rawCall(client(), metadata, (call) => (waiting = call));
      const { Messages = [] } = await sqs().send(new ReceiveMessageCommand({ QueueUrl: version.deployment!.queueUrl, WaitTimeSeconds: 5, VisibilityTimeout: 60 }));
      expect(Messages).toHaveLength(1);
      const message = invocationMessageSchema.parse(JSON.parse(Messages[0]!.Body!));
      expect(message).toMatchObject({ session: 'grpc', accountId, functionId: version.functionId, versionId: version.versionId, replyTo: { host: '127.0.0.1', port: service.attachPort } });

      const refused = await rawCall(client(), metadata);
      expect(refused?.code).toBe(grpc.status.RESOURCE_EXHAUSTED);
      expect(refused?.details).toContain('holds 1 calls');

      waiting!.cancel();
      expect((await first)?.code).toBe(grpc.status.CANCELLED);
    } finally {
      await close();
    }
  }, 20_000);

  it('admits a session once against the version\'s rate limit: more calls on its connection pass, another connection is RESOURCE_EXHAUSTED', async () => {
    const { metadata, client, close } = await serviceWithGrpcVersion({}, { rateLimit: { rateLimit: '1-D' } });
    try {
      const waiting: grpc.ClientUnaryCall[] = [];
      const first = client();
      // No worker runs: admitted calls wait for their session.
      const admitted = [rawCall(first, metadata, (call) => waiting.push(call)), rawCall(first, metadata, (call) => waiting.push(call))];
      const refused = await rawCall(client(), metadata);
      expect(refused?.code).toBe(grpc.status.RESOURCE_EXHAUSTED);
      expect(refused?.details).toContain('rate limit 1-D reached');
      for (const call of waiting) call.cancel();
      expect((await Promise.all(admitted)).map((error) => error?.code)).toEqual([grpc.status.CANCELLED, grpc.status.CANCELLED]);
    } finally {
      await close();
    }
  }, 20_000);
});
