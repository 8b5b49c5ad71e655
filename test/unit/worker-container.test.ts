/**
 * The worker's container call against small in-test servers: failures that
 * must not crash the worker or burn a delivery, and what reaches the container.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createTcpServer, type Server as TcpServer, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { forwardableResponseHeaders, sendableHeaders } from '../../core/invocation-message';
import { isMissingObjectError } from '../../core/invocations';
import { MiB } from '../../core/limits';
import { CONTAINER_IDLE_SOCKET_MS, ContainerUnreachable, RequestBodyUnavailable, ResponseNotStored, callContainer, type RequestBody } from '../../gpu-agent/worker/container';

let dir: string;
const servers: (Server | TcpServer)[] = [];

function inline(text: string): RequestBody {
  const data = Buffer.from(text);
  return async () => ({ data, length: data.length });
}

async function listen<S extends Server | TcpServer>(server: S): Promise<string> {
  servers.push(server);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return `http://127.0.0.1:${(server.address() as { port: number }).port}/infer`;
}

function httpServer(handler: (req: IncomingMessage, res: ServerResponse) => void): Promise<string> {
  return listen(createServer(handler));
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'nvcf-container-'));
});
afterEach(async () => {
  for (const server of servers.splice(0)) {
    if ('closeAllConnections' in server) server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  }
});
afterAll(async () => rm(dir, { recursive: true, force: true }));

describe('container call', () => {
  it('rejects a large answer it cannot spill to disk instead of crashing the worker', async () => {
    const url = await httpServer((_req, res) => res.end(Buffer.alloc(6 * MiB, 'z')));
    const call = callContainer({ url, headers: {}, body: inline('{}'), timeoutMs: 5000, spillFile: join(dir, 'no-such-dir', 'spill') });
    await expect(call).rejects.toBeInstanceOf(ResponseNotStored);
  });

  it('spills an answer over 5 MiB to its file', async () => {
    const url = await httpServer((_req, res) => res.end(Buffer.alloc(6 * MiB, 'z')));
    const response = await callContainer({ url, headers: {}, body: inline('{}'), timeoutMs: 5000, spillFile: join(dir, 'spill') });
    expect(response).toMatchObject({ status: 200, size: 6 * MiB, file: join(dir, 'spill') });
    expect(response.body).toBeUndefined();
  });

  it('retries once on a new connection when a reused keep-alive socket was closed by the container', async () => {
    // Answers the first request of each connection and resets the connection on the second, as a server
    // closing an idle keep-alive socket just as the worker reuses it.
    let requests = 0;
    const tcp = createTcpServer((socket: Socket) => {
      let seen = 0;
      socket.on('data', (chunk) => {
        if (!chunk.toString('latin1').startsWith('POST')) return;
        requests += 1;
        seen += 1;
        if (seen === 1) socket.write('HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 4\r\n\r\n"ok"');
        else socket.resetAndDestroy();
      });
    });
    const url = await listen(tcp);
    const call = () => callContainer({ url, headers: {}, body: inline('{}'), timeoutMs: 5000, spillFile: join(dir, 'unused') });
    expect((await call()).body?.toString()).toBe('"ok"');
    expect((await call()).body?.toString()).toBe('"ok"');
    expect(requests).toBe(3);
  });

  it('does not retry a fresh connection the container resets', async () => {
    const tcp = createTcpServer((socket: Socket) => socket.on('data', () => socket.resetAndDestroy()));
    const url = await listen(tcp);
    await expect(callContainer({ url, headers: {}, body: inline('{}'), timeoutMs: 5000, spillFile: join(dir, 'unused') })).rejects.toBeInstanceOf(ContainerUnreachable);
  });

  it('keeps idle sockets for less than the 5 s after which common servers close them, and still waits out a long call', async () => {
    expect(CONTAINER_IDLE_SOCKET_MS).toBeLessThan(5000);
    const url = await httpServer((_req, res) => setTimeout(() => res.end('"late"'), CONTAINER_IDLE_SOCKET_MS + 500));
    const response = await callContainer({ url, headers: {}, body: inline('{}'), timeoutMs: 10_000, spillFile: join(dir, 'unused') });
    expect(response.body?.toString()).toBe('"late"');
  }, 10_000);

  it('streams a request body and reports a body that fails mid-way as such, not as an unreachable container', async () => {
    let received = 0;
    const url = await httpServer((req, res) => {
      req.on('data', (chunk: Buffer) => (received += chunk.length));
      req.on('end', () => res.end(String(received)));
    });
    const chunks = [Buffer.alloc(MiB, 'a'), Buffer.alloc(MiB, 'b')];
    const streamed = await callContainer({ url, headers: {}, body: async () => ({ data: Readable.from(chunks), length: 2 * MiB }), timeoutMs: 5000, spillFile: join(dir, 'unused') });
    expect(streamed.body?.toString()).toBe(String(2 * MiB));

    const failing = new Readable({
      read() {
        this.destroy(new Error('S3 connection reset'));
      },
    });
    const call = callContainer({ url, headers: {}, body: async () => ({ data: failing, length: MiB }), timeoutMs: 5000, spillFile: join(dir, 'unused') });
    await expect(call).rejects.toBeInstanceOf(RequestBodyUnavailable);
  });

  it('stops at once when the job is interrupted, with the interruption as the reason', async () => {
    const url = await httpServer(() => undefined);
    const controller = new AbortController();
    const reason = new Error('claim lost');
    setTimeout(() => controller.abort(reason), 100);
    await expect(callContainer({ url, headers: {}, body: inline('{}'), timeoutMs: 10_000, spillFile: join(dir, 'unused'), signal: controller.signal })).rejects.toBe(reason);
  });

  it('sends header values beyond Latin-1 as their UTF-8 bytes and leaves out those Node cannot send', async () => {
    let seen: IncomingMessage['headers'] = {};
    const url = await httpServer((req, res) => {
      seen = req.headers;
      res.end('{}');
    });
    await callContainer({ url, headers: { 'x-name': 'Zoë 😀', 'x-control': 'a\u0001b', 'bad name': 'x', 'x-plain': 'ok' }, body: inline('{}'), timeoutMs: 5000, spillFile: join(dir, 'unused') });
    expect(Buffer.from(seen['x-name'] as string, 'latin1').toString('utf8')).toBe('Zoë 😀');
    expect(seen['x-plain']).toBe('ok');
    expect(seen).not.toHaveProperty('x-control');
  });
});

describe('header rules', () => {
  it('keeps values already in byte form as they are', () => {
    const bytes = Buffer.from('Zoë', 'utf8').toString('latin1');
    expect(sendableHeaders({ 'x-name': bytes })).toEqual({ 'x-name': bytes });
  });

  it('drops nvcf-* response headers of the container and joins names repeated in another case', () => {
    expect(forwardableResponseHeaders({ 'NVCF-STATUS': 'bogus', 'nvcf-reqid': 'x', 'X-A': '1', 'x-a': '2', connection: 'close' })).toEqual({ 'x-a': '1, 2' });
  });
});

describe('missing objects', () => {
  it.each([
    ['NoSuchKey', 404],
    ['NotFound', 404],
    ['AccessDenied', 403],
    ['Forbidden', 403],
  ])('treats %s (%i) as an object that is not there', (name, httpStatusCode) => {
    expect(isMissingObjectError(Object.assign(new Error(name), { name, $metadata: { httpStatusCode } }))).toBe(true);
  });

  it('does not treat throttling or server errors as missing', () => {
    expect(isMissingObjectError(Object.assign(new Error('slow down'), { name: 'SlowDown', $metadata: { httpStatusCode: 503 } }))).toBe(false);
  });
});
