/**
 * The container call of one request as the store's owner: fresh request
 * directories and the assets in place, the call with its progress mirrored to
 * the invocation item, and the outcome to record (job.ts records it; live.ts
 * shares the preparation and the outcome).
 */
import type { InvocationMessage } from '../../core/invocation-message';
import { recordProgress, type InvocationError, type Outcome } from '../../core/invocations';
import { callContainer, type ContainerResponse, type InferenceCall, type RequestBody } from './container';
import { containerHeaders } from './container-headers';
import { logger } from './config';
import { containerError, unretriableCallProblem, workerProblem } from './errors';
import type { JobRuntime } from './job';
import { ObjectMissing, downloadAssets, storeResult, storedRequestBody } from './objects';
import { mirrorProgress } from './progress';
import { freshDir, type RequestDirs } from './request-dirs';

/** What a run needs of its job. */
export interface RunContext {
  readonly runtime: JobRuntime;
  /** Token of the delivery's claim. */
  readonly owner: string;
  /** Aborted (with an Interrupted reason) when the job must stop. */
  readonly interrupt: AbortController;
  /** The claim was lost to another delivery. */
  readonly lost: boolean;
}

/** Throws why the job stops, once it was told to. */
export function throwIfInterrupted(job: RunContext): void {
  if (job.interrupt.signal.aborted) throw job.interrupt.signal.reason as Error;
}

/** Fresh request directories and the assets in place; the problem to end in when an asset is gone. */
export async function prepareRequest(job: RunContext, invocation: InvocationMessage, dirs: RequestDirs): Promise<InvocationError | undefined> {
  await Promise.all([freshDir(dirs.assets), freshDir(dirs.output)]);
  try {
    await downloadAssets(invocation, dirs.assets, job.interrupt.signal);
  } catch (error) {
    if (!(error instanceof ObjectMissing)) throw error;
    return workerProblem(`Internal error while downloading assets: ${error.message}`);
  }
  throwIfInterrupted(job);
  return undefined;
}

/** The container call for this request, but for its URL and method. */
export function containerCall(job: RunContext, invocation: InvocationMessage, dirs: RequestDirs, body: RequestBody): Omit<InferenceCall, 'url'> {
  return {
    headers: containerHeaders(invocation, dirs, job.runtime.config, job.runtime.version),
    body,
    timeoutMs: job.runtime.config.inferenceTimeoutSeconds * 1000,
    spillFile: dirs.spill,
    signal: job.interrupt.signal,
  };
}

/** Runs the request as the store's owner; its outcome, or throws when another delivery should try (or the job stops). */
export async function runDurable(job: RunContext, invocation: InvocationMessage, dirs: RequestDirs): Promise<Outcome> {
  const { requestId } = invocation;
  const missing = await prepareRequest(job, invocation, dirs);
  if (missing) return { error: missing };
  const mirror = mirrorProgress(requestId, dirs.output, job.runtime.config.progressIntervalMs, () => (percent, partial) => recordProgress(requestId, job.owner, percent, partial));
  let response: ContainerResponse;
  try {
    const body = storedRequestBody(invocation.body, requestId, job.interrupt.signal);
    response = await callContainer({ url: job.runtime.inferenceUrl, ...containerCall(job, invocation, dirs, body) });
  } catch (error) {
    const problem = unretriableCallProblem(error);
    if (!problem) throw error;
    return { error: problem };
  } finally {
    await mirror.stop();
  }
  // The container has answered: from here on nothing is retried, since a redelivery would run the job again.
  return durableOutcome(job, requestId, response, dirs);
}

/** The outcome to record for a container's answer: its error, or its result stored in the item or S3. */
export async function durableOutcome(job: RunContext, requestId: string, response: ContainerResponse, dirs: RequestDirs): Promise<Outcome> {
  if (response.status >= 400) return { error: containerError(response) };
  try {
    return { result: await storeResult(requestId, job.owner, response, dirs) };
  } catch (error) {
    if (job.lost) throw error;
    logger.error('the container answered but its result could not be stored', { requestId, error: error as Error });
    return { error: workerProblem(`Internal error while storing the result: ${(error as Error).message}`) };
  }
}
