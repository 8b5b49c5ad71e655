/**
 * HTTP plumbing of the invocation service: problem+json answers, the caller's
 * key and scope, request bodies read up to a limit, and the headers NVCF reads.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { Logger } from '@aws-lambda-powertools/logger';
import type { ApiKeyRecord } from '../core/api-keys';
import { SERVICE_NAME } from '../core/names';
import { SATURATED_RETRY_AFTER_SECONDS } from '../core/limits';
import { Problem, badRequest, payloadTooLarge, unauthorized } from '../core/problem';
import type { Scope } from '../core/routes';
import type { ServiceCaches } from './caches';

export const logger = new Logger({ serviceName: SERVICE_NAME, persistentKeys: { role: 'invocation' } });

export const ASSETS_HINT = 'upload larger inputs as assets (POST /v2/nvcf/assets) and pass their ids in the NVCF-INPUT-ASSET-REFERENCES header';

/** Answers with a problem (unless an answer has started, when the connection is cut instead). */
export function sendProblem(res: ServerResponse, problem: Problem, instance: string, requestId?: string, headers: Record<string, string> = {}): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  const body = JSON.stringify(problem.toBody(instance, requestId));
  res.writeHead(problem.status, { ...problem.headers, ...headers, 'content-type': 'application/problem+json', 'content-length': String(Buffer.byteLength(body)) });
  res.end(body);
}

/** The caller's key record, with the scope checked; 401/403 problems otherwise. */
export async function authenticate(req: Pick<IncomingMessage, 'headers'>, caches: ServiceCaches, scope: Scope): Promise<ApiKeyRecord> {
  const match = /^Bearer\s+(\S+)\s*$/i.exec(req.headers.authorization ?? '');
  if (!match) throw unauthorized('the Authorization header must be "Bearer <API key>"');
  const record = await caches.keys.get(match[1]!);
  if (!record) throw unauthorized('the API key is unknown or has been revoked');
  if (!record.scopes.includes(scope)) throw new Problem(403, `this API key lacks the "${scope}" scope needed to invoke functions`);
  return record;
}

/**
 * The bytes of request bodies an instance holds at once (being read, or
 * waiting for their worker): callers beyond it get 429, so that many large
 * bodies never grow the heap without bound.
 */
export class BodyBudget {
  private held = 0;

  constructor(readonly limit: number) {}

  take(bytes: number): boolean {
    if (this.held + bytes > this.limit) return false;
    this.held += bytes;
    return true;
  }

  give(bytes: number): void {
    this.held -= bytes;
  }
}

/**
 * Reads the whole body, refusing more than `limit` bytes with 413 (at once
 * when Content-Length says so, else as soon as the count passes it), and
 * answering 429 when `budget` cannot hold it now. The connection is closed
 * rather than read to the end. The bytes stay taken from the budget until
 * `release` is called.
 */
export async function readBody(req: IncomingMessage, res: ServerResponse, limit: number, budget: BodyBudget): Promise<{ body: Buffer; release: () => void }> {
  const declared = Number(req.headers['content-length'] ?? 0);
  const refuse = (problem: Problem) => {
    res.setHeader('connection', 'close');
    return problem;
  };
  const tooLarge = (size: string) => refuse(payloadTooLarge(`request body is ${size} bytes; at most ${limit} bytes are accepted in a request: ${ASSETS_HINT}`));
  const busy = () =>
    refuse(new Problem(429, `this invocation service instance holds ${budget.limit} bytes of request bodies, its limit; retry shortly`, { headers: { 'retry-after': String(SATURATED_RETRY_AFTER_SECONDS) } }));
  if (declared > limit) throw tooLarge(String(declared));
  let taken = 0;
  const release = () => {
    budget.give(taken);
    taken = 0;
  };
  try {
    const body = await new Promise<Buffer>((resolve, reject) => {
      const chunks: Buffer[] = [];
      const stop = (problem: Problem) => {
        req.removeAllListeners('data');
        req.pause();
        reject(problem);
      };
      req.on('data', (chunk: Buffer) => {
        if (taken + chunk.length > limit) return stop(tooLarge(`more than ${limit}`));
        if (!budget.take(chunk.length)) return stop(busy());
        taken += chunk.length;
        chunks.push(chunk);
      });
      req.on('end', () => resolve(Buffer.concat(chunks, taken)));
      req.on('error', reject);
    });
    return { body, release };
  } catch (error) {
    release();
    throw error;
  }
}

/** A header's value as one string (repeated headers joined as HTTP joins them). */
export function header(req: IncomingMessage, name: string): string | undefined {
  const value = req.headers[name];
  return Array.isArray(value) ? value.join(', ') : value;
}

/** NVCF-POLL-SECONDS: integer 0–`max`, else 400; `fallback` when absent. */
export function pollSecondsOf(req: IncomingMessage, fallback: number, max: number): number {
  const raw = header(req, 'nvcf-poll-seconds');
  if (raw === undefined) return fallback;
  const value = raw.trim();
  if (!/^\d{1,4}$/.test(value) || Number(value) > max) throw badRequest(`header NVCF-POLL-SECONDS must be an integer from 0 to ${max}, got "${raw}"`);
  return Number(value);
}

/** Whether the caller accepts an event stream. */
export function acceptsEventStream(req: IncomingMessage): boolean {
  return /(^|,)\s*text\/event-stream\b/i.test(header(req, 'accept') ?? '');
}

/**
 * Request headers as text (lower-cased names, one string each): Node reads
 * header bytes as Latin-1; clients send UTF-8, which forwardableRequestHeaders
 * turns back into the same bytes for the container.
 */
export function requestHeaders(req: IncomingMessage): Record<string, string> {
  const decode = (value: string) => (/[^\x00-\x7f]/.test(value) ? Buffer.from(value, 'latin1').toString('utf8') : value);
  const out: Record<string, string> = {};
  for (const [name, value] of Object.entries(req.headers)) if (value !== undefined) out[name] = decode(Array.isArray(value) ? value.join(', ') : value);
  return out;
}
