/**
 * The invocations Lambda (nvcf-api.md §3, §7): I1/I2 accept a request, store
 * it QUEUED, queue it for the version's workers and wait for its outcome up to
 * the poll window; I3 polls a request later.
 *
 * Order of writes on accept: the spilled body (S3), then the Invocations item,
 * then the message. A worker therefore always finds the item; a failed send
 * marks the item ERRORED, so nothing stays QUEUED without a message.
 *
 * Answers: 200 (or the container's own 2xx/3xx) with its headers and body,
 * 302 to a presigned zip for large results, the container's ≥ 400 status as
 * problem+json, 202 while pending or running (with the latest progress).
 * A function with no ACTIVE version, or a pinned version that is not ACTIVE,
 * is refused with 400 naming the status: the request is well-formed but the
 * function cannot take it now (NVCF answers such requests with 4xx).
 *
 * Time: the wait ends at the poll window (capped at POLL_WAIT_CAP_SECONDS) or
 * LAMBDA_ANSWER_MARGIN_MS before Lambda would end the function, whichever
 * comes first, and every AWS call made once the request has an id is bounded
 * by that, so a slow call ends in an answer carrying NVCF-REQID, never in a
 * Lambda timeout.
 */
import { AsyncLocalStorage } from 'node:async_hooks';
import { randomUUID } from 'node:crypto';
import { isUtf8 } from 'node:buffer';
import { setTimeout as sleep } from 'node:timers/promises';
import { GetObjectCommand, HeadObjectCommand, PutObjectCommand } from '@aws-sdk/client-s3';
import { SendMessageCommand } from '@aws-sdk/client-sqs';
import { getSignedUrl } from '@aws-sdk/s3-request-presigner';
import type { Context } from 'aws-lambda';
import * as z from 'zod';
import { getOwnedAsset } from '../core/assets';
import { s3, sqs } from '../core/aws';
import { bucketName } from '../core/config';
import { getOwnedVersion, listOwnedVersions } from '../core/functions';
import {
  forwardableRequestHeaders,
  forwardableResponseHeaders,
  lambdaBodyBytes,
  type InvocationMessage,
  type MessageBody,
} from '../core/invocation-message';
import {
  createQueuedInvocation,
  finishInvocation,
  getInvocation,
  getOwnedInvocation,
  isMissingObjectError,
  type InvocationRecord,
} from '../core/invocations';
import {
  INVOCATION_TTL_SECONDS,
  LAMBDA_ANSWER_MARGIN_MS,
  MAX_BINARY_REQUEST_BYTES,
  MAX_DIRECT_RESPONSE_PAYLOAD_BYTES,
  MAX_INLINE_REQUEST_BYTES,
  MAX_REQUEST_BYTES,
  MAX_REQUEST_PAYLOAD_BODY_BYTES,
  POLL_SECONDS_DEFAULT,
  POLL_SECONDS_MAX,
  POLL_WAIT_CAP_SECONDS,
  PRESIGNED_URL_SECONDS,
} from '../core/limits';
import { WIRE_STATUS, isTerminal, type FunctionVersionRecord } from '../core/model';
import { inputObjectKey } from '../core/names';
import { Problem, badRequest, notFound, payloadTooLarge } from '../core/problem';
import { createApiHandler } from './http/handler';
import { logger } from './http/logger';
import { uuidParam, versionIds, type ApiEvent, type ApiRequest } from './http/request';
import { problemResponse, type ApiResponse } from './http/responses';

/** First and longest pause between two reads of the invocation while waiting. */
const WAIT_FIRST_DELAY_MS = 5;
const WAIT_MAX_DELAY_MS = 250;
/** Time for the one write after a failed send (ERRORED) and for building the answer, within the margin. */
const CLEANUP_WRITE_MS = 1500;

/** Epoch ms by which this Lambda invocation must answer: Lambda's remaining time less LAMBDA_ANSWER_MARGIN_MS. */
const answerBy = new AsyncLocalStorage<number>();

function answerDeadline(): number {
  // Outside Lambda (no context): the wait cap plus the margin, as the stack configures the function.
  return answerBy.getStore() ?? Date.now() + POLL_WAIT_CAP_SECONDS * 1000 + LAMBDA_ANSWER_MARGIN_MS;
}

/** An abort signal for one AWS call: it must be done by the answer deadline (plus `extraMs` of the margin). */
function inTime(extraMs = 0): AbortSignal {
  return AbortSignal.timeout(Math.max(1, answerDeadline() - Date.now() + extraMs));
}

const uuid = z.uuid();

