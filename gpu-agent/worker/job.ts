/**
 * One delivery of one invocation message, from claim to deleted message
 * (DESIGN.md "Invocation path", step 2).
 *
 * Failure handling:
 * - the container answers ≥ 400 → the invocation is ERRORED with its status;
 * - a referenced asset is gone → ERRORED 500 (retrying cannot help);
 * - the container is unreachable or times out, or AWS fails → the message is
 *   left to come back after a short backoff; on the last delivery SQS allows
 *   (the queue's maxReceiveCount) the invocation becomes ERRORED 500 and the
 *   message is released, so SQS moves it to the dead-letter queue where it is
 *   kept for inspection;
 * - the worker dies → the lease lapses and the next delivery takes over.
 * The terminal write is conditional: whichever delivery finishes first
 * gives the only result, later ones just delete their message.
 */
import { createReadStream } from 'node:fs';
import { chmod, mkdir, readdir, rm, stat } from 'node:fs/promises';
import { isUtf8 } from 'node:buffer';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createWriteStream } from 'node:fs';
import { DeleteObjectCommand, GetObjectCommand, PutObjectCommand } from '@aws-sdk/client-s3';
import { ChangeMessageVisibilityCommand, DeleteMessageCommand, type Message } from '@aws-sdk/client-sqs';
import { s3, sqs } from '../../core/aws';
import { bucketName } from '../../core/config';
import { invocationMessageSchema, type InvocationMessage, type MessageBody } from '../../core/invocation-message';
import {
  claimInvocation,
  finishInvocation,
  resultBodyKey,
  resultZipKey,
  type InvocationError,
  type InvocationResult,
  type Outcome,
} from '../../core/invocations';
import { MAX_DIRECT_BINARY_RESPONSE_BYTES, MAX_INLINE_RESULT_BYTES, MAX_RESPONSE_BYTES } from '../../core/limits';
import type { FunctionVersionRecord } from '../../core/model';
import { assetObjectKey } from '../../core/names';
import { kebabReason, reasonPhrase } from '../../core/problem';
import { ContainerUnreachable, callContainer, type ContainerResponse } from './container';
import { logger, type WorkerConfig } from './config';
import { mirrorProgress } from './progress';
import { writeZip, type ZipEntry } from './zip';

/** What every job of a worker shares. */
export interface JobRuntime {
  config: WorkerConfig;
  version: FunctionVersionRecord;
  queueUrl: string;
  /** Deliveries SQS allows before the dead-letter queue (the queue's RedrivePolicy). */
  maxReceiveCount: number;
  /** Full URL of the container's inference endpoint. */
  inferenceUrl: string;
  /** Told when the container could not be reached, so the worker checks its health before taking more work. */
  onContainerUnreachable(): void;
}

/** A message older than this whose invocation is missing belongs to an expired or never-stored request. */
const ORPHAN_AFTER_MS = 60_000;

const WORKER_ERROR_TYPE = 'urn:nvcf-worker-service:problem-details:internal-server-error';
const CONNECTION_ERROR_TYPE = 'urn:inference-connection:problem-details:internal-server-error';

/** An asset referenced by the request does not exist (any more). */
class AssetMissing extends Error {}

async function freshDir(path: string): Promise<void> {
  await rm(path, { recursive: true, force: true });
  await mkdir(path, { recursive: true });
  // The container may run as another user (NVCF: dir mode 0777); mkdir's mode is subject to umask.
  await chmod(path, 0o777);
}

/** Finished output files, relative to `dir`: everything but `progress` and `*.partial`. */
async function finishedFiles(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { recursive: true, withFileTypes: true });
  return entries
    .filter((entry) => entry.isFile() && entry.name !== 'progress' && !entry.name.endsWith('.partial'))
    .map((entry) => join(entry.parentPath, entry.name).slice(dir.length + 1).split('\\').join('/'))
    .sort();
}

function containerError(response: ContainerResponse): InvocationError {
  let detail = 'Inference error';
  try {
    const error = (JSON.parse(response.body?.toString('utf8') ?? '') as { error?: unknown }).error;
    if (typeof error === 'string' && error) detail = error;
  } catch {
    // Not JSON: the generic detail, as NVCF does.
  }
  return {
    status: response.status,
    type: `urn:inference-service:problem-details:${kebabReason(response.status)}`,
    title: reasonPhrase(response.status),
    detail,
  };
}

export class Job {
  private leaseTimer: NodeJS.Timeout | undefined;
  private released = false;

  constructor(
    private readonly runtime: JobRuntime,
    readonly message: Message,
  ) {}

  /** Runs the delivery to its end; never throws. */
  async run(): Promise<void> {
    let invocation: InvocationMessage;
    try {
      invocation = invocationMessageSchema.parse(JSON.parse(this.message.Body ?? ''));
    } catch (error) {
      // Left alone it comes back maxReceiveCount times and ends in the dead-letter queue.
      logger.error('malformed invocation message', { messageId: this.message.MessageId, error: error as Error });
      return;
    }
    const attempt = Number(this.message.Attributes?.ApproximateReceiveCount ?? 1);
    const log = { requestId: invocation.requestId, attempt };
    try {
      await this.deliver(invocation, attempt);
    } catch (error) {
      logger.error('job failed', { ...log, error: error as Error });
    }
  }

