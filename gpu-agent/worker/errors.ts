/**
 * The problems a job ends in when it has no container answer to give
 * (nvcf-api.md §3.2): the worker's own failures, and a container's ≥ 400;
 * and why a job stops early.
 */
import { containerProblem, type InvocationError } from '../../core/invocations';
import { reasonPhrase } from '../../core/problem';
import { ContainerUnreachable, ResponseNotStored, type ContainerResponse } from './container';
import { ObjectMissing } from './objects';

export const WORKER_ERROR_TYPE = 'urn:nvcf-worker-service:problem-details:internal-server-error';
export const CONNECTION_ERROR_TYPE = 'urn:inference-connection:problem-details:internal-server-error';

/** A failure of the worker itself (assets, storage), as NVCF's worker reports it. */
export function workerProblem(detail: string): InvocationError {
  return { status: 500, type: WORKER_ERROR_TYPE, title: reasonPhrase(500), detail };
}

/** The durable answer to a container's ≥ 400: the same problem the invocation service answers a live caller with. */
export function containerError(response: ContainerResponse): InvocationError {
  return containerProblem(response.status, response.body);
}

/** The failure recorded when the last allowed delivery of a job failed before the container answered. */
export function lastDeliveryProblem(error: unknown, attempt: number): InvocationError {
  const reason = (error as Error).message;
  if (error instanceof ContainerUnreachable) {
    return { status: 500, type: CONNECTION_ERROR_TYPE, title: reasonPhrase(500), detail: `Internal error while making inference request (${attempt} attempts): ${reason}` };
  }
  return workerProblem(`Internal error while processing the request (${attempt} attempts): ${reason}`);
}

/** Why a job stopped early: its claim was lost, the worker hands it back, or the caller cancelled. */
export class Interrupted extends Error {
  constructor(readonly reason: 'lost' | 'released' | 'canceled') {
    super(reason === 'lost' ? 'the claim on the invocation was lost' : reason === 'released' ? 'the worker hands the job back' : 'the caller cancelled the call');
  }
}

/** The problem a failed container call ends the job in when no retry can help (the request body is gone, the answer cannot be stored); undefined for a failure worth another delivery. */
export function unretriableCallProblem(error: unknown): InvocationError | undefined {
  if (error instanceof ObjectMissing) return workerProblem(`Internal error while reading the request: ${error.message}`);
  if (error instanceof ResponseNotStored) return workerProblem(`Internal error while storing the result: ${error.message}`);
  return undefined;
}
