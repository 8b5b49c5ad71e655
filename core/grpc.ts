/**
 * gRPC at the HTTP/2 stream level, shared by the invocation service (caller →
 * session tunnel) and the worker (tunnel → container): the status codes the
 * platform answers with itself, trailers-only answers, and the forwarding of
 * one stream to another HTTP/2 session with headers, DATA as it arrives,
 * trailers and resets passed on. Any service and method passes through: no
 * `.proto` is needed at either hop.
 *
 * A gRPC session (DESIGN.md "Coming later", issue 15): one caller connection
 * is served by one worker for its lifetime. The service queues one message
 * (`session: "grpc"`), the worker attaches back on the attach port as for a
 * live call (core/attach.ts), and the attach stream then carries an HTTP/2
 * connection of its own in reverse: the service is its client, the worker its
 * server, each caller stream one stream on it.
 */
import { constants, type ClientHttp2Session, type IncomingHttpHeaders, type OutgoingHttpHeaders, type ServerHttp2Stream } from 'node:http2';
import { HOP_BY_HOP_HEADERS } from './invocation-message';

/** The gRPC status codes the platform itself answers with (grpc/doc/statuscodes.md). */
export const GRPC_STATUS = {
  ok: 0,
  cancelled: 1,
  invalidArgument: 3,
  deadlineExceeded: 4,
  notFound: 5,
  permissionDenied: 7,
  resourceExhausted: 8,
  failedPrecondition: 9,
  internal: 13,
  unavailable: 14,
  unauthenticated: 16,
} as const;
export type GrpcStatus = (typeof GRPC_STATUS)[keyof typeof GRPC_STATUS];

/** The standard health check method (grpc.health.v1; nvcf-api.md §4.3). */
export const HEALTH_CHECK_METHOD = '/grpc.health.v1.Health/Check';

/** The queue message kind of a gRPC session (core/invocation-message.ts `session`). */
export const GRPC_SESSION_KIND = 'grpc';

/** grpc-message is percent-encoded UTF-8 (PROTOCOL-HTTP2.md): bytes outside printable ASCII, and '%'. */
export function encodeGrpcMessage(message: string): string {
  let out = '';
  for (const byte of Buffer.from(message, 'utf8')) out += byte >= 0x20 && byte <= 0x7e && byte !== 0x25 ? String.fromCharCode(byte) : `%${byte.toString(16).toUpperCase().padStart(2, '0')}`;
  return out;
}

const TIMEOUT_UNIT_MS: Record<string, number> = { H: 3_600_000, M: 60_000, S: 1000, m: 1, u: 0.001, n: 0.000001 };

/** grpc-timeout (PROTOCOL-HTTP2.md: up to 8 digits and a unit H, M, S, m, u, n) in milliseconds; undefined when absent or malformed. */
export function grpcTimeoutMs(value: string | string[] | undefined): number | undefined {
  const match = /^(\d{1,8})([HMSmun])$/.exec(Array.isArray(value) ? (value[0] ?? '') : (value ?? ''));
  return match ? Number(match[1]) * TIMEOUT_UNIT_MS[match[2]!]! : undefined;
}

/** What is left of a deadline of `timeoutMs` after `elapsedMs`, as a grpc-timeout value (at least 1 ms). */
export function remainingGrpcTimeout(timeoutMs: number, elapsedMs: number): string {
  return `${Math.max(1, Math.min(99_999_999, Math.ceil(timeoutMs - elapsedMs)))}m`;
}

/** Whether a request is a gRPC call (content-type application/grpc, with or without a +codec suffix). */
export function isGrpcRequest(headers: IncomingHttpHeaders): boolean {
  return headers[':method'] === 'POST' && /^application\/grpc(\+|;|$)/i.test(String(headers['content-type'] ?? ''));
}

/**
 * Ends a call with a gRPC status in a trailers-only answer (HTTP 200 with
 * grpc-status in the headers), or resets the stream when an answer already
 * started.
 */
export function answerGrpcStatus(stream: ServerHttp2Stream, status: GrpcStatus, message: string): void {
  if (stream.destroyed || stream.closed) return;
  if (stream.headersSent) {
    stream.close(constants.NGHTTP2_INTERNAL_ERROR);
    return;
  }
  stream.respond({ ':status': 200, 'content-type': 'application/grpc', 'grpc-status': String(status), 'grpc-message': encodeGrpcMessage(message) }, { endStream: true });
  // Whatever the caller still sends is not wanted; reading it lets the stream close.
  stream.resume();
}

