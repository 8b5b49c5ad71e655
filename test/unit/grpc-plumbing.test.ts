/**
 * The pieces of gRPC invocation below the stack: one port telling HTTP/1.1
 * from HTTP/2 by the connection preface (invocation/preface.ts), the
 * grpc.health.v1 check the runtimes use (gpu-agent/worker/grpc-health.ts),
 * and stream forwarding (core/grpc.ts) against a real @grpc/grpc-js server.
 */
import { createServer as createHttpServer } from 'node:http';
import { connect, createServer as createHttp2Server, type ServerHttp2Stream } from 'node:http2';
import { connect as connectTcp, type AddressInfo, type Server as NetServer } from 'node:net';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { afterEach, describe, expect, it } from 'vitest';
import { GRPC_STATUS, answerGrpcStatus, encodeGrpcMessage, forwardStream, grpcTimeoutMs, remainingGrpcTimeout } from '../../core/grpc';
import { checkGrpcHealth, decodeHealthCheckResponse, encodeHealthCheckRequest } from '../../gpu-agent/worker/grpc-health';
import { HTTP2_PREFACE, protocolOf, serveHttp2Too } from '../../invocation/preface';
import { freePort } from '../support/processes';

const ROOT = new URL('../../', import.meta.url).pathname;
const definition = protoLoader.loadSync([join(ROOT, 'examples/grpc-echo/echo.proto'), join(ROOT, 'examples/grpc-echo/health.proto')], { longs: Number, enums: String, defaults: true });
const loaded = grpc.loadPackageDefinition(definition) as any;

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

function listen(server: NetServer): Promise<number> {
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve((server.address() as AddressInfo).port)));
}

/** A grpc-js server with `services` on a free loopback port. */
async function grpcServer(services: [any, grpc.UntypedServiceImplementation][]): Promise<number> {
  const server = new grpc.Server();
  for (const [service, implementation] of services) server.addService(service, implementation);
  const port = await new Promise<number>((resolve, reject) => server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (error, bound) => (error ? reject(error) : resolve(bound))));
  cleanups.push(() => void server.forceShutdown());
  return port;
}

function healthServer(status: (service: string) => string | undefined): Promise<number> {
  return grpcServer([
    [
      loaded.grpc.health.v1.Health.service,
      {
        Check(call: grpc.ServerUnaryCall<{ service: string }, unknown>, callback: grpc.sendUnaryData<unknown>) {
          const answer = status(call.request.service);
          if (answer) callback(null, { status: answer });
          else callback({ code: grpc.status.NOT_FOUND, details: 'unknown service' }, null);
        },
      },
    ],
  ]);
}