/** NVCF-POLL-SECONDS: integer 0–300, default 5. */
function pollSeconds(req: ApiRequest): number {
  const raw = req.headers['nvcf-poll-seconds'];
  if (raw === undefined) return POLL_SECONDS_DEFAULT;
  const value = raw.trim();
  if (!/^\d{1,3}$/.test(value) || Number(value) > POLL_SECONDS_MAX) {
    throw badRequest(`header NVCF-POLL-SECONDS must be an integer from 0 to ${POLL_SECONDS_MAX}, got "${raw}"`);
  }
  return Number(value);
}

/** NVCF-INPUT-ASSET-REFERENCES: comma list of the caller's live asset ids. */
async function assetReferences(req: ApiRequest): Promise<string[]> {
  const raw = req.headers['nvcf-input-asset-references'];
  if (raw === undefined) return [];
  const ids = [...new Set(raw.split(',').map((id) => id.trim()).filter(Boolean))];
  for (const id of ids) {
    if (!uuid.safeParse(id).success) throw badRequest(`header NVCF-INPUT-ASSET-REFERENCES must be a comma-separated list of asset ids (UUIDs), got "${id}"`);
  }
  const assets = await Promise.all(ids.map((id) => getOwnedAsset(req.caller.accountId, id.toLowerCase())));
  const missing = ids.filter((_, i) => !assets[i]);
  if (missing.length > 0) throw notFound(`asset '${missing[0]}' not found (unknown, expired or not yours); upload it with POST /v2/nvcf/assets`);
  // An asset created but never uploaded would fail the job on the worker: refuse it before queueing.
  const uploaded = await Promise.all(assets.map((asset) => hasContent(asset!.s3Key)));
  const empty = ids.find((_, i) => !uploaded[i]);
  if (empty) throw notFound(`asset ${empty.toLowerCase()} has no content: upload it first (PUT to its uploadUrl, or POST its uploadForm)`);
  return ids.map((id) => id.toLowerCase());
}

/** Whether an object exists. Without s3:ListBucket S3 answers 403 for a missing key, which means the same here. */
async function hasContent(key: string): Promise<boolean> {
  try {
    await s3().send(new HeadObjectCommand({ Bucket: bucketName(), Key: key }), { abortSignal: inTime() });
    return true;
  } catch (error) {
    if (isMissingObjectError(error)) return false;
    throw error;
  }
}

const ASSETS_HINT = 'upload larger inputs as assets (POST /v2/nvcf/assets) and pass their ids in the NVCF-INPUT-ASSET-REFERENCES header';

/**
 * Bodies up to MAX_REQUEST_BYTES whose form in the event (base64, or a JSON
 * string) stays within MAX_REQUEST_PAYLOAD_BODY_BYTES: the same limit for
 * every request, whatever its headers, below the point where API Gateway
 * would refuse it without a problem body.
 */
function requireBodySize(req: ApiRequest): void {
  const { length } = req.body;
  if (length > MAX_REQUEST_BYTES) {
    throw payloadTooLarge(`request body is ${length} bytes; at most ${MAX_REQUEST_BYTES} bytes are accepted in a request: ${ASSETS_HINT}`);
  }
  const carried = Buffer.byteLength(JSON.stringify(req.event.body ?? '')) - 2;
  if (carried <= MAX_REQUEST_PAYLOAD_BODY_BYTES) return;
  if (req.event.isBase64Encoded) {
    const type = req.headers['content-type'] ? `Content-Type "${req.headers['content-type']}"` : 'no Content-Type';
    throw payloadTooLarge(
      `request body is ${length} bytes with ${type}; API Gateway passes bodies that are not text base64-encoded, so at most ${MAX_BINARY_REQUEST_BYTES} bytes of them are accepted (${MAX_REQUEST_BYTES} with a text Content-Type such as application/json): ${ASSETS_HINT}`,
    );
  }
  throw payloadTooLarge(
    `request body is ${length} bytes, ${carried} once JSON-escaped as API Gateway passes it on (quotes, backslashes and control characters grow); at most ${MAX_REQUEST_PAYLOAD_BODY_BYTES} escaped bytes are accepted: ${ASSETS_HINT}`,
  );
}

function notActive(record: FunctionVersionRecord): Problem {
  return badRequest(
    `Function id '${record.functionId}', version '${record.versionId}': Status ${record.status}, only ACTIVE versions can be invoked${record.status === 'DEPLOYING' ? '; wait until the deployment is ACTIVE' : '; deploy it first'}`,
  );
}

/** I1: a random ACTIVE version of the caller's function. */
async function activeVersionOf(req: ApiRequest, functionId: string): Promise<FunctionVersionRecord> {
  const versions = await listOwnedVersions(req.caller.accountId, functionId);
  if (versions.length === 0) throw notFound(`Function id '${functionId}' not found`);
  const active = versions.filter((version) => version.status === 'ACTIVE');
  if (active.length === 0) {
    const statuses = [...new Set(versions.map((version) => version.status))].join(', ');
    throw badRequest(`Function id '${functionId}' has no ACTIVE version (versions are ${statuses}); deploy a version and wait until it is ACTIVE`);
  }
  return active[Math.floor(Math.random() * active.length)]!;
}