  /** Gives the message back to the queue at once (worker shutting down). */
  async release(): Promise<void> {
    this.released = true;
    this.stopLease();
    await this.changeVisibility(0);
  }

  private async deliver(invocation: InvocationMessage, attempt: number): Promise<void> {
    const { requestId } = invocation;
    const claim = await claimInvocation(requestId, attempt, this.runtime.config.instanceId);
    if (claim === 'finished') return this.deleteMessage();
    if (claim === 'missing' && Date.now() - Date.parse(invocation.acceptedAt) > ORPHAN_AFTER_MS) {
      logger.warn('dropping a message whose invocation does not exist', { requestId });
      return this.deleteMessage();
    }
    if (claim !== 'claimed') return;

    this.startLease();
    const dirs = this.dirs(requestId);
    try {
      const outcome = await this.execute(invocation, attempt, dirs);
      if (!(await finishInvocation(requestId, outcome))) logger.info('invocation already had an outcome; this one is dropped', { requestId, attempt });
      this.stopLease();
      if (!this.released) await this.deleteMessage();
      if (invocation.body.kind === 's3') await this.deleteObject(invocation.body.key);
    } catch (error) {
      this.stopLease();
      if (error instanceof ContainerUnreachable) this.runtime.onContainerUnreachable();
      if (this.released) return;
      if (attempt >= this.runtime.maxReceiveCount) {
        logger.error('last delivery failed; the invocation errors and the message goes to the dead-letter queue', { requestId, attempt, error: error as Error });
        await finishInvocation(requestId, { error: this.failure(error, attempt) });
        await this.changeVisibility(0);
      } else {
        logger.warn('delivery failed; the message will be redelivered', { requestId, attempt, error: error as Error });
        await this.changeVisibility(Math.min(this.runtime.config.leaseSeconds, 2 ** (attempt - 1)));
      }
    } finally {
      await Promise.all(Object.values(dirs).map((path) => rm(path, { recursive: true, force: true })));
    }
  }

  private dirs(requestId: string) {
    const { assetDir, outputDir } = this.runtime.config;
    return {
      assets: join(assetDir, requestId),
      output: join(outputDir, requestId),
      spill: join(outputDir, `${requestId}.response`),
      zip: join(outputDir, `${requestId}.zip`),
    };
  }

  private failure(error: unknown, attempt: number): InvocationError {
    const reason = (error as Error).message;
    if (error instanceof ContainerUnreachable) {
      return { status: 500, type: CONNECTION_ERROR_TYPE, title: reasonPhrase(500), detail: `Internal error while making inference request (${attempt} attempts): ${reason}` };
    }
    return { status: 500, type: WORKER_ERROR_TYPE, title: reasonPhrase(500), detail: `Internal error while processing the request (${attempt} attempts): ${reason}` };
  }

  private async execute(invocation: InvocationMessage, attempt: number, dirs: ReturnType<Job['dirs']>): Promise<Outcome> {
    const { requestId } = invocation;
    await Promise.all([freshDir(dirs.assets), freshDir(dirs.output)]);
    try {
      await Promise.all(invocation.assetIds.map((assetId) => this.downloadAsset(invocation.accountId, assetId, join(dirs.assets, assetId))));
    } catch (error) {
      if (!(error instanceof AssetMissing)) throw error;
      return { error: { status: 500, type: WORKER_ERROR_TYPE, title: reasonPhrase(500), detail: `Internal error while downloading assets: ${error.message}` } };
    }
    const body = await this.requestBody(invocation.body);
    const mirror = mirrorProgress(requestId, attempt, dirs.output, this.runtime.config.progressIntervalMs);
    let response: ContainerResponse;
    try {
      response = await callContainer({
        url: this.runtime.inferenceUrl,
        headers: this.containerHeaders(invocation, dirs),
        body,
        timeoutMs: this.runtime.config.inferenceTimeoutSeconds * 1000,
        spillFile: dirs.spill,
      });
    } finally {
      await mirror.stop();
    }
    if (response.status >= 400) return { error: containerError(response) };
    return { result: await this.storeResult(requestId, response, dirs) };
  }

