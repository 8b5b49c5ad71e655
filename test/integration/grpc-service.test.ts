/**
 * The invocation service on its own port, as on EKS (InvocationService.listen):
 * HTTP/1.1 probes and gRPC on one port, the service's own grpc.health.v1
 * answer for the ALB's gRPC target group, and a drain that tells gRPC
 * connections GOAWAY and fails that health check.
 */
import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { INVOCATION_SERVICE_PATHS } from '../../core/names';
import { checkGrpcHealth } from '../../gpu-agent/worker/grpc-health';
import { InvocationService } from '../../invocation/service';
import { readSettings } from '../../invocation/settings';
import { newAccount, startTestStack, type TestStack } from '../support/stack';

let stack: TestStack;
beforeAll(async () => {
  stack = await startTestStack();
});
afterAll(() => stack?.stop());

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
      const refused = await new Promise<grpc.ServiceError>((resolve) =>
        client.makeUnaryRequest('/any.Service/Method', (value: Buffer) => value, (value: Buffer) => value, Buffer.alloc(0), metadata, (error) => resolve(error!)),
      );
      expect(refused.code).toBe(grpc.status.NOT_FOUND);
      expect(refused.details).toContain("Function id '6f1b1c3e-8d3a-4c55-9f0e-3d2f4b5a6c7d' not found");

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
});
