/**
 * Serves the in-process API Gateway over HTTP on loopback, so curl and NVCF
 * clients reach the local stack exactly as they would reach AWS; invocation
 * routes and direct invocation go to the invocation service, which serves
 * them on the same port (as API Gateway's VPC link and the invocation URL do).
 */
import { createServer, type IncomingHttpHeaders, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { serveHttp2Too } from '../invocation/preface';
import type { InvocationService } from '../invocation/service';
import { GATEWAY_MAX_PAYLOAD_BYTES, type LocalGateway } from './gateway';

export { GATEWAY_MAX_PAYLOAD_BYTES };

class PayloadTooLarge extends Error {}

function readBody(request: IncomingMessage): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    // Keep reading past the limit (discarding) so the client gets the 413 instead of a reset.
    request.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size <= GATEWAY_MAX_PAYLOAD_BYTES) chunks.push(chunk);
    });
    request.on('end', () => (size > GATEWAY_MAX_PAYLOAD_BYTES ? reject(new PayloadTooLarge()) : resolve(Buffer.concat(chunks))));
    request.on('error', reject);
  });
}

/** Node reads header bytes as Latin-1; API Gateway hands them to the Lambda decoded as UTF-8. */
function utf8Headers(headers: IncomingHttpHeaders): Record<string, string | string[] | undefined> {
  const decode = (value: string) => (/[^\x00-\x7f]/.test(value) ? Buffer.from(value, 'latin1').toString('utf8') : value);
  return Object.fromEntries(Object.entries(headers).map(([name, value]) => [name, Array.isArray(value) ? value.map(decode) : value === undefined ? value : decode(value)]));
}

export interface LocalHttpServer {
  url: string;
  server: Server;
  close(): Promise<void>;
}

/** Listens on 127.0.0.1:`port` (0 picks a free port). */
export async function serveGateway(
  gateway: LocalGateway,
  port: number,
  onError: (error: unknown) => void = () => undefined,
  service?: InvocationService,
): Promise<LocalHttpServer> {
  const server = createServer(async (request, response) => {
    if (service?.handles(request)) return service.handle(request, response);
    try {
      const body = await readBody(request);
      const url = new URL(request.url ?? '/', 'http://127.0.0.1');
      const result = await gateway.handle({
        method: request.method ?? 'GET',
        path: url.pathname,
        query: url.search.slice(1),
        headers: utf8Headers(request.headers),
        body,
      });
      response.writeHead(result.statusCode, { ...result.headers, 'content-length': String(result.body.length) });
      response.end(result.body);
    } catch (error) {
      const [status, message] = error instanceof PayloadTooLarge ? [413, 'Request Entity Too Large'] : [500, 'Internal Server Error'];
      if (status === 500) onError(error);
      if (!response.headersSent) response.writeHead(status, { 'content-type': 'application/json', connection: 'close' });
      response.end(JSON.stringify({ message }));
    }
  });
  // Streams may be quiet for long; the invocation service bounds its own waits.
  server.requestTimeout = 0;
  // gRPC (cleartext HTTP/2 with prior knowledge) on the same port, told apart by the connection preface.
  serveHttp2Too(server, (connection) => (service ? service.acceptHttp2(connection) : connection.destroy()));
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () => resolve());
  });
  const { port: boundPort } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${boundPort}`,
    server,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
