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
 */
import { randomUUID } from 'node:crypto';
import { isUtf8 } from 'node:buffer';
import { setTimeout as sleep } from 'node:timers/promises';
import { GetObjectCommand, PutObjectCommand } from '@aws-sdk/client-s3';
import { SendMessageCommand } from '@aws-sdk/client-sqs';
import { getSignedUrl } from '@aws-sdk/s3-request-presigner';
import * as z from 'zod';
import { getOwnedAsset } from '../core/assets';
import { s3, sqs } from '../core/aws';
import { bucketName } from '../core/config';
import { getOwnedVersion, listOwnedVersions } from '../core/functions';
import { forwardableRequestHeaders, type InvocationMessage, type MessageBody } from '../core/invocation-message';
import { createQueuedInvocation, finishInvocation, getInvocation, getOwnedInvocation, type InvocationRecord } from '../core/invocations';
import {
  INVOCATION_TTL_SECONDS,
  MAX_INLINE_REQUEST_BYTES,
  MAX_REQUEST_BYTES,
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
import { uuidParam, versionIds, type ApiRequest } from './http/request';
import { problemResponse, type ApiResponse } from './http/responses';

/** First and longest pause between two reads of the invocation while waiting. */
const WAIT_FIRST_DELAY_MS = 5;
const WAIT_MAX_DELAY_MS = 250;

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
  return ids.map((id) => id.toLowerCase());
}

function requireBodySize(req: ApiRequest): void {
  if (req.body.length > MAX_REQUEST_BYTES) {
    throw payloadTooLarge(
      `request body is ${req.body.length} bytes; at most ${MAX_REQUEST_BYTES} bytes are accepted in a request: upload larger inputs as assets (POST /v2/nvcf/assets) and pass their ids in the NVCF-INPUT-ASSET-REFERENCES header`,
    );
  }
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
  await s3().send(new PutObjectCommand({ Bucket: bucketName(), Key: key, Body: body, ContentLength: body.length }));
  return { kind: 's3', key, bytes: body.length };
}

async function invoke(req: ApiRequest, version: FunctionVersionRecord): Promise<ApiResponse> {
  const poll = pollSeconds(req);
  requireBodySize(req);
  const assetIds = await assetReferences(req);
  const queueUrl = version.deployment?.queueUrl;
  if (!queueUrl) throw notActive(version);

  const requestId = randomUUID();
  const body = await messageBody(requestId, req.body);
  const now = new Date();
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
  await createQueuedInvocation(record);
  const message: InvocationMessage = {
    requestId,
    accountId: req.caller.accountId,
    functionId: version.functionId,
    versionId: version.versionId,
    headers: forwardableRequestHeaders(req.headers),
    body,
    assetIds,
    pollSeconds: poll,
    acceptedAt: now.toISOString(),
  };
  try {
    await sqs().send(new SendMessageCommand({ QueueUrl: queueUrl, MessageBody: JSON.stringify(message) }));
  } catch (error) {
    logger.error('could not queue invocation', { requestId, error: error as Error });
    const detail = 'the request could not be queued for the function; retry';
    await finishInvocation(requestId, { error: { status: 503, detail } });
    throw new Problem(503, detail, { headers: { 'NVCF-REQID': requestId, 'NVCF-STATUS': WIRE_STATUS.ERRORED } });
  }
  return answer(req, await awaitOutcome(record, poll));
}

/**
 * Waits until the invocation is terminal, a new progress update arrives, or
 * the poll window (capped at POLL_WAIT_CAP_SECONDS) ends. Reads start 5 ms
 * apart, so a quick result is seen within ~10 ms, and back off to 250 ms.
 */
async function awaitOutcome(start: InvocationRecord, poll: number): Promise<InvocationRecord> {
  const deadline = Date.now() + Math.min(poll, POLL_WAIT_CAP_SECONDS) * 1000;
  const seenProgress = start.progressVersion ?? 0;
  let current = start;
  let delay = WAIT_FIRST_DELAY_MS;
  while (!isTerminal(current.status) && (current.progressVersion ?? 0) === seenProgress) {
    const left = deadline - Date.now();
    if (left <= 0) break;
    await sleep(Math.min(delay, left));
    delay = Math.min(delay * 2, WAIT_MAX_DELAY_MS);
    current = (await getInvocation(start.requestId)) ?? current;
  }
  return current;
}

function bodyResponse(statusCode: number, headers: Record<string, string>, body: Buffer): ApiResponse {
  return isUtf8(body)
    ? { statusCode, headers, body: body.toString('utf8') }
    : { statusCode, headers, body: body.toString('base64'), isBase64Encoded: true };
}

async function readObject(key: string): Promise<Buffer> {
  const { Body } = await s3().send(new GetObjectCommand({ Bucket: bucketName(), Key: key }));
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
    const body = result.bodyKey ? await readObject(result.bodyKey) : Buffer.from(result.body ?? new Uint8Array());
    return bodyResponse(result.status, { ...result.headers, ...base }, body);
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
  const record = await getOwnedInvocation(req.caller.accountId, requestId);
  if (!record) throw notFound(`request id '${requestId}' not found (unknown, expired or another account's)`);
  return answer(req, isTerminal(record.status) ? record : await awaitOutcome(record, poll));
}

/** Serves the invocations routes of core/routes.ts. */
export const handler = createApiHandler('invocations', {
  I1: async (req) => invoke(req, await activeVersionOf(req, uuidParam(req, 'functionId'))),
  I2: async (req) => invoke(req, await pinnedVersion(req, ...versionIds(req))),
  I3: status,
});
