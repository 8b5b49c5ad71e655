/**
 * Accepting one call (pexec I1/I2, or direct invocation I5) and answering it
 * (DESIGN.md "Invocation path"; nvcf-api.md §3, §7).
 *
 * A call that is answered inside its poll window writes nothing but its one
 * queue message: the worker attaches back to this instance and streams the
 * answer through it. A call asked for async (poll 0) is durable from the
 * start: body (when large) to S3, then the Invocations item, then the message,
 * as before. A live call whose window ends first becomes durable then (see
 * live-call.ts) and is answered 202; I3 finds its outcome on any instance.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { isUtf8 } from 'node:buffer';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { Writable } from 'node:stream';
import { GetObjectCommand, HeadObjectCommand, PutObjectCommand } from '@aws-sdk/client-s3';
import { SendMessageCommand } from '@aws-sdk/client-sqs';
import { getSignedUrl } from '@aws-sdk/s3-request-presigner';
import * as z from 'zod';
import type { ApiKeyRecord } from '../core/api-keys';
import { getOwnedAsset } from '../core/assets';
import type { ProgressUpdate, ResponseHead } from '../core/attach';
import { conditionalWrite, s3, sqs } from '../core/aws';
import { bucketName } from '../core/config';
import { forwardableRequestHeaders, forwardableResponseHeaders, sendableHeaders, type InvocationMessage, type MessageBody } from '../core/invocation-message';
import {
  MAX_CONTAINER_ERROR_BODY_BYTES,
  containerProblem,
  createQueuedInvocation,
  finishInvocation,
  isMissingObjectError,
  type InvocationError,
  type InvocationRecord,
} from '../core/invocations';
import { INVOCATION_TTL_SECONDS, MAX_INLINE_REQUEST_BYTES, PRESIGNED_URL_SECONDS } from '../core/limits';
import { WIRE_STATUS, type FunctionVersionRecord } from '../core/model';
import { inputObjectKey } from '../core/names';
import { Problem, badRequest, notFound } from '../core/problem';
import type { CallRegistry } from './attach-server';
import { header, logger, readBody, requestHeaders, sendProblem, type BodyBudget } from './http';
import { LiveCall, type FirstAnswer } from './live-call';

const uuid = z.uuid();

export interface InvocationTarget {
  version: FunctionVersionRecord;
  /** Direct invocation: the caller's method and path with query, verbatim; the answer is passed through as it comes. */
  route?: { method: string; path: string };
  /** Seconds the caller waits for the answer before it becomes durable (202); 0: durable at once. */
  waitSeconds: number;
  /** The caller accepts text/event-stream. */
  stream: boolean;
}

export interface InvokerDeps {
  registry: CallRegistry;
  /** Address and port workers attach to. */
  attachHost: string;
  attachPort: () => number;
  maxRequestBytes: number;
  /** Request bodies this instance holds at once. */
  bodies: BodyBudget;
}

/** A call whose request was checked and read, ready to queue. */
interface AcceptedCall {
  caller: ApiKeyRecord;
  target: InvocationTarget;
  /** The request path, for problem bodies. */
  instance: string;
  assetIds: string[];
  body: Buffer;
  queueUrl: string;
}

/** Headers of the caller's request the API consumes: never forwarded to the container. */
const DIRECT_ADDRESSING_HEADERS = ['function-id', 'function-version-id'];

/** NVCF-INPUT-ASSET-REFERENCES: the caller's live, uploaded asset ids (§2.4). */
async function assetReferences(req: IncomingMessage, accountId: string): Promise<string[]> {
  const raw = header(req, 'nvcf-input-asset-references');
  if (raw === undefined) return [];
  const ids = [...new Set(raw.split(',').map((id) => id.trim()).filter(Boolean))];
  for (const id of ids) {
    if (!uuid.safeParse(id).success) throw badRequest(`header NVCF-INPUT-ASSET-REFERENCES must be a comma-separated list of asset ids (UUIDs), got "${id}"`);
  }
  const assets = await Promise.all(ids.map((id) => getOwnedAsset(accountId, id.toLowerCase())));
  const missing = ids.find((_, i) => !assets[i]);
  if (missing) throw notFound(`asset '${missing}' not found (unknown, expired or not yours); upload it with POST /v2/nvcf/assets`);
  const uploaded = await Promise.all(assets.map((asset) => hasContent(asset!.s3Key)));
  const empty = ids.find((_, i) => !uploaded[i]);
  if (empty) throw notFound(`asset ${empty.toLowerCase()} has no content: upload it first (PUT to its uploadUrl, or POST its uploadForm)`);
  return ids.map((id) => id.toLowerCase());
}

