/**
 * HTTP to the function container: the health check and the inference call.
 * The inference response is read as a stream — small bodies are kept in
 * memory, bodies over MAX_RESPONSE_BYTES are spilled to a file as they
 * arrive — so streaming (SSE) can later hand chunks on as they come.
 */
import { createWriteStream, type WriteStream } from 'node:fs';
import { Agent, request } from 'node:http';
import { setTimeout as sleep } from 'node:timers/promises';
import { finished } from 'node:stream/promises';
import { durationSeconds } from '../../core/function-schemas';
import { forwardableResponseHeaders } from '../../core/invocation-message';
import { MAX_RESPONSE_BYTES } from '../../core/limits';
import type { HealthCheck } from '../../core/model';

const agent = new Agent({ keepAlive: true });

/** The container could not be reached or did not answer in time; the job is retried by redelivery. */
export class ContainerUnreachable extends Error {
  override readonly name = 'ContainerUnreachable';
}

export interface ContainerResponse {
  status: number;
  headers: Record<string, string>;
  size: number;
  /** The body when it stayed in memory. */
  body?: Buffer;
  /** The file holding the body when it was larger than MAX_RESPONSE_BYTES. */
  file?: string;
}

export interface InferenceCall {
  url: string;
  headers: Record<string, string>;
  body: Buffer;
  timeoutMs: number;
  /** Where to spill a large body. */
  spillFile: string;
}

/** POSTs a job to the container and reads its whole answer. */
export function callContainer(call: InferenceCall): Promise<ContainerResponse> {
  return new Promise((resolve, reject) => {
    const req = request(call.url, {
      method: 'POST',
      agent,
      headers: { ...call.headers, 'content-length': String(call.body.length) },
      signal: AbortSignal.timeout(call.timeoutMs),
    });
    const fail = (error: Error) => reject(new ContainerUnreachable(`inference request to ${call.url} failed: ${error.message}`));
    req.on('error', fail);
    req.on('response', (res) => {
      const chunks: Buffer[] = [];
      let size = 0;
      let spill: WriteStream | undefined;
      res.on('data', (chunk: Buffer) => {
        size += chunk.length;
        if (!spill && size > MAX_RESPONSE_BYTES) {
          spill = createWriteStream(call.spillFile);
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
      res.on('error', fail);
      res.on('end', () => {
        const base = { status: res.statusCode ?? 502, headers: forwardableResponseHeaders(res.headers), size };
        if (!spill) return resolve({ ...base, body: Buffer.concat(chunks) });
        spill.end();
        finished(spill).then(() => resolve({ ...base, file: call.spillFile }), reject);
      });
    });
    req.end(call.body);
  });
}

/** One health probe: undefined when healthy, else why not. */
async function probe(url: string, health: HealthCheck): Promise<string | undefined> {
  try {
    const response = await fetch(url, { signal: AbortSignal.timeout((durationSeconds(health.timeout) || 10) * 1000) });
    await response.arrayBuffer();
    return response.status === health.expectedStatusCode ? undefined : `health check GET ${url} answered ${response.status}, expected ${health.expectedStatusCode}`;
  } catch (error) {
    return `health check GET ${url} failed: ${((error as Error).cause as Error | undefined)?.message ?? (error as Error).message}`;
  }
}

/**
 * Probes the container until its health check passes or `timeoutMs` passes.
 * Every failure (connection refused, 404 while the server starts, wrong status)
 * is retried; returns undefined when healthy, else the last failure.
 */
export async function waitForHealthy(url: string, health: HealthCheck, timeoutMs: number, stopped: () => boolean = () => false): Promise<string | undefined> {
  const deadline = Date.now() + timeoutMs;
  let delay = 100;
  for (;;) {
    const failure = await probe(url, health);
    if (!failure || stopped() || Date.now() + delay > deadline) return failure;
    await sleep(delay);
    delay = Math.min(delay * 2, 1000);
  }
}