describe('connection preface sniffing', () => {
  it('tells the HTTP/2 preface from HTTP/1.1 request lines, waiting while the bytes could still be a preface', () => {
    expect(protocolOf(HTTP2_PREFACE)).toBe('http2');
    expect(protocolOf(Buffer.concat([HTTP2_PREFACE, Buffer.from([0, 0, 0, 4])]))).toBe('http2');
    expect(protocolOf(HTTP2_PREFACE.subarray(0, 10))).toBeUndefined();
    expect(protocolOf(Buffer.from('P'))).toBeUndefined();
    expect(protocolOf(Buffer.from('POST /v2/nvcf/pexec HTTP/1.1\r\n'))).toBe('http1');
    expect(protocolOf(Buffer.from('PRI * HTTP/1.1\r\n'))).toBe('http1');
    expect(protocolOf(Buffer.from('GET / HTTP/1.1'))).toBe('http1');
  });

  it('serves HTTP/1.1 (with a large body) and HTTP/2 streams on one port, nothing of either lost', async () => {
    const http1 = createHttpServer((req, res) => {
      let bytes = 0;
      req.on('data', (chunk: Buffer) => (bytes += chunk.length));
      req.on('end', () => res.end(`h1 ${req.url} ${bytes}`));
    });
    const http2 = createHttp2Server();
    http2.on('stream', (stream: ServerHttp2Stream, headers) => {
      stream.respond({ ':status': 200 });
      stream.end(`h2 ${headers[':path']}`);
    });
    serveHttp2Too(http1, (connection) => http2.emit('connection', connection));
    const port = await listen(http1);
    cleanups.push(() => new Promise<void>((resolve) => {
      http1.close(() => resolve());
      http1.closeAllConnections();
    }));

    const answered = await fetch(`http://127.0.0.1:${port}/upload`, { method: 'POST', body: 'x'.repeat(300_000) });
    expect(await answered.text()).toBe('h1 /upload 300000');

    const session = connect(`http://127.0.0.1:${port}`);
    cleanups.push(() => void session.destroy());
    const get = (path: string) =>
      new Promise<string>((resolve, reject) => {
        const stream = session.request({ ':path': path });
        let text = '';
        stream.on('data', (chunk: Buffer) => (text += chunk));
        stream.on('end', () => resolve(text));
        stream.on('error', reject);
        stream.end();
      });
    expect(await Promise.all([get('/a'), get('/b'), get('/c')])).toEqual(['h2 /a', 'h2 /b', 'h2 /c']);
  });

  it('keeps the HTTP/1.1 server\'s own connection handling: closeAllConnections and the headers timeout still apply', async () => {
    // A keep-alive connection would otherwise stay for a minute, and a stalled request line forever: the test's timeout says if they do.
    const http1 = createHttpServer({ connectionsCheckingInterval: 100, keepAliveTimeout: 60_000 }, (_req, res) => res.end('ok'));
    http1.headersTimeout = 300;
    http1.requestTimeout = 300;
    serveHttp2Too(http1, (connection) => connection.destroy());
    const port = await listen(http1);

    const stalled = connectTcp(port, '127.0.0.1');
    let answer = '';
    stalled.on('data', (chunk: Buffer) => (answer += chunk));
    stalled.write('GET / HTTP/1.1\r\nHost: x\r\n');
    await new Promise((resolve) => stalled.once('close', resolve));
    expect(answer).toMatch(/^HTTP\/1\.1 408/);

    const kept = connectTcp(port, '127.0.0.1');
    kept.write('GET / HTTP/1.1\r\nHost: x\r\n\r\n');
    await new Promise((resolve) => kept.once('data', resolve));
    const closed = new Promise((resolve) => kept.once('close', resolve));
    await new Promise<void>((resolve) => {
      http1.close(() => resolve());
      http1.closeAllConnections();
    });
    await closed;
  }, 10_000);
});

describe('grpc.health.v1 check', () => {
  it('encodes the request and decodes the status as protobuf does', () => {
    expect(encodeHealthCheckRequest('')).toEqual(Buffer.alloc(0));
    expect(encodeHealthCheckRequest('a.B')).toEqual(Buffer.from([0x0a, 3, 0x61, 0x2e, 0x42]));
    expect(decodeHealthCheckResponse(Buffer.from([0x08, 0x01]))).toBe(1);
    expect(decodeHealthCheckResponse(Buffer.alloc(0))).toBe(0);
    // An unknown length-delimited field before the status is skipped.
    expect(decodeHealthCheckResponse(Buffer.from([0x12, 2, 0x68, 0x69, 0x08, 0x02]))).toBe(2);
  });

  it('passes on SERVING for the overall service and says why not otherwise', async () => {
    const statuses: Record<string, string> = { '': 'SERVING', 'svc.Down': 'NOT_SERVING' };
    const port = await healthServer((service) => statuses[service]);
    expect(await checkGrpcHealth('127.0.0.1', port, 2000)).toBeUndefined();
    expect(await checkGrpcHealth('127.0.0.1', port, 2000, 'svc.Down')).toMatch(/answered NOT_SERVING, expected SERVING/);
    expect(await checkGrpcHealth('127.0.0.1', port, 2000, 'svc.Missing')).toMatch(/failed: NOT_FOUND/);
    statuses[''] = 'NOT_SERVING';
    expect(await checkGrpcHealth('127.0.0.1', port, 2000)).toMatch(/service ""\) at 127\.0\.0\.1:\d+ answered NOT_SERVING/);
  });

  it('fails, not hangs, when nothing listens or the server is not gRPC', async () => {
    const closed = await freePort();
    expect(await checkGrpcHealth('127.0.0.1', closed, 1000)).toMatch(/failed: (UNAVAILABLE|DEADLINE_EXCEEDED)/);
    const http = createHttpServer((_req, res) => res.end('not grpc'));
    const port = await listen(http);
    cleanups.push(() => new Promise<void>((resolve) => http.close(() => resolve())));
    expect(await checkGrpcHealth('127.0.0.1', port, 1000)).toMatch(/failed:/);
  });
});

