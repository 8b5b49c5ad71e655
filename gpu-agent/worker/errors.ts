/**
 * The problems a job ends in when it has no container answer to give
 * (nvcf-api.md §3.2): the worker's own failures, and a container's ≥ 400.
 */
import { containerProblem, type InvocationError } from '../../core/invocations';
import { reasonPhrase } from '../../core/problem';
import type { ContainerResponse } from './container';

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