/** Headers of one hop for the next, pseudo-headers included; hop-by-hop ones and `drop` left out. */
function passedOn(headers: IncomingHttpHeaders, drop: ReadonlySet<string>): OutgoingHttpHeaders {
  const out: OutgoingHttpHeaders = {};
  for (const [name, value] of Object.entries(headers)) {
    if (value === undefined || HOP_BY_HOP_HEADERS.has(name) || drop.has(name)) continue;
    out[name] = value;
  }
  // te: trailers is the one value HTTP/2 allows, and gRPC servers require it.
  if (headers.te === 'trailers') out.te = 'trailers';
  return out;
}

export interface ForwardOptions {
  /** Request header names not passed on (lower case). */
  drop?: ReadonlySet<string>;
  /** When the call arrived (Date.now()): its grpc-timeout goes on less the time it waited here. */
  arrivedAt?: number;
  /** Request headers added (or replaced). */
  add?: Record<string, string>;
  /** What the caller is told when the upstream stream fails before answering. */
  unavailable: string;
  /** Told once both streams are over. */
  onDone?: () => void;
}

/**
 * Forwards one incoming stream to `upstream`: request headers and DATA as
 * they arrive, the answer's headers, DATA and trailers back as they arrive,
 * and a reset either way (a caller's cancel reaches the container as
 * RST_STREAM CANCEL). HTTP/2 flow control carries backpressure both ways.
 */
export function forwardStream(incoming: ServerHttp2Stream, headers: IncomingHttpHeaders, upstream: ClientHttp2Session, options: ForwardOptions): void {
  const outgoing = { ...passedOn(headers, options.drop ?? new Set()), ...options.add };
  const timeoutMs = grpcTimeoutMs(headers['grpc-timeout']);
  // The container's deadline is the caller's: a call that waited for its session has that much less time.
  if (timeoutMs !== undefined && options.arrivedAt !== undefined) outgoing['grpc-timeout'] = remainingGrpcTimeout(timeoutMs, Date.now() - options.arrivedAt);
  let upstreamStream: ReturnType<ClientHttp2Session['request']>;
  try {
    upstreamStream = upstream.request(outgoing);
  } catch (error) {
    answerGrpcStatus(incoming, GRPC_STATUS.unavailable, `${options.unavailable}: ${(error as Error).message}`);
    options.onDone?.();
    return;
  }
  let trailers: OutgoingHttpHeaders | undefined;
  let failure: Error | undefined;
  let pending = 2;
  const done = () => {
    pending -= 1;
    if (pending === 0) options.onDone?.();
  };
  incoming.on('error', () => undefined);
  upstreamStream.on('error', (error) => (failure = error));
  incoming.pipe(upstreamStream);
  upstreamStream.on('response', (responseHeaders, flags) => {
    if (incoming.destroyed || incoming.closed) return;
    const head = passedOn(responseHeaders, new Set());
    // Trailers-only (an error status, or an empty answer): the headers are the whole answer.
    if (flags & constants.NGHTTP2_FLAG_END_STREAM) {
      incoming.respond(head, { endStream: true });
      return;
    }
    incoming.respond(head, { waitForTrailers: true });
    incoming.on('wantTrailers', () => (trailers ? incoming.sendTrailers(trailers) : incoming.close()));
    upstreamStream.pipe(incoming);
  });
  upstreamStream.on('trailers', (received) => (trailers = passedOn(received, new Set())));
  incoming.on('close', () => {
    // The caller went away (or reset): the container's call is cancelled.
    if (!upstreamStream.closed) upstreamStream.close(constants.NGHTTP2_CANCEL);
    done();
  });
  upstreamStream.on('close', () => {
    done();
    if (incoming.destroyed || incoming.closed) return;
    if (!incoming.headersSent) return answerGrpcStatus(incoming, GRPC_STATUS.unavailable, failure ? `${options.unavailable}: ${failure.message}` : options.unavailable);
    // Reset upstream mid-answer: the caller sees the same reset (CANCEL reads as CANCELLED).
    if (upstreamStream.rstCode !== undefined && upstreamStream.rstCode !== constants.NGHTTP2_NO_ERROR) incoming.close(upstreamStream.rstCode);
  });
}
