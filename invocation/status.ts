/**
 * Durable calls, on any instance: I3 (the state of a call that was answered
 * 202, waiting up to the poll window for news) and I6 (cancel). They read the
 * Invocations item; a result is answered as the live path answers it.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import type { ServerResponse } from 'node:http';
import { GetObjectCommand } from '@aws-sdk/client-s3';
import { getSignedUrl } from '@aws-sdk/s3-request-presigner';
import { s3 } from '../core/aws';
import { bucketName } from '../core/config';
import { forwardableResponseHeaders, sendableHeaders } from '../core/invocation-message';
import { cancelInvocation, getInvocation, getOwnedInvocation, type InvocationRecord } from '../core/invocations';
import { PRESIGNED_URL_SECONDS } from '../core/limits';
import { WIRE_STATUS, isTerminal } from '../core/model';
import { Problem, conflict, notFound } from '../core/problem';
import type { CallRegistry } from './attach-server';
import { logger, sendProblem } from './http';

/** First and longest pause between two reads of the invocation while waiting. */
const WAIT_FIRST_DELAY_MS = 5;
const WAIT_MAX_DELAY_MS = 250;

/** Waits until the invocation is terminal, a new progress update arrives, or `until` (epoch ms). */
async function awaitOutcome(start: InvocationRecord, until: number, gone: AbortSignal): Promise<InvocationRecord> {
  const seenProgress = start.progressVersion ?? 0;
  let current = start;
  let delay = WAIT_FIRST_DELAY_MS;
  while (!isTerminal(current.status) && (current.progressVersion ?? 0) === seenProgress && !gone.aborted) {
    const left = until - Date.now();
    if (left <= 0) break;
    await sleep(Math.min(delay, left));
    delay = Math.min(delay * 2, WAIT_MAX_DELAY_MS);
    try {
      current = (await getInvocation(start.requestId)) ?? current;
    } catch (error) {
      logger.warn('could not read the invocation while waiting; answering with what is known', { requestId: start.requestId, error: error as Error });
      break;
    }
  }
  return current;
}

async function readObject(key: string): Promise<Buffer> {
  const { Body } = await s3().send(new GetObjectCommand({ Bucket: bucketName(), Key: key }));
  if (!Body) throw new Error(`object ${key} has no body`);
  return Buffer.from(await Body.transformToByteArray());
}

/** The HTTP answer for a stored invocation in whatever state it is (§3.2, §7). */
async function answer(res: ServerResponse, record: InvocationRecord, instance: string): Promise<void> {
  const base = { 'NVCF-REQID': record.requestId, 'NVCF-STATUS': WIRE_STATUS[record.status] };
  if (record.status === 'FULFILLED' && record.result) {
    const { result } = record;
    if (result.zipKey) {
      const location = await getSignedUrl(s3(), new GetObjectCommand({ Bucket: bucketName(), Key: result.zipKey }), { expiresIn: PRESIGNED_URL_SECONDS });
      res.writeHead(302, { ...base, Location: location, 'content-length': '0' });
      res.end();
      return;
    }
    let body: Buffer;
    try {
      body = result.bodyKey ? await readObject(result.bodyKey) : Buffer.from(result.body ?? new Uint8Array());
    } catch (error) {
      logger.error('could not read a stored result', { requestId: record.requestId, error: error as Error });
      return sendProblem(res, new Problem(503, `the result could not be read just now; poll GET /v2/nvcf/pexec/status/${record.requestId} to fetch it`), instance, record.requestId, base);
    }
    res.writeHead(result.status, { ...sendableHeaders(forwardableResponseHeaders(result.headers)), ...base, 'content-length': String(body.length) });
    res.end(body);
    return;
  }
  if (record.status === 'CANCELED') {
    return sendProblem(res, new Problem(410, `request ${record.requestId} was canceled`), instance, record.requestId, base);
  }
  if (record.status === 'ERRORED' || record.status === 'FULFILLED') {
    const error = record.error ?? { status: 500, detail: 'the invocation ended without a result' };
    const problem = new Problem(error.status, error.detail, { type: error.type, title: error.title });
    return sendProblem(res, problem, instance, record.requestId, { ...base, 'NVCF-STATUS': WIRE_STATUS.ERRORED });
  }
  const headers: Record<string, string> = { ...base };
  if (record.percentComplete !== undefined) headers['NVCF-PERCENT-COMPLETE'] = String(record.percentComplete);
  const body = record.percentComplete !== undefined ? (record.partialResponse ?? '') : '';
  if (body) headers['content-type'] = 'application/json';
  res.writeHead(202, { ...headers, 'content-length': String(Buffer.byteLength(body)) });
  res.end(body);
}

/** I3: a stored call's state, waiting up to `waitSeconds` for news. */
export async function serveStatus(res: ServerResponse, accountId: string, requestId: string, waitSeconds: number, instance: string): Promise<void> {
  const startedAt = Date.now();
  const record = await getOwnedInvocation(accountId, requestId);
  if (!record) throw notFound(`request id '${requestId}' not found (unknown, expired or another account's)`);
  const gone = new AbortController();
  res.on('close', () => gone.abort());
  await answer(res, isTerminal(record.status) ? record : await awaitOutcome(record, startedAt + waitSeconds * 1000, gone.signal), instance);
}

/**
 * I6: cancels a call of the caller's: one held here (live) at once, a stored
 * one in the store (its worker stops when it next renews its lease). Cancelling
 * a cancelled call again succeeds; one that is over otherwise is a 409.
 */
export async function serveCancel(res: ServerResponse, registry: CallRegistry, accountId: string, requestId: string): Promise<void> {
  const live = registry.get(requestId);
  const ours = live?.options.accountId === accountId;
  // Being stored right now: once stored it is cancelled in the store like any durable call.
  if (ours && live!.phase === 'persisting') await live!.first;
  if (ours && live!.phase !== 'durable' && live!.phase !== 'persisting') {
    live!.cancel();
  } else {
    const outcome = await cancelInvocation(accountId, requestId);
    if (outcome.kind === 'missing') throw notFound(`request id '${requestId}' not found (unknown, expired or another account's)`);
    if (outcome.kind === 'terminal' && outcome.status !== 'CANCELED') {
      throw conflict(`request ${requestId} is ${WIRE_STATUS[outcome.status]} already; only pending or running calls can be canceled`);
    }
  }
  res.writeHead(204, { 'NVCF-REQID': requestId, 'NVCF-STATUS': WIRE_STATUS.CANCELED });
  res.end();
}
