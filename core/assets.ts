/**
 * Assets (nvcf-api.md §2.4, §7): one Assets item per asset, its bytes at
 * `assets/<accountId>/<assetId>` in the bucket, uploaded by the client itself
 * through a presigned PUT (NVCF's `uploadUrl`) or a presigned POST form.
 * Items and objects expire after ASSET_TTL_SECONDS; an expired item that
 * DynamoDB has not removed yet is treated as missing.
 */
import { randomUUID } from 'node:crypto';
import { DeleteObjectCommand, PutObjectCommand } from '@aws-sdk/client-s3';
import { createPresignedPost, type PresignedPost } from '@aws-sdk/s3-presigned-post';
import { getSignedUrl } from '@aws-sdk/s3-request-presigner';
import { DeleteCommand, GetCommand, PutCommand, paginateQuery } from '@aws-sdk/lib-dynamodb';
import * as z from 'zod';
import { conditionalWrite, dynamo, s3 } from './aws';
import { bucketName, tableName } from './config';
import { ASSET_MAX_BYTES, ASSET_TTL_SECONDS, MAX_DESCRIPTION_LENGTH, PRESIGNED_URL_SECONDS } from './limits';
import { assetObjectKey } from './names';
import { requireAssetQuota } from './quotas';
import { BY_ACCOUNT_INDEX } from './tables';

/** S3 user-metadata key of the description; clients send it as `x-amz-meta-nvcf-asset-description`. */
const ASSET_DESCRIPTION_METADATA = 'nvcf-asset-description';
export const ASSET_DESCRIPTION_HEADER = `x-amz-meta-${ASSET_DESCRIPTION_METADATA}`;

/** RFC 6838 restricted names: `type/subtype`, no parameters. */
const MEDIA_TYPE = /^[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}\/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}$/;
/** The description travels in a signed S3 metadata header, which only carries printable ASCII. */
const PRINTABLE_ASCII = /^[\x20-\x7E]*$/;


/** Body of A1, `POST /v2/nvcf/assets`; both fields are required, as in NVCF. */
export const createAssetRequestSchema = z.object(
  {
    contentType: z.string().regex(MEDIA_TYPE, 'must be a media type of the form type/subtype, e.g. image/png (no parameters)'),
    // HTTP clients strip the ends of header values, so the stored description is trimmed the same way.
    description: z
      .string()
      .trim()
      .min(1, 'must not be empty')
      .max(MAX_DESCRIPTION_LENGTH, `must be at most ${MAX_DESCRIPTION_LENGTH} characters`)
      .regex(PRINTABLE_ASCII, 'must contain only printable ASCII characters (it is sent as an S3 metadata header)'),
  },
  { error: 'must be a JSON object {"contentType": "type/subtype", "description": "..."}' },
);
export type CreateAssetRequest = z.infer<typeof createAssetRequestSchema>;

/** An item of the Assets table. */
export interface AssetRecord {
  assetId: string;
  /** Owning account. */
  accountId: string;
  contentType: string;
  description: string;
  s3Key: string;
  status: 'CREATED';
  createdAt: string;
  /** Epoch seconds; DynamoDB's TTL removes the item some time after. */
  expiresAt: number;
}

export interface CreatedAsset {
  asset: AssetRecord;
  /** Presigned PUT; the client must send the Content-Type and description headers it signs. */
  uploadUrl: string;
  /** Presigned POST form: post `fields` first, then the file, as multipart/form-data to `url`. */
  uploadForm: PresignedPost;
}

const nowSeconds = () => Math.floor(Date.now() / 1000);
const isLive = (asset: AssetRecord) => asset.expiresAt > nowSeconds();

