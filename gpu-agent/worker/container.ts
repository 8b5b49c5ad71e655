/**
 * HTTP to the function container: the health check and the inference call.
 * The request body is streamed to the container (from memory or straight from
 * S3); the response is read as a stream — small bodies are kept in memory,
 * bodies over MAX_RESPONSE_BYTES are spilled to a file as they arrive — so
 * streaming (SSE) can later hand chunks on as they come.
 */
import { createWriteStream, type WriteStream } from 'node:fs';
import { Agent, request, type ClientRequest, type IncomingMessage } from 'node:http';
import type { Readable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { durationSeconds } from '../../core/function-schemas';
import { forwardableResponseHeaders, sendableHeaders } from '../../core/invocation-message';
import { MAX_RESPONSE_BYTES } from '../../core/limits';
import type { HealthCheck } from '../../core/model';
import { checkGrpcHealth } from './grpc-health';

/**
 * Idle keep-alive sockets are closed after this long: below the keep-alive
 * timeout of common servers (uvicorn and Node close idle sockets after 5 s),
 * so the worker never writes a job onto a socket the container already closed.
 */
export const CONTAINER_IDLE_SOCKET_MS = 4000;

const agent = new Agent({ keepAlive: true, timeout: CONTAINER_IDLE_SOCKET_MS });
/** For the one retry after a reused socket turned out dead: a new connection, whatever the pool holds. */
const freshConnection = new Agent({ keepAlive: false });

/** The container could not be reached or did not answer in time; the job is retried by redelivery. */
export class ContainerUnreachable extends Error {
  override readonly name = 'ContainerUnreachable';
}

/** The container answered, but its body could not be kept (ENOSPC, EMFILE, …): retrying would run the job again for nothing. */
export class ResponseNotStored extends Error {
  override readonly name = 'ResponseNotStored';
}

/** The request body could not be read (S3); the container is not to blame, and a redelivery may succeed. */
export class RequestBodyUnavailable extends Error {
  override readonly name = 'RequestBodyUnavailable';
}

/** A reused keep-alive socket was reset before the container answered: the container had closed it, and saw nothing. */
class StaleSocket extends Error {}

export interface ContainerResponse {
  status: number;
  headers: Record<string, string>;
  size: number;
  /** The body when it stayed in memory. */
  body?: Buffer;
  /** The file holding the body when it was larger than MAX_RESPONSE_BYTES. */
  file?: string;
}

/** The bytes to send, opened once per attempt (a retry needs them again); `length` is their exact size. */
export type RequestBody = () => Promise<{ data: Buffer | Readable; length: number }>;

export interface InferenceCall {
  url: string;
  /** POST for pexec; the caller's method for direct invocation. */
  method?: string;
  headers: Record<string, string>;
  body: RequestBody;
  timeoutMs: number;
  /** Where to spill a large body. */
  spillFile: string;
  /** Aborts the call; the call then rejects with the signal's reason. */
  signal?: AbortSignal;
}

/** The container's answer as soon as its head arrived; its body is read by the caller of openContainer. */
export interface OpenResponse {
  status: number;
  headers: Record<string, string>;
  body: IncomingMessage;
  /** Why the exchange failed, in the worker's terms, for an error met while reading the body. */
  failure(error: Error): Error;
}

const RESET_CODES = new Set(['ECONNRESET', 'EPIPE', 'ECONNABORTED']);

/**
 * POSTs a job to the container and reads its whole answer. A keep-alive
 * socket the container closed just as it was reused is retried once on a
 * new connection; any other failure to get an answer is ContainerUnreachable.
 */
export async function callContainer(call: InferenceCall): Promise<ContainerResponse> {
  return readResponse(await openContainer(call), call.spillFile);
}

/** Sends the request and resolves with the answer's head (stale keep-alive sockets retried once). */
export async function openContainer(call: InferenceCall): Promise<OpenResponse> {
  try {
    return await attempt(call, agent);
  } catch (error) {
    if (!(error instanceof StaleSocket)) throw error;
    return attempt(call, freshConnection);
  }
}

async function attempt(call: InferenceCall, via: Agent): Promise<OpenResponse> {
  // Failing to open the body is the caller's to judge (a missing object is not a transient failure).
  const body = await call.body();
  const timeout = AbortSignal.timeout(call.timeoutMs);
  const signal = call.signal ? AbortSignal.any([timeout, call.signal]) : timeout;
  return new Promise((resolve, reject) => {
    let responded = false;
    let bodyError: Error | undefined;
    let req: ClientRequest;
    // Why the exchange failed, in the worker's terms.
    const failure = (error: Error): Error => {
      if (call.signal?.aborted) return call.signal.reason as Error;
      if (bodyError) return new RequestBodyUnavailable(`request body could not be read: ${bodyError.message}`, { cause: bodyError });
      if (timeout.aborted) return new ContainerUnreachable(`inference request to ${call.url} got no answer within ${call.timeoutMs} ms`);
      const code = (error as NodeJS.ErrnoException).code ?? '';
      if (!responded && req.reusedSocket && RESET_CODES.has(code)) return new StaleSocket(error.message);
      return new ContainerUnreachable(`inference request to ${call.url} failed: ${error.message}`);
    };

    req = request(call.url, {
      method: call.method ?? 'POST',
      agent: via,
      headers: { ...sendableHeaders(call.headers), 'content-length': String(body.length) },
      signal,
    });
    req.on('error', (error) => {
      if (responded) return;
      if (!Buffer.isBuffer(body.data)) body.data.destroy();
      reject(failure(error));
    });
    req.on('response', (res) => {
      responded = true;
      resolve({ status: res.statusCode ?? 502, headers: forwardableResponseHeaders(res.headers), body: res, failure });
    });
    if (Buffer.isBuffer(body.data)) {
      req.end(body.data);
    } else {
      const stream = body.data;
      stream.on('error', (error) => {
        bodyError = error;
        req.destroy(error);
      });
      stream.pipe(req);
    }
  });
}

/** Reads a whole answer: in memory up to MAX_RESPONSE_BYTES, spilled to `spillFile` beyond. */
export function readResponse(open: OpenResponse, spillFile: string): Promise<ContainerResponse> {
  const res = open.body;
  return new Promise((resolve, reject) => {
    let settled = false;
    let spill: WriteStream | undefined;
    const settle = (error: Error | undefined, value?: ContainerResponse) => {
      if (settled) return;
      settled = true;
      if (error) {
        spill?.destroy();
        res.destroy();
        reject(error);
      } else resolve(value!);
    };
    const chunks: Buffer[] = [];
    let size = 0;
    res.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (!spill && size > MAX_RESPONSE_BYTES) {
        spill = createWriteStream(spillFile);
        // A full or unwritable disk must fail this job, not crash the worker.
        spill.on('error', (error) => settle(new ResponseNotStored(`response body could not be written to ${spillFile}: ${error.message}`, { cause: error })));
        for (const kept of chunks) spill.write(kept);
        chunks.length = 0;
      }
      if (spill) {
        if (!spill.write(chunk)) {
          res.pause();
          spill.once('drain', () => res.resume());
        }
      } else chunks.push(chunk);
    });
    res.on('error', (error) => settle(open.failure(error)));
    res.on('close', () => {
      if (!res.complete) settle(open.failure(new Error('the container closed the connection mid-answer')));
    });
    res.on('end', () => {
      const base = { status: open.status, headers: open.headers, size };
      if (!spill) return settle(undefined, { ...base, body: Buffer.concat(chunks) });
      spill.end(() => settle(undefined, { ...base, file: spillFile }));
    });
  });
}

