/**
 * The headers between the worker and the container: the NVCF-* headers a
 * request carries (nvcf-api.md §4.2), and what the worker reads of an answer.
 */
import type { InvocationMessage } from '../../core/invocation-message';
import { MAX_RESPONSE_BYTES } from '../../core/limits';
import type { FunctionVersionRecord } from '../../core/model';
import type { WorkerConfig } from './config';
import type { RequestDirs } from './request-dirs';

/** Every NVCF-* header of nvcf-api.md §4.2 we can fill, over the client's forwarded headers. */
export function containerHeaders(
  invocation: InvocationMessage,
  dirs: Pick<RequestDirs, 'assets' | 'output'>,
  config: Pick<WorkerConfig, 'backend' | 'instanceType' | 'region' | 'environment'>,
  version: Pick<FunctionVersionRecord, 'name' | 'functionId' | 'versionId'>,
  now = Date.now(),
): Record<string, string> {
  const elapsed = Math.floor((now - Date.parse(invocation.acceptedAt)) / 1000);
  const platform: [string, string | undefined][] = [
    ['NVCF-BACKEND', config.backend],
    ['NVCF-INSTANCETYPE', config.instanceType],
    ['NVCF-REGION', config.region],
    ['NVCF-ENV', config.environment],
    // The API and its queues live in the worker's region. NVCF-NSPECTID (NVIDIA's scan id) has no counterpart here.
    ['NVCF-INVOCATION-REGION', config.region],
    ['NVCF-FUNCTION-ASSET-IDS', invocation.assetIds.length > 0 ? invocation.assetIds.join(',') : undefined],
  ];
  return {
    ...invocation.headers,
    'content-type': invocation.headers['content-type'] ?? 'application/json',
    'NVCF-REQID': invocation.requestId,
    'NVCF-NCAID': invocation.accountId,
    // API keys name an account, not a user: the account is the caller's subject.
    'NVCF-SUB': invocation.accountId,
    'NVCF-FUNCTION-NAME': version.name,
    'NVCF-FUNCTION-ID': version.functionId,
    'NVCF-FUNCTION-VERSION-ID': version.versionId,
    'NVCF-ASSET-DIR': dirs.assets,
    'NVCF-LARGE-OUTPUT-DIR': dirs.output,
    'NVCF-MAX-RESPONSE-SIZE-BYTES': String(MAX_RESPONSE_BYTES),
    // What is left of the client's wait; pollSeconds is already cut to what the API really waits.
    'NVCF-POLL-SECONDS': String(Math.max(0, invocation.pollSeconds - elapsed)),
    ...Object.fromEntries(platform.filter((entry): entry is [string, string] => entry[1] !== undefined)),
  };
}

/** Whether an answer is a server-sent event stream (relayed live as it comes). */
export function isEventStream(headers: Record<string, string>): boolean {
  return /^text\/event-stream\b/i.test(headers['content-type'] ?? '');
}