/** I2: the pinned version, which must be ACTIVE. */
async function pinnedVersion(req: ApiRequest, functionId: string, versionId: string): Promise<FunctionVersionRecord> {
  const record = await getOwnedVersion(req.caller.accountId, functionId, versionId);
  if (!record) throw notFound(`Function id '${functionId}': Version '${versionId}' not found`);
  if (record.status !== 'ACTIVE') throw notActive(record);
  return record;
}

/** The body as the message carries it: inline (text, or base64 when not UTF-8) or spilled to S3. */
async function messageBody(requestId: string, body: Buffer): Promise<MessageBody> {
  const encoding = isUtf8(body) ? 'utf8' : 'base64';
  const data = body.toString(encoding);
  // Measured as JSON text: escapes count against the SQS message size too.
  if (Buffer.byteLength(JSON.stringify(data)) <= MAX_INLINE_REQUEST_BYTES) return { kind: 'inline', encoding, data };
  const key = inputObjectKey(requestId);
  await s3().send(new PutObjectCommand({ Bucket: bucketName(), Key: key, Body: body, ContentLength: body.length }), { abortSignal: inTime() });
  return { kind: 's3', key, bytes: body.length };
}

async function invoke(req: ApiRequest, version: FunctionVersionRecord): Promise<ApiResponse> {
  const poll = pollSeconds(req);
  requireBodySize(req);
  const assetIds = await assetReferences(req);
  const queueUrl = version.deployment?.queueUrl;
  if (!queueUrl) throw notActive(version);

  const requestId = randomUUID();
  const now = new Date();
  // The client's real wait: what it asked for, cut to what API Gateway and this Lambda allow.
  const waitUntil = Math.min(now.getTime() + Math.min(poll, POLL_WAIT_CAP_SECONDS) * 1000, answerDeadline());
  const body = await messageBody(requestId, req.body);
  const record: InvocationRecord = {
    requestId,
    accountId: req.caller.accountId,
    functionId: version.functionId,
    versionId: version.versionId,
    status: 'QUEUED',
    createdAt: now.toISOString(),
    updatedAt: now.toISOString(),
    expiresAt: Math.floor(now.getTime() / 1000) + INVOCATION_TTL_SECONDS,
  };
  const message: InvocationMessage = {
    requestId,
    accountId: req.caller.accountId,
    functionId: version.functionId,
    versionId: version.versionId,
    headers: forwardableRequestHeaders(req.headers),
    body,
    assetIds,
    pollSeconds: Math.max(0, Math.floor((waitUntil - now.getTime()) / 1000)),
    acceptedAt: now.toISOString(),
  };
  try {
    await createQueuedInvocation(record, { abortSignal: inTime() });
    await sqs().send(new SendMessageCommand({ QueueUrl: queueUrl, MessageBody: JSON.stringify(message) }), { abortSignal: inTime() });
  } catch (error) {
    logger.error('could not queue invocation', { requestId, error: error as Error });
    const detail = 'the request could not be queued for the function; retry';
    // A message that did get through finds the invocation terminal and is dropped by the worker.
    await finishInvocation(requestId, { error: { status: 503, detail } }, undefined, { abortSignal: AbortSignal.timeout(CLEANUP_WRITE_MS) }).catch((failure: Error) =>
      logger.error('could not mark the unqueued invocation errored', { requestId, error: failure }),
    );
    throw new Problem(503, detail, { headers: { 'NVCF-REQID': requestId, 'NVCF-STATUS': WIRE_STATUS.ERRORED } });
  }
  return answer(req, await awaitOutcome(record, waitUntil));
}

/**
 * Waits until the invocation is terminal, a new progress update arrives, or
 * `until` (epoch ms). Reads start 5 ms apart, so a quick result is seen within
 * ~10 ms, and back off to 250 ms. A read that fails or hangs ends the wait
 * with what is known, so the caller still answers with the request id.
 */
async function awaitOutcome(start: InvocationRecord, until: number): Promise<InvocationRecord> {
  const deadline = Math.min(until, answerDeadline());
  const seenProgress = start.progressVersion ?? 0;
  let current = start;
  let delay = WAIT_FIRST_DELAY_MS;
  while (!isTerminal(current.status) && (current.progressVersion ?? 0) === seenProgress) {
    const left = deadline - Date.now();
    if (left <= 0) break;
    await sleep(Math.min(delay, left));
    delay = Math.min(delay * 2, WAIT_MAX_DELAY_MS);
    try {
      current = (await getInvocation(start.requestId, { abortSignal: inTime(CLEANUP_WRITE_MS) })) ?? current;
    } catch (error) {
      logger.warn('could not read the invocation while waiting; answering with what is known', { requestId: start.requestId, error: error as Error });
      break;
    }
  }
  return current;
}

