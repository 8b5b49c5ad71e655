/**
 * gRPC echo inference server for gRPC functions (inferenceUrl
 * `grpc.nvcf.nvidia.com:443`), in Node with @grpc/grpc-js and the .proto files
 * beside it loaded at start (run with `npx tsx examples/grpc-echo/server.ts
 * [port]`, or PORT=8001). Service `nvcf.examples.Echo` (echo.proto):
 *
 * - `EchoMessage` (unary): the message back, with the request metadata it
 *   received (`nvcf-*` and any `x-*` key) as "key=value" strings;
 * - `EchoStream` (server-streaming): `count` replies, each after `delay_ms`;
 * - `EchoCollect` (client-streaming): one reply once the caller ends, the
 *   requests' messages joined by spaces;
 * - `EchoBidi` (bidirectional): each request answered as it arrives;
 * - `Events`: what became of earlier calls carrying `tag`: `finished`,
 *   `cancelled` (the caller went away) or `deadline-exceeded`, with the
 *   deadline the call arrived with (grpc-timeout), so a test can see that
 *   deadlines and cancellation reach the container;
 * - `fail_code` in any request: answer that gRPC status instead.
 *
 * `grpc.health.v1.Health/Check` answers SERVING for the overall service `""`,
 * while `nvcf.examples.Echo` toggles between SERVING and NOT_SERVING every
 * GRPC_ECHO_TOGGLE_MS (default 1000), as a server whose parts come and go.
 */
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';

interface EchoRequest {
  message: string;
  count: number;
  delayMs: number;
  tag: string;
  failCode: number;
}

interface CallEvent {
  tag: string;
  rpc: string;
  outcome: 'finished' | 'cancelled' | 'deadline-exceeded';
  deadlineMs: number;
}

const here = dirname(fileURLToPath(import.meta.url));
const definition = protoLoader.loadSync([join(here, 'echo.proto'), join(here, 'health.proto')], { keepCase: false, longs: Number, enums: String, defaults: true });
const loaded = grpc.loadPackageDefinition(definition) as any;
const port = Number(process.argv[2] ?? process.env.PORT ?? 8001);
const toggleMs = Number(process.env.GRPC_ECHO_TOGGLE_MS ?? 1000);
const ECHO_SERVICE = 'nvcf.examples.Echo';
/** The newest calls' events, for Events. */
const events: CallEvent[] = [];
const MAX_EVENTS = 1000;

function receivedMetadata(metadata: grpc.Metadata): string[] {
  return Object.entries(metadata.getMap())
    .filter(([key]) => key.startsWith('nvcf-') || key.startsWith('x-'))
    .map(([key, value]) => `${key}=${String(value)}`)
    .sort();
}

/** Records how a call ended; `deadlineMs` is its deadline as it arrived, relative to its start. */
function watch(call: { getDeadline(): grpc.Deadline; on(event: 'cancelled', listener: () => void): unknown }, rpc: string, tag: () => string): { finished: () => void; cancelled: () => boolean } {
  const started = Date.now();
  const deadline = call.getDeadline();
  const deadlineAt = deadline instanceof Date ? deadline.getTime() : deadline;
  const deadlineMs = Number.isFinite(deadlineAt) ? Math.max(0, Math.round(deadlineAt - started)) : -1;
  let over = false;
  const record = (outcome: CallEvent['outcome']) => {
    if (over) return;
    over = true;
    if (tag()) events.push({ tag: tag(), rpc, outcome, deadlineMs });
    if (events.length > MAX_EVENTS) events.shift();
  };
  call.on('cancelled', () => record(Number.isFinite(deadlineAt) && Date.now() >= deadlineAt - 20 ? 'deadline-exceeded' : 'cancelled'));
  return { finished: () => record('finished'), cancelled: () => over };
}

function reply(request: EchoRequest, metadata: grpc.Metadata, index: number) {
  return { message: request.message, index, metadata: receivedMetadata(metadata) };
}

function failure(request: EchoRequest): Partial<grpc.StatusObject> | undefined {
  return request.failCode ? { code: request.failCode, details: request.message || `failing with ${request.failCode} as asked` } : undefined;
}