describe('gRPC stream forwarding', () => {
  /** A proxy on a free port forwarding every stream to `upstreamUrl` as core/grpc.ts does; `heldMs`: as if each call had waited that long here. */
  async function proxy(upstreamUrl: string, heldMs?: number): Promise<number> {
    const upstream = connect(upstreamUrl);
    upstream.on('error', () => undefined);
    const server = createHttp2Server();
    server.on('stream', (stream: ServerHttp2Stream, headers) => forwardStream(stream, headers, upstream, {
        drop: new Set(['authorization']),
        add: { 'x-added': 'yes' },
        unavailable: 'the container could not be reached',
        ...(heldMs !== undefined ? { arrivedAt: Date.now() - heldMs } : {}),
      }),
    );
    const port = await listen(server as unknown as NetServer);
    cleanups.push(() => {
      upstream.destroy();
      server.close();
    });
    return port;
  }

  function echoClient(port: number): any {
    const client = new loaded.nvcf.examples.Echo(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
    cleanups.push(() => client.close());
    return client;
  }

  it('passes a unary call with its metadata both ways, and an error status with its message', async () => {
    let seen: grpc.Metadata | undefined;
    const port = await grpcServer([
      [
        loaded.nvcf.examples.Echo.service,
        {
          EchoMessage(call: grpc.ServerUnaryCall<{ message: string; failCode: number }, unknown>, callback: grpc.sendUnaryData<unknown>) {
            seen = call.metadata;
            if (call.request.failCode) return callback({ code: call.request.failCode, details: 'refusé: 100%' }, null);
            const trailer = new grpc.Metadata();
            trailer.set('x-trailer', 'kept');
            callback(null, { message: call.request.message }, trailer);
          },
        },
      ],
    ]);
    const client = echoClient(await proxy(`http://127.0.0.1:${port}`));
    const meta = new grpc.Metadata();
    meta.set('authorization', 'Bearer secret');
    meta.set('x-custom', 'v');
    const call = (request: object) =>
      new Promise<{ reply?: any; error?: grpc.ServiceError; trailers?: grpc.Metadata }>((resolve) => {
        let trailers: grpc.Metadata | undefined;
        const made = client.EchoMessage(request, meta, (error: grpc.ServiceError | null, reply: unknown) => setImmediate(() => resolve({ reply, error: error ?? undefined, trailers })));
        made.on('status', (status: grpc.StatusObject) => (trailers = status.metadata));
      });
    const ok = await call({ message: 'hi' });
    expect(ok.reply.message).toBe('hi');
    expect(ok.trailers?.get('x-trailer')).toEqual(['kept']);
    expect(seen?.get('x-custom')).toEqual(['v']);
    expect(seen?.get('x-added')).toEqual(['yes']);
    expect(seen?.get('authorization')).toEqual([]);
    const failed = await call({ message: 'x', failCode: grpc.status.ALREADY_EXISTS });
    expect(failed.error?.code).toBe(grpc.status.ALREADY_EXISTS);
    expect(failed.error?.details).toBe('refusé: 100%');
  });

  it('reads grpc-timeout in every unit and passes on what is left of it', () => {
    expect(['2H', '3M', '4S', '500m', '2000u', '3000000n'].map((value) => grpcTimeoutMs(value))).toEqual([7_200_000, 180_000, 4000, 500, 2, 3]);
    expect([undefined, '', '5', '123456789S', '1.5S', 'S'].map((value) => grpcTimeoutMs(value))).toEqual([undefined, undefined, undefined, undefined, undefined, undefined]);
    expect(remainingGrpcTimeout(1000, 300)).toBe('700m');
    expect(remainingGrpcTimeout(1000, 5000)).toBe('1m');
  });

  it('shortens the deadline the upstream sees by the time the call waited', async () => {
    let deadlineLeftMs = Number.NaN;
    const port = await grpcServer([
      [
        loaded.nvcf.examples.Echo.service,
        {
          EchoMessage(call: grpc.ServerUnaryCall<unknown, unknown>, callback: grpc.sendUnaryData<unknown>) {
            const deadline = call.getDeadline();
            deadlineLeftMs = (deadline instanceof Date ? deadline.getTime() : deadline) - Date.now();
            callback(null, { message: 'ok' });
          },
        },
      ],
    ]);
    const client = echoClient(await proxy(`http://127.0.0.1:${port}`, 600));
    await new Promise((resolve) => client.EchoMessage({ message: 'x' }, new grpc.Metadata(), { deadline: Date.now() + 2000 }, resolve));
    // 2000 ms asked, 600 ms spent waiting: the container has at most 1400 ms.
    expect(deadlineLeftMs).toBeLessThanOrEqual(1400);
    expect(deadlineLeftMs).toBeGreaterThan(1000);
  });

  it('answers UNAVAILABLE with the reason when the upstream cannot be reached', async () => {
    const client = echoClient(await proxy(`http://127.0.0.1:${await freePort()}`));
    const error = await new Promise<grpc.ServiceError>((resolve) => client.EchoMessage({ message: 'x' }, (failure: grpc.ServiceError) => resolve(failure)));
    expect(error.code).toBe(grpc.status.UNAVAILABLE);
    expect(error.details).toContain('the container could not be reached');
  });

  it('resets the upstream stream when the caller cancels', async () => {
    let cancelled: () => void;
    const upstreamCancelled = new Promise<void>((resolve) => (cancelled = resolve));
    const port = await grpcServer([
      [
        loaded.nvcf.examples.Echo.service,
        {
          EchoStream(call: grpc.ServerWritableStream<unknown, unknown>) {
            call.write({ message: 'first' });
            call.on('cancelled', () => cancelled());
          },
        },
      ],
    ]);
    const client = echoClient(await proxy(`http://127.0.0.1:${port}`));
    const stream = client.EchoStream({ message: 'x' });
    stream.on('error', () => undefined);
    await new Promise((resolve) => stream.once('data', resolve));
    stream.cancel();
    await upstreamCancelled;
  });

  it('answers trailers-only statuses with a percent-encoded message', async () => {
    expect(encodeGrpcMessage('no ACTIVE version: 100% é')).toBe('no ACTIVE version: 100%25 %C3%A9');
    const server = createHttp2Server();
    server.on('stream', (stream: ServerHttp2Stream) => answerGrpcStatus(stream, GRPC_STATUS.failedPrecondition, 'Status INACTIVE: 100% é'));
    const client = echoClient(await listen(server as unknown as NetServer));
    cleanups.push(() => void server.close());
    const error = await new Promise<grpc.ServiceError>((resolve) => client.EchoMessage({ message: 'x' }, (failure: grpc.ServiceError) => resolve(failure)));
    expect(error.code).toBe(grpc.status.FAILED_PRECONDITION);
    expect(error.details).toBe('Status INACTIVE: 100% é');
  });
});
