/**
 * The queue message of one invocation, written by the invocations Lambda and
 * read by the gpu-agent worker, and the header rules both sides share
 * (nvcf-api.md §3.1, §4.2).
 */
import { isUtf8 } from 'node:buffer';
import * as z from 'zod';
import { POLL_SECONDS_MAX } from './limits';

/**
 * The request body: inline in the message (≤ MAX_INLINE_REQUEST_BYTES once
 * encoded), an object in the bucket, or held by the invocation service that
 * holds the caller (`attach`: fetched over the attach channel; once the call
 * is durable, from the bucket at inputObjectKey(requestId)).
 */
export const messageBodySchema = z.discriminatedUnion('kind', [
  z.object({ kind: z.literal('inline'), encoding: z.enum(['utf8', 'base64']), data: z.string() }),
  z.object({ kind: z.literal('s3'), key: z.string().min(1), bytes: z.number().int().nonnegative() }),
  z.object({ kind: z.literal('attach'), bytes: z.number().int().nonnegative() }),
]);

/** Where the invocation service instance holding the caller waits for the worker to attach (DESIGN.md "Invocation path"). */
export const replyAddressSchema = z.object({
  host: z.string().min(1),
  port: z.number().int().min(1).max(65535),
  /** Secret of this request at that instance: only the worker that read the message can attach. */
  token: z.string().min(16),
});
export type ReplyAddress = z.infer<typeof replyAddressSchema>;

/** Direct invocation (nvcf-api.md I5): the caller's method and path with query, passed to the container verbatim. */
export const directRouteSchema = z.object({ method: z.string().regex(/^[A-Z]+$/), path: z.string().startsWith('/') });
export type MessageBody = z.infer<typeof messageBodySchema>;

export const invocationMessageSchema = z.object({
  requestId: z.uuid(),
  /** The caller's account (`NVCF-NCAID`); assets are read from its prefix. */
  accountId: z.string().min(1),
  functionId: z.uuid(),
  versionId: z.uuid(),
  /** Client headers to forward, names lower-cased, already stripped of hop-by-hop and worker-owned names. */
  headers: z.record(z.string(), z.string()),
  body: messageBodySchema,
  assetIds: z.array(z.uuid()),
  /**
   * Seconds the client's call waits from `acceptedAt` (NVCF-POLL-SECONDS, cut to what the API
   * really waits); the container gets what is left of it in NVCF-POLL-SECONDS.
   */
  pollSeconds: z.number().int().min(0).max(POLL_SECONDS_MAX),
  /** ISO time the API accepted the request. */
  acceptedAt: z.iso.datetime(),
  /** Present while a caller waits on the invocation service: the worker attaches there first. Absent: the call is durable from the start. */
  replyTo: replyAddressSchema.optional(),
  /** Present for direct invocation: method and path of the container call; the response is passed through as it comes. */
  route: directRouteSchema.optional(),
  /** The caller accepts `text/event-stream`: an SSE answer of the container is relayed as it is written. */
  stream: z.boolean().optional(),
  /**
   * `grpc`: a gRPC session (core/grpc.ts), not one call: the worker attaches to `replyTo` and serves
   * the caller connection's streams through it for its lifetime, holding one slot; no body, no store.
   */
  session: z.literal('grpc').optional(),
  /**
   * Set on a copy a worker sends when it hands a job back on its last allowed delivery: the
   * MessageId of the message it replaces, so the copy is not mistaken for a duplicate.
   */
  copyOf: z.string().min(1).optional(),
});
export type InvocationMessage = z.infer<typeof invocationMessageSchema>;

/** Hop-by-hop headers (RFC 9110 §7.6.1) plus the framing headers each hop recomputes. */
export const HOP_BY_HOP_HEADERS: ReadonlySet<string> = new Set([
  'connection',
  'keep-alive',
  'proxy-authenticate',
  'proxy-authorization',
  'proxy-connection',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
  'content-length',
]);