  /** Every NVCF-* header of nvcf-api.md §4.2 we can fill, over the client's forwarded headers. */
  private containerHeaders(invocation: InvocationMessage, dirs: ReturnType<Job['dirs']>): Record<string, string> {
    const { config, version } = this.runtime;
    const elapsed = Math.floor((Date.now() - Date.parse(invocation.acceptedAt)) / 1000);
    const platform: [string, string | undefined][] = [
      ['NVCF-BACKEND', config.backend],
      ['NVCF-INSTANCETYPE', config.instanceType],
      ['NVCF-REGION', config.region],
      ['NVCF-ENV', config.environment],
      ['NVCF-FUNCTION-ASSET-IDS', invocation.assetIds.length > 0 ? invocation.assetIds.join(',') : undefined],
    ];
    return {
      ...invocation.headers,
      'content-type': invocation.headers['content-type'] ?? 'application/json',
      'NVCF-REQID': invocation.requestId,
      'NVCF-NCAID': invocation.accountId,
      'NVCF-FUNCTION-NAME': version.name,
      'NVCF-FUNCTION-ID': version.functionId,
      'NVCF-FUNCTION-VERSION-ID': version.versionId,
      'NVCF-ASSET-DIR': dirs.assets,
      'NVCF-LARGE-OUTPUT-DIR': dirs.output,
      'NVCF-MAX-RESPONSE-SIZE-BYTES': String(MAX_RESPONSE_BYTES),
      'NVCF-POLL-SECONDS': String(Math.max(0, invocation.pollSeconds - elapsed)),
      ...Object.fromEntries(platform.filter((entry): entry is [string, string] => entry[1] !== undefined)),
    };
  }

  private async downloadAsset(accountId: string, assetId: string, target: string): Promise<void> {
    let body: Readable;
    try {
      const object = await s3().send(new GetObjectCommand({ Bucket: bucketName(), Key: assetObjectKey(accountId, assetId) }));
      body = object.Body as Readable;
    } catch (error) {
      if ((error as Error).name === 'NoSuchKey') throw new AssetMissing(`asset ${assetId} has no content (never uploaded, or deleted)`);
      throw error;
    }
    await pipeline(body, createWriteStream(target, { mode: 0o644 }));
  }

  private async requestBody(body: MessageBody): Promise<Buffer> {
    if (body.kind === 'inline') return Buffer.from(body.data, body.encoding);
    const { Body } = await s3().send(new GetObjectCommand({ Bucket: bucketName(), Key: body.key }));
    return Buffer.from((await Body?.transformToByteArray()) ?? new Uint8Array());
  }

  /**
   * Inline in the item when small; in S3 when larger; as a zip of the
   * response and the finished output files (answered with 302) when there are
   * files, the body exceeds MAX_RESPONSE_BYTES, or a binary body is too large
   * for Lambda's response payload.
   */
  private async storeResult(requestId: string, response: ContainerResponse, dirs: ReturnType<Job['dirs']>): Promise<InvocationResult> {
    const files = await finishedFiles(dirs.output);
    const { status, headers, body } = response;
    const binaryTooLarge = body !== undefined && body.length > MAX_DIRECT_BINARY_RESPONSE_BYTES && !isUtf8(body);
    if (!body || files.length > 0 || binaryTooLarge) {
      const entries: ZipEntry[] = [
        { name: `${requestId}.response`, source: body ?? { file: response.file! } },
        ...files.map((name) => ({ name, source: { file: join(dirs.output, name) } })),
      ];
      await writeZip(dirs.zip, entries);
      const key = resultZipKey(requestId);
      await s3().send(
        new PutObjectCommand({
          Bucket: bucketName(),
          Key: key,
          Body: createReadStream(dirs.zip),
          ContentLength: (await stat(dirs.zip)).size,
          ContentType: 'application/zip',
        }),
      );
      return { status, headers, zipKey: key };
    }
    if (body.length <= MAX_INLINE_RESULT_BYTES) return { status, headers, body };
    const key = resultBodyKey(requestId);
    await s3().send(new PutObjectCommand({ Bucket: bucketName(), Key: key, Body: body, ContentLength: body.length }));
    return { status, headers, bodyKey: key };
  }

  private startLease(): void {
    const { leaseSeconds } = this.runtime.config;
    this.leaseTimer = setInterval(() => {
      this.changeVisibility(leaseSeconds).catch((error: Error) => logger.warn('could not extend the lease', { messageId: this.message.MessageId, error }));
    }, (leaseSeconds * 1000) / 3);
  }

  private stopLease(): void {
    clearInterval(this.leaseTimer);
    this.leaseTimer = undefined;
  }

  private async changeVisibility(seconds: number): Promise<void> {
    await sqs().send(new ChangeMessageVisibilityCommand({ QueueUrl: this.runtime.queueUrl, ReceiptHandle: this.message.ReceiptHandle, VisibilityTimeout: seconds }));
  }

  private async deleteMessage(): Promise<void> {
    await sqs().send(new DeleteMessageCommand({ QueueUrl: this.runtime.queueUrl, ReceiptHandle: this.message.ReceiptHandle }));
  }

  private async deleteObject(key: string): Promise<void> {
    await s3()
      .send(new DeleteObjectCommand({ Bucket: bucketName(), Key: key }))
      .catch((error: Error) => logger.warn('could not delete the spilled request body; the lifecycle rule will', { key, error }));
  }
}