/** Stores a new asset of an account and presigns its two upload forms; 403 when its assets fill the assetBytes quota. */
export async function createAsset(accountId: string, request: CreateAssetRequest): Promise<CreatedAsset> {
  const assetId = randomUUID();
  const created = new Date();
  const asset: AssetRecord = {
    assetId,
    accountId,
    contentType: request.contentType,
    description: request.description,
    s3Key: assetObjectKey(accountId, assetId),
    status: 'CREATED',
    createdAt: created.toISOString(),
    expiresAt: Math.floor(created.getTime() / 1000) + ASSET_TTL_SECONDS,
  };
  const freeBytes = await requireAssetQuota(accountId);
  const [uploadUrl, uploadForm] = await Promise.all([presignPut(asset), presignPost(asset, Math.min(ASSET_MAX_BYTES, freeBytes ?? ASSET_MAX_BYTES))]);
  await dynamo().send(
    new PutCommand({ TableName: tableName('assets'), Item: asset, ConditionExpression: 'attribute_not_exists(assetId)' }),
  );
  return { asset, uploadUrl, uploadForm };
}

function presignPut(asset: AssetRecord): Promise<string> {
  const command = new PutObjectCommand({
    Bucket: bucketName(),
    Key: asset.s3Key,
    ContentType: asset.contentType,
    Metadata: { [ASSET_DESCRIPTION_METADATA]: asset.description },
  });
  // NVCF clients send both as headers; hoisted into the query, S3 would ignore the headers they send.
  const headers = new Set(['content-type', ASSET_DESCRIPTION_HEADER]);
  return getSignedUrl(s3(), command, { expiresIn: PRESIGNED_URL_SECONDS, signableHeaders: headers, unhoistableHeaders: headers });
}

/** `maxBytes`: what the account's assetBytes quota leaves free, at most ASSET_MAX_BYTES. */
function presignPost(asset: AssetRecord, maxBytes: number): Promise<PresignedPost> {
  // Each field becomes an exact-match condition of the policy, and the key is pinned by createPresignedPost.
  return createPresignedPost(s3(), {
    Bucket: bucketName(),
    Key: asset.s3Key,
    Conditions: [['content-length-range', 1, maxBytes]],
    Fields: { 'Content-Type': asset.contentType, [ASSET_DESCRIPTION_HEADER]: asset.description },
    Expires: PRESIGNED_URL_SECONDS,
  });
}

/** An asset as seen by an account: another account's, or an expired one, is indistinguishable from a missing one. */
export async function getOwnedAsset(accountId: string, assetId: string): Promise<AssetRecord | undefined> {
  const { Item } = await dynamo().send(new GetCommand({ TableName: tableName('assets'), Key: { assetId }, ConsistentRead: true }));
  const asset = Item as AssetRecord | undefined;
  return asset && asset.accountId === accountId && isLive(asset) ? asset : undefined;
}

/** The live assets of an account, oldest first. */
export async function listAccountAssets(accountId: string): Promise<AssetRecord[]> {
  const assets: AssetRecord[] = [];
  const pages = paginateQuery(
    { client: dynamo() },
    {
      TableName: tableName('assets'),
      IndexName: BY_ACCOUNT_INDEX,
      KeyConditionExpression: 'accountId = :accountId',
      FilterExpression: 'expiresAt > :now',
      ExpressionAttributeValues: { ':accountId': accountId, ':now': nowSeconds() },
    },
  );
  for await (const page of pages) assets.push(...((page.Items ?? []) as AssetRecord[]));
  return assets;
}

/**
 * Deletes an asset's object, then its item; false when the account has no such
 * (live) asset. The object goes first so that a retry after a failure between
 * the two still finds the item and finishes the job.
 */
export async function deleteOwnedAsset(accountId: string, assetId: string): Promise<boolean> {
  const asset = await getOwnedAsset(accountId, assetId);
  if (!asset) return false;
  await s3().send(new DeleteObjectCommand({ Bucket: bucketName(), Key: asset.s3Key }));
  // A concurrent delete of the same asset won; this one answers as for a missing asset.
  return conditionalWrite(() =>
    dynamo().send(
      new DeleteCommand({
        TableName: tableName('assets'),
        Key: { assetId },
        ConditionExpression: 'accountId = :accountId',
        ExpressionAttributeValues: { ':accountId': accountId },
      }),
    ),
  );
}
