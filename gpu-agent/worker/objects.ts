/**
 * A job's S3 objects: the assets it downloads, the request body the API or
 * the invocation service spilled, and the result it stores (the item, a body
 * object, or a zip of the answer and its output files). Result keys carry
 * the owner token, so a delivery that lost its claim never overwrites
 * another's objects.
 */
import { createReadStream, createWriteStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { DeleteObjectCommand, GetObjectCommand, PutObjectCommand } from '@aws-sdk/client-s3';
import { s3 } from '../../core/aws';
import { bucketName } from '../../core/config';
import { lambdaBodyBytes, type InvocationMessage, type MessageBody } from '../../core/invocation-message';
import { isMissingObjectError, resultBodyKey, resultZipKey, type InvocationResult, type Outcome } from '../../core/invocations';
import { MAX_DIRECT_RESPONSE_PAYLOAD_BYTES, MAX_INLINE_RESULT_BYTES } from '../../core/limits';
import { assetObjectKey, inputObjectKey } from '../../core/names';
import { logger } from './config';
import type { ContainerResponse, RequestBody } from './container';
import { finishedFiles, type RequestDirs } from './request-dirs';
import { writeZip, type ZipEntry } from './zip';

/** A referenced object (an asset, the spilled request body) does not exist (any more): retrying cannot help. */
export class ObjectMissing extends Error {}

/** Downloads the invocation's assets into `dir`, one file per asset id; ObjectMissing when one is gone. */
export async function downloadAssets(invocation: Pick<InvocationMessage, 'accountId' | 'assetIds'>, dir: string, signal: AbortSignal): Promise<void> {
  await Promise.all(invocation.assetIds.map((assetId) => downloadAsset(invocation.accountId, assetId, join(dir, assetId), signal)));
}

async function downloadAsset(accountId: string, assetId: string, target: string, signal: AbortSignal): Promise<void> {
  let body: Readable;
  try {
    const object = await s3().send(new GetObjectCommand({ Bucket: bucketName(), Key: assetObjectKey(accountId, assetId) }), { abortSignal: signal });
    body = object.Body as Readable;
  } catch (error) {
    if (isMissingObjectError(error)) throw new ObjectMissing(`asset ${assetId} has no content (never uploaded, or deleted)`);
    throw error;
  }
  await pipeline(body, createWriteStream(target, { mode: 0o644 }));
}

/** The key of a request body stored in S3: spilled by the API (s3), or by the service when the call turned durable (attach). */
export function spilledBodyKey(body: MessageBody, requestId: string): string | undefined {
  if (body.kind === 'inline') return undefined;
  return body.kind === 's3' ? body.key : inputObjectKey(requestId);
}

/** The body to send: inline bytes, or the spilled object streamed from S3 (never held in memory). */
export function storedRequestBody(body: MessageBody, requestId: string, signal: AbortSignal): RequestBody {
  if (body.kind === 'inline') {
    const data = Buffer.from(body.data, body.encoding);
    return async () => ({ data, length: data.length });
  }
  const key = spilledBodyKey(body, requestId)!;
  return async () => {
    try {
      const object = await s3().send(new GetObjectCommand({ Bucket: bucketName(), Key: key }), { abortSignal: signal });
      return { data: object.Body as Readable, length: object.ContentLength ?? body.bytes };
    } catch (error) {
      if (isMissingObjectError(error)) throw new ObjectMissing(`the request body (${key}) is no longer stored`);
      throw error;
    }
  };
}

/**
 * Inline in the item when small; in S3 when larger; as a zip of the
 * response and the finished output files (answered with 302) when there are
 * files, the body exceeds MAX_RESPONSE_BYTES, or it would not fit Lambda's
 * response once JSON-escaped or base64-encoded. Keys carry the owner token.
 */
export async function storeResult(requestId: string, owner: string, response: ContainerResponse, dirs: Pick<RequestDirs, 'output' | 'zip'>): Promise<InvocationResult> {
  const files = await finishedFiles(dirs.output);
  const { status, headers, body } = response;
  if (body && files.length === 0 && lambdaBodyBytes(body) <= MAX_DIRECT_RESPONSE_PAYLOAD_BYTES) {
    if (body.length <= MAX_INLINE_RESULT_BYTES) return { status, headers, body };
    const key = resultBodyKey(requestId, owner);
    await s3().send(new PutObjectCommand({ Bucket: bucketName(), Key: key, Body: body, ContentLength: body.length }));
    return { status, headers, bodyKey: key };
  }
  const entries: ZipEntry[] = [
    { name: `${requestId}.response`, source: body ?? { file: response.file! } },
    ...files.map((name) => ({ name, source: { file: join(dirs.output, name) } })),
  ];
  await writeZip(dirs.zip, entries);
  const key = resultZipKey(requestId, owner);
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

/** Result objects of an outcome that was not recorded: nothing points at them. */
export async function deleteUnrecordedResult(outcome: Outcome): Promise<void> {
  if (!('result' in outcome)) return;
  for (const key of [outcome.result.bodyKey, outcome.result.zipKey]) if (key) await deleteObject(key, 'an unrecorded result');
}

/** Deletes an object nothing needs any more; a failure is logged (the bucket's lifecycle rule removes it later). */
export async function deleteObject(key: string, what: string): Promise<void> {
  await s3()
    .send(new DeleteObjectCommand({ Bucket: bucketName(), Key: key }))
    .catch((error: Error) => logger.warn(`could not delete ${what}; the lifecycle rule will`, { key, error }));
}