async function hasContent(key: string): Promise<boolean> {
  try {
    await s3().send(new HeadObjectCommand({ Bucket: bucketName(), Key: key }));
    return true;
  } catch (error) {
    if (isMissingObjectError(error)) return false;
    throw error;
  }
}

async function putInput(requestId: string, body: Buffer): Promise<void> {
  await s3().send(new PutObjectCommand({ Bucket: bucketName(), Key: inputObjectKey(requestId), Body: body, ContentLength: body.length }));
}

/** Inline when it fits the message (measured as JSON text: escapes count against the SQS limit too). */
function inlineBody(body: Buffer): MessageBody | undefined {
  const encoding = isUtf8(body) ? 'utf8' : 'base64';
  const data = body.toString(encoding);
  return Buffer.byteLength(JSON.stringify(data)) <= MAX_INLINE_REQUEST_BYTES ? { kind: 'inline', encoding, data } : undefined;
}

function isEventStream(headers: Record<string, string>): boolean {
  return /^text\/event-stream\b/i.test(headers['content-type'] ?? '');
}

/** A writable that keeps the first `limit` bytes and swallows the rest. */
function collector(limit: number): { sink: Writable; bytes: () => Buffer } {
  const chunks: Buffer[] = [];
  let kept = 0;
  const sink = new Writable({
    write(chunk: Buffer, _encoding, done) {
      if (kept < limit) {
        chunks.push(chunk.subarray(0, limit - kept));
        kept += Math.min(chunk.length, limit - kept);
      }
      done();
    },
  });
  return { sink, bytes: () => Buffer.concat(chunks) };
}

export class Invoker {
  constructor(private readonly deps: InvokerDeps) {}

  /** Serves one call: validates, queues, waits and answers. Problems before queueing are thrown (nothing was queued). */
  async invoke(req: IncomingMessage, res: ServerResponse, caller: ApiKeyRecord, target: InvocationTarget, instance: string): Promise<void> {
    const { version } = target;
    const queueUrl = version.deployment?.queueUrl;
    if (version.status !== 'ACTIVE' || !queueUrl) {
      throw badRequest(`Function id '${version.functionId}', version '${version.versionId}': Status ${version.status}, only ACTIVE versions can be invoked`);
    }
    const assetIds = await assetReferences(req, caller.accountId);
    const { body, release } = await readBody(req, res, this.deps.maxRequestBytes, this.deps.bodies);
    try {
      await this.queue(req, res, { caller, target, instance, assetIds, body, queueUrl });
    } finally {
      release();
    }
  }

