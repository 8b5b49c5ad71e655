/**
 * The queue message of one invocation, written by the invocations Lambda and
 * read by the gpu-agent worker, and the header rules both sides share
 * (nvcf-api.md §3.1, §4.2).
 */
import * as z from 'zod';
import { POLL_SECONDS_MAX } from './limits';

/** The request body: inline in the message (≤ MAX_INLINE_REQUEST_BYTES once encoded) or an object in the bucket. */
export const messageBodySchema = z.discriminatedUnion('kind', [
  z.object({ kind: z.literal('inline'), encoding: z.enum(['utf8', 'base64']), data: z.string() }),
  z.object({ kind: z.literal('s3'), key: z.string().min(1), bytes: z.number().int().nonnegative() }),
]);
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
  /** The client's poll window in seconds; the container gets what is left of it in NVCF-POLL-SECONDS. */
  pollSeconds: z.number().int().min(0).max(POLL_SECONDS_MAX),
  /** ISO time the API accepted the request. */
  acceptedAt: z.iso.datetime(),
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

/** The client headers that reach the container: all but hop-by-hop, Authorization, Host and worker-owned names. */
export function forwardableRequestHeaders(headers: Record<string, string>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [name, value] of Object.entries(headers)) {
    const lower = name.toLowerCase();
    if (HOP_BY_HOP_HEADERS.has(lower) || CONSUMED_HEADERS.has(lower) || WORKER_OWNED_HEADERS.has(lower)) continue;
    out[lower] = value;
  }
  return out;
}

/** The container's response headers the client gets: all but hop-by-hop ones. */
export function forwardableResponseHeaders(headers: Record<string, string | string[] | undefined>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [name, value] of Object.entries(headers)) {
    const lower = name.toLowerCase();
    if (value === undefined || HOP_BY_HOP_HEADERS.has(lower)) continue;
    out[lower] = Array.isArray(value) ? value.join(', ') : value;
  }
  return out;
}