function bodyResponse(statusCode: number, headers: Record<string, string>, body: Buffer): ApiResponse {
  return isUtf8(body)
    ? { statusCode, headers, body: body.toString('utf8') }
    : { statusCode, headers, body: body.toString('base64'), isBase64Encoded: true };
}

async function readObject(key: string): Promise<Buffer> {
  const { Body } = await s3().send(new GetObjectCommand({ Bucket: bucketName(), Key: key }), { abortSignal: inTime(CLEANUP_WRITE_MS) });
  if (!Body) throw new Error(`object ${key} has no body`);
  return Buffer.from(await Body.transformToByteArray());
}

/** The HTTP answer for an invocation in whatever state it is (§3.2, §7). */
async function answer(req: ApiRequest, record: InvocationRecord): Promise<ApiResponse> {
  const base = { 'NVCF-REQID': record.requestId, 'NVCF-STATUS': WIRE_STATUS[record.status] };
  if (record.status === 'FULFILLED' && record.result) {
    const { result } = record;
    if (result.zipKey) {
      const location = await getSignedUrl(s3(), new GetObjectCommand({ Bucket: bucketName(), Key: result.zipKey }), { expiresIn: PRESIGNED_URL_SECONDS });
      return { statusCode: 302, headers: { ...base, Location: location }, body: '' };
    }
    let body: Buffer;
    try {
      body = result.bodyKey ? await readObject(result.bodyKey) : Buffer.from(result.body ?? new Uint8Array());
    } catch (error) {
      logger.error('could not read a stored result', { requestId: record.requestId, error: error as Error });
      const problem = new Problem(503, `the result could not be read just now; poll GET /v2/nvcf/pexec/status/${record.requestId} to fetch it`);
      return problemResponse(problem.toBody(req.path, record.requestId), base);
    }
    // Results are stored so that they fit; one that would not (an older worker's) must not fail the Lambda.
    if (lambdaBodyBytes(body) > MAX_DIRECT_RESPONSE_PAYLOAD_BYTES) {
      logger.error('stored result too large to answer directly', { requestId: record.requestId, bytes: body.length });
      const problem = new Problem(500, 'the result is too large to be answered directly');
      return problemResponse(problem.toBody(req.path, record.requestId), { ...base, 'NVCF-STATUS': WIRE_STATUS.ERRORED });
    }
    // Container headers merge case-insensitively under the platform's: no nvcf-* of theirs survives.
    return bodyResponse(result.status, { ...forwardableResponseHeaders(result.headers), ...base }, body);
  }
  if (record.status === 'ERRORED' || record.status === 'FULFILLED') {
    const error = record.error ?? { status: 500, detail: 'the invocation ended without a result' };
    const problem = new Problem(error.status, error.detail, { type: error.type, title: error.title });
    return problemResponse(problem.toBody(req.path, record.requestId), { ...base, 'NVCF-STATUS': WIRE_STATUS.ERRORED });
  }
  if (record.percentComplete === undefined) return { statusCode: 202, headers: base, body: '' };
  const progress = { ...base, 'NVCF-PERCENT-COMPLETE': String(record.percentComplete) };
  if (record.partialResponse === undefined) return { statusCode: 202, headers: progress, body: '' };
  return { statusCode: 202, headers: { ...progress, 'content-type': 'application/json' }, body: record.partialResponse };
}

/** I3: the state of an earlier request, waiting up to the poll window for news. */
async function status(req: ApiRequest): Promise<ApiResponse> {
  const requestId = uuidParam(req, 'requestId');
  const poll = pollSeconds(req);
  const startedAt = Date.now();
  const record = await getOwnedInvocation(req.caller.accountId, requestId);
  if (!record) throw notFound(`request id '${requestId}' not found (unknown, expired or another account's)`);
  return answer(req, isTerminal(record.status) ? record : await awaitOutcome(record, startedAt + Math.min(poll, POLL_WAIT_CAP_SECONDS) * 1000));
}

const api = createApiHandler('invocations', {
  I1: async (req) => invoke(req, await activeVersionOf(req, uuidParam(req, 'functionId'))),
  I2: async (req) => invoke(req, await pinnedVersion(req, ...versionIds(req))),
  I3: status,
});

/** Serves the invocations routes of core/routes.ts, knowing from the Lambda context by when it must answer. */
export const handler = (event: ApiEvent, context: Context): Promise<ApiResponse> =>
  answerBy.run(Date.now() + context.getRemainingTimeInMillis() - LAMBDA_ANSWER_MARGIN_MS, () => api(event, context));