  /** Queues a call whose request is valid and read, and answers it. */
  private async queue(req: IncomingMessage, res: ServerResponse, accepted: AcceptedCall): Promise<void> {
    const { caller, target, instance, assetIds, body, queueUrl } = accepted;
    const { version } = target;
    const requestId = randomUUID();
    const now = new Date();
    const record: InvocationRecord = {
      requestId,
      accountId: caller.accountId,
      functionId: version.functionId,
      versionId: version.versionId,
      status: 'QUEUED',
      createdAt: now.toISOString(),
      updatedAt: now.toISOString(),
      expiresAt: Math.floor(now.getTime() / 1000) + INVOCATION_TTL_SECONDS,
    };
    const headers = forwardableRequestHeaders(requestHeaders(req));
    for (const name of DIRECT_ADDRESSING_HEADERS) delete headers[name];
    const message: Omit<InvocationMessage, 'body'> = {
      requestId,
      accountId: caller.accountId,
      functionId: version.functionId,
      versionId: version.versionId,
      headers,
      assetIds,
      pollSeconds: target.waitSeconds,
      acceptedAt: now.toISOString(),
      ...(target.route ? { route: target.route } : {}),
      ...(target.stream ? { stream: true } : {}),
    };
    const ids = { 'NVCF-REQID': requestId };
    if (target.waitSeconds === 0) return this.invokeDurable(res, queueUrl, record, message, body, instance);

    const inline = inlineBody(body);
    const token = randomBytes(24).toString('base64url');
    const call = new LiveCall({
      requestId,
      token,
      accountId: caller.accountId,
      attachedBody: inline ? Buffer.alloc(0) : body,
      answersProgress: !target.route,
      persist: async (progress, running) => {
        if (!inline) await putInput(requestId, body);
        const created = await conditionalWrite(() =>
          createQueuedInvocation({
            ...record,
            ...(running ? { status: 'IN_PROGRESS' } : {}),
            ...(progress ? { percentComplete: progress.percentComplete, partialResponse: progress.partialResponse, progressVersion: 1 } : {}),
            updatedAt: new Date().toISOString(),
          }),
        );
        // Already stored: an undeploy or the sweeper errored the call while it waited (core/drain.ts); I3 tells the caller.
        if (!created) logger.info('the call was stored by someone else before it turned durable', { requestId });
      },
      onSettled: (settled) => this.deps.registry.settle(settled),
    });
    this.deps.registry.add(call);
    // Watched from before the send: a caller gone while the message is on its way cancels the call too.
    res.on('close', () => {
      if (!res.writableFinished) call.cancel();
    });
    if (res.destroyed) call.cancel();
    const sent: InvocationMessage = {
      ...message,
      body: inline ?? { kind: 'attach', bytes: body.length },
      replyTo: { host: this.deps.attachHost, port: this.deps.attachPort(), token },
    };
    try {
      await sqs().send(new SendMessageCommand({ QueueUrl: queueUrl, MessageBody: JSON.stringify(sent) }));
    } catch (error) {
      call.cancel();
      logger.error('could not queue invocation', { requestId, error: error as Error });
      throw new Problem(503, 'the request could not be queued for the function; retry', { headers: { ...ids, 'NVCF-STATUS': WIRE_STATUS.ERRORED } });
    }
    call.startDeadline(now.getTime() + target.waitSeconds * 1000);
    await this.answer(res, call, await call.first, target, instance);
  }

  /** Async call (poll 0): stored, then queued, then 202; a failed send errors the stored call (as round 1). */
  private async invokeDurable(res: ServerResponse, queueUrl: string, record: InvocationRecord, message: Omit<InvocationMessage, 'body'>, body: Buffer, instance: string): Promise<void> {
    const { requestId } = record;
    let messageBody = inlineBody(body);
    if (!messageBody) {
      await putInput(requestId, body);
      messageBody = { kind: 's3', key: inputObjectKey(requestId), bytes: body.length };
    }
    await createQueuedInvocation(record);
    try {
      await sqs().send(new SendMessageCommand({ QueueUrl: queueUrl, MessageBody: JSON.stringify({ ...message, body: messageBody } satisfies InvocationMessage) }));
    } catch (error) {
      logger.error('could not queue invocation', { requestId, error: error as Error });
      const detail = 'the request could not be queued for the function; retry';
      // A message that did get through finds the invocation terminal and is dropped by the worker.
      await finishInvocation(requestId, { error: { status: 503, detail } }).catch((failure: Error) => logger.error('could not mark the unqueued invocation errored', { requestId, error: failure }));
      sendProblem(res, new Problem(503, detail), instance, requestId, { 'NVCF-REQID': requestId, 'NVCF-STATUS': WIRE_STATUS.ERRORED });
      return;
    }
    res.writeHead(202, { 'NVCF-REQID': requestId, 'NVCF-STATUS': WIRE_STATUS.QUEUED, 'content-length': '0' });
    res.end();
  }