/** One health probe: undefined when healthy, else why not. A gRPC function's is grpc.health.v1 at the URL's host and port. */
async function probe(url: string, health: HealthCheck): Promise<string | undefined> {
  if (health.protocol === 'gRPC') {
    const { hostname, port } = new URL(url);
    return checkGrpcHealth(hostname.replace(/^\[|\]$/g, ''), Number(port || health.port), (durationSeconds(health.timeout) || 10) * 1000);
  }
  try {
    const response = await fetch(url, { signal: AbortSignal.timeout((durationSeconds(health.timeout) || 10) * 1000) });
    await response.arrayBuffer();
    return response.status === health.expectedStatusCode ? undefined : `health check GET ${url} answered ${response.status}, expected ${health.expectedStatusCode}`;
  } catch (error) {
    return `health check GET ${url} failed: ${((error as Error).cause as Error | undefined)?.message ?? (error as Error).message}`;
  }
}

/** How often a container that is not healthy yet has its last health check reported. */
export const HEALTH_PROGRESS_INTERVAL_MS = 10_000;

/** Told, while the container is not healthy yet, what its last health check answered and how long is left. */
export type HealthProgress = (failure: string, remainingMs: number) => Promise<void>;

/**
 * Probes the container until its health check passes or `timeoutMs` passes.
 * Every failure (connection refused, 404 while the server starts, wrong status)
 * is retried, and `progress` hears of it every HEALTH_PROGRESS_INTERVAL_MS;
 * returns undefined when healthy, else the last failure.
 */
export async function waitForHealthy(
  url: string,
  health: HealthCheck,
  timeoutMs: number,
  stopped: () => boolean = () => false,
  progress?: HealthProgress,
): Promise<string | undefined> {
  const started = Date.now();
  const deadline = started + timeoutMs;
  let reportAt = started + HEALTH_PROGRESS_INTERVAL_MS;
  let delay = 100;
  for (;;) {
    const failure = await probe(url, health);
    if (!failure || stopped() || Date.now() + delay > deadline) return failure;
    if (progress && Date.now() >= reportAt) {
      reportAt = Date.now() + HEALTH_PROGRESS_INTERVAL_MS;
      await progress(failure, deadline - Date.now());
    }
    await sleep(delay);
    delay = Math.min(delay * 2, 1000);
  }
}