const echo: grpc.UntypedServiceImplementation = {
  EchoMessage(call: grpc.ServerUnaryCall<EchoRequest, unknown>, callback: grpc.sendUnaryData<unknown>) {
    const watched = watch(call, 'EchoMessage', () => call.request.tag);
    const failed = failure(call.request);
    const answer = () => {
      if (watched.cancelled()) return;
      watched.finished();
      if (failed) return callback(failed, null);
      const trailer = new grpc.Metadata();
      trailer.set('x-echo-trailer', 'unary');
      callback(null, reply(call.request, call.metadata, 0), trailer);
    };
    if (call.request.delayMs > 0) setTimeout(answer, call.request.delayMs);
    else answer();
  },
  EchoStream(call: grpc.ServerWritableStream<EchoRequest, unknown>) {
    const watched = watch(call, 'EchoStream', () => call.request.tag);
    const failed = failure(call.request);
    if (failed) {
      watched.finished();
      return call.emit('error', failed);
    }
    const count = Math.max(1, call.request.count);
    let index = 0;
    const next = () => {
      if (watched.cancelled()) return;
      call.write(reply(call.request, call.metadata, index));
      index += 1;
      if (index < count) return void setTimeout(next, call.request.delayMs);
      watched.finished();
      const trailer = new grpc.Metadata();
      trailer.set('x-echo-trailer', `streamed ${count}`);
      call.end(trailer);
    };
    setTimeout(next, call.request.delayMs);
  },
  EchoCollect(call: grpc.ServerReadableStream<EchoRequest, unknown>, callback: grpc.sendUnaryData<unknown>) {
    let tag = '';
    const watched = watch(call, 'EchoCollect', () => tag);
    const messages: string[] = [];
    call.on('data', (request: EchoRequest) => {
      tag ||= request.tag;
      messages.push(request.message);
    });
    call.on('end', () => {
      if (watched.cancelled()) return;
      watched.finished();
      callback(null, { message: messages.join(' '), index: messages.length, metadata: receivedMetadata(call.metadata) });
    });
  },
  EchoBidi(call: grpc.ServerDuplexStream<EchoRequest, unknown>) {
    let tag = '';
    const watched = watch(call, 'EchoBidi', () => tag);
    let index = 0;
    call.on('data', (request: EchoRequest) => {
      tag ||= request.tag;
      const failed = failure(request);
      if (failed) {
        watched.finished();
        return call.emit('error', failed);
      }
      call.write(reply(request, call.metadata, index++));
    });
    call.on('end', () => {
      if (watched.cancelled()) return;
      watched.finished();
      call.end();
    });
  },
  Events(call: grpc.ServerUnaryCall<{ tag: string }, unknown>, callback: grpc.sendUnaryData<unknown>) {
    callback(null, { events: events.filter((event) => event.tag === call.request.tag) });
  },
};

let echoServing = true;
setInterval(() => (echoServing = !echoServing), toggleMs).unref();

const health: grpc.UntypedServiceImplementation = {
  Check(call: grpc.ServerUnaryCall<{ service: string }, unknown>, callback: grpc.sendUnaryData<unknown>) {
    const { service } = call.request;
    if (service === '') return callback(null, { status: 'SERVING' });
    if (service === ECHO_SERVICE) return callback(null, { status: echoServing ? 'SERVING' : 'NOT_SERVING' });
    callback({ code: grpc.status.NOT_FOUND, details: `unknown service ${service}` }, null);
  },
};

const server = new grpc.Server();
server.addService(loaded.nvcf.examples.Echo.service, echo);
server.addService(loaded.grpc.health.v1.Health.service, health);
server.bindAsync(`127.0.0.1:${port}`, grpc.ServerCredentials.createInsecure(), (error, bound) => {
  if (error) {
    console.error(`grpc-echo could not listen on ${port}: ${error.message}`);
    process.exit(1);
  }
  console.log(`grpc-echo listening on 127.0.0.1:${bound}`);
});
for (const signal of ['SIGTERM', 'SIGINT'] as const) process.once(signal, () => server.tryShutdown(() => process.exit(0)));