  private async answer(res: ServerResponse, call: LiveCall, first: FirstAnswer, target: InvocationTarget, instance: string): Promise<void> {
    const { requestId } = call;
    const ids = { 'NVCF-REQID': requestId };
    switch (first.kind) {
      case 'durable':
        return answerAccepted(res, requestId, first.progress, first.running);
      case 'unavailable':
        return sendProblem(res, new Problem(503, first.detail), instance, requestId, ids);
      case 'canceled':
        if (res.destroyed) return;
        return sendProblem(res, new Problem(410, `request ${requestId} was canceled`), instance, requestId, { ...ids, 'NVCF-STATUS': WIRE_STATUS.CANCELED });
      case 'fail':
        return sendError(res, first.error, instance, requestId);
      case 'head':
        return this.relay(res, call, first.head, target, instance);
    }
  }

  /** The container's answer: 302 to a zip, a problem for a pexec error, or status, headers and body as they come. */
  private async relay(res: ServerResponse, call: LiveCall, head: ResponseHead, target: InvocationTarget, instance: string): Promise<void> {
    const { requestId } = call;
    const pexec = !target.route;
    if (head.zipKey) {
      const location = await getSignedUrl(s3(), new GetObjectCommand({ Bucket: bucketName(), Key: head.zipKey }), { expiresIn: PRESIGNED_URL_SECONDS });
      res.writeHead(302, { Location: location, 'NVCF-REQID': requestId, 'NVCF-STATUS': WIRE_STATUS.FULFILLED, 'content-length': '0' });
      res.end();
      return;
    }
    const streamed = isEventStream(head.headers) && (target.stream || !pexec);
    if (pexec && head.status >= 400 && !streamed) {
      const { sink, bytes } = collector(MAX_CONTAINER_ERROR_BODY_BYTES);
      await call.relayBody(sink);
      return sendError(res, containerProblem(head.status, bytes()), instance, requestId);
    }
    const headers: Record<string, string> = {
      ...sendableHeaders(forwardableResponseHeaders(head.headers)),
      'NVCF-REQID': requestId,
      ...(pexec ? { 'NVCF-STATUS': head.status >= 400 ? WIRE_STATUS.ERRORED : WIRE_STATUS.FULFILLED } : {}),
      ...(head.bytes !== undefined ? { 'content-length': String(head.bytes) } : {}),
    };
    res.writeHead(head.status, headers);
    // Each event reaches the caller as it is written: no Nagle delay on the socket.
    res.socket?.setNoDelay(true);
    // A stream's head goes out now, not with its first chunk: the caller sees the status while the container is still thinking.
    if (head.bytes === undefined) res.flushHeaders();
    if ((await call.relayBody(res)) === 'complete') return;
    logger.warn('the worker went away mid-answer; the answer is cut', { requestId });
    if (streamed && !res.writableEnded) {
      res.end(`event: error\ndata: ${JSON.stringify({ status: 502, detail: 'the function instance serving this stream went away; the stream is incomplete' })}\n\n`);
    } else res.destroy();
  }
}

function sendError(res: ServerResponse, error: InvocationError, instance: string, requestId: string): void {
  const problem = new Problem(error.status, error.detail, { type: error.type, title: error.title });
  sendProblem(res, problem, instance, requestId, { 'NVCF-REQID': requestId, 'NVCF-STATUS': WIRE_STATUS.ERRORED });
}

/** 202: the call is stored; with the progress that made it so, if any. */
export function answerAccepted(res: ServerResponse, requestId: string, progress: ProgressUpdate | undefined, running: boolean): void {
  const headers: Record<string, string> = { 'NVCF-REQID': requestId, 'NVCF-STATUS': running ? WIRE_STATUS.IN_PROGRESS : WIRE_STATUS.QUEUED };
  if (progress) headers['NVCF-PERCENT-COMPLETE'] = String(progress.percentComplete);
  const body = progress?.partialResponse ?? '';
  if (body) headers['content-type'] = 'application/json';
  res.writeHead(202, { ...headers, 'content-length': String(Buffer.byteLength(body)) });
  res.end(body);
}