/** The `NVCF-*` headers the worker sets itself (nvcf-api.md §4.2); a client's values for them are dropped. */
export const WORKER_OWNED_HEADERS: ReadonlySet<string> = new Set(
  [
    'NVCF-REQID',
    'NVCF-SUB',
    'NVCF-NCAID',
    'NVCF-FUNCTION-NAME',
    'NVCF-FUNCTION-ID',
    'NVCF-FUNCTION-VERSION-ID',
    'NVCF-ASSET-DIR',
    'NVCF-LARGE-OUTPUT-DIR',
    'NVCF-MAX-RESPONSE-SIZE-BYTES',
    'NVCF-NSPECTID',
    'NVCF-BACKEND',
    'NVCF-INSTANCETYPE',
    'NVCF-REGION',
    'NVCF-ENV',
    'NVCF-FUNCTION-ASSET-IDS',
    'NVCF-POLL-SECONDS',
    'NVCF-INVOCATION-REGION',
  ].map((name) => name.toLowerCase()),
);

/** Request headers the API consumes and does not pass on. */
const CONSUMED_HEADERS: ReadonlySet<string> = new Set(['authorization', 'host', 'nvcf-input-asset-references']);

/** RFC 9110 token: what Node accepts as a header name. */
const HEADER_NAME = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;
/** What Node can write as a header value: tab, visible Latin-1 and space; no other control characters. */
const SENDABLE_VALUE = /^[\t\x20-\x7e\x80-\xff]*$/;

function headersOf(headers: Record<string, string>, encode: RegExp): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [name, value] of Object.entries(headers)) {
    if (!HEADER_NAME.test(name)) continue;
    const bytes = encode.test(value) ? Buffer.from(value, 'utf8').toString('latin1') : value;
    if (SENDABLE_VALUE.test(bytes)) out[name] = bytes;
  }
  return out;
}

/**
 * Headers in the form Node sends them, one character per byte: Node writes
 * header strings as Latin-1 and throws on anything beyond it. Characters
 * beyond Latin-1 become their UTF-8 bytes; headers with an invalid name or a
 * control character in the value are left out.
 */
export function sendableHeaders(headers: Record<string, string>): Record<string, string> {
  return headersOf(headers, /[^\x00-\xff]/);
}

/** The client headers that reach the container: all but hop-by-hop, Authorization, Host and worker-owned names. */
export function forwardableRequestHeaders(headers: Record<string, string>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [name, value] of Object.entries(headers)) {
    const lower = name.toLowerCase();
    if (HOP_BY_HOP_HEADERS.has(lower) || CONSUMED_HEADERS.has(lower) || WORKER_OWNED_HEADERS.has(lower)) continue;
    out[lower] = value;
  }
  // API Gateway hands header bytes over decoded as UTF-8: any non-ASCII text goes on as its UTF-8 bytes, as the client sent it.
  return headersOf(out, /[^\x00-\x7f]/);
}

/** Response headers are the platform's to set when their name starts with this (NVCF-REQID, NVCF-STATUS, ...). */
const PLATFORM_RESPONSE_PREFIX = 'nvcf-';

/**
 * The container's response headers the client gets, names lower-cased: all but
 * hop-by-hop ones and `nvcf-*`, which only the platform sets.
 */
export function forwardableResponseHeaders(headers: Record<string, string | string[] | undefined>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [name, value] of Object.entries(headers)) {
    const lower = name.toLowerCase();
    if (value === undefined || HOP_BY_HOP_HEADERS.has(lower) || lower.startsWith(PLATFORM_RESPONSE_PREFIX)) continue;
    const joined = Array.isArray(value) ? value.join(', ') : value;
    out[lower] = lower in out ? `${out[lower]}, ${joined}` : joined;
  }
  return out;
}

/**
 * Bytes a result body takes in the invocations Lambda's answer: UTF-8 text as
 * a JSON string (escapes included), anything else base64-encoded in quotes.
 * The worker decides with it whether a result can be answered directly.
 */
export function lambdaBodyBytes(body: Buffer): number {
  return isUtf8(body) ? Buffer.byteLength(JSON.stringify(body.toString('utf8'))) : 4 * Math.ceil(body.length / 3) + 2;
}
