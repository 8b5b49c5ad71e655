import { createHash, createHmac, randomBytes, randomUUID } from 'node:crypto';
import { GetObjectCommand, HeadObjectCommand, NoSuchKey, NotFound } from '@aws-sdk/client-s3';
import { GetCommand, PutCommand } from '@aws-sdk/lib-dynamodb';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ASSET_DESCRIPTION_HEADER, type AssetRecord } from '../../core/assets';
import { dynamo, resetAwsClients, s3 } from '../../core/aws';
import { bucketName, tableName } from '../../core/config';
import { ASSET_MAX_BYTES, ASSET_TTL_SECONDS, MAX_DESCRIPTION_LENGTH, PRESIGNED_URL_SECONDS } from '../../core/limits';
import { assetObjectKey } from '../../core/names';
import { newAccount, startTestStack, type TestStack } from '../support/stack';

type Account = { accountId: string; key: string };

const ASSETS = '/v2/nvcf/assets';
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;
const PNG = { contentType: 'image/png', description: 'input-image' };

async function objectBytes(key: string) {
  const object = await s3().send(new GetObjectCommand({ Bucket: bucketName(), Key: key }));
  return { bytes: Buffer.from(await object.Body!.transformToByteArray()), contentType: object.ContentType, metadata: object.Metadata };
}

async function objectExists(key: string): Promise<boolean> {
  try {
    await s3().send(new HeadObjectCommand({ Bucket: bucketName(), Key: key }));
    return true;
  } catch (error) {
    if (error instanceof NotFound || error instanceof NoSuchKey) return false;
    throw error;
  }
}

async function putWithUploadUrl(uploadUrl: string, contentType: string, description: string, bytes: Buffer) {
  return fetch(uploadUrl, { method: 'PUT', headers: { 'Content-Type': contentType, [ASSET_DESCRIPTION_HEADER]: description }, body: bytes });
}

/**
 * SigV4 written from AWS's specification, independent of the SDK: s3rver checks
 * no signatures, so these stand in for S3's own checks of what a client sends.
 */
const awsEncode = (value: string) => encodeURIComponent(value).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);
const hmac = (key: Buffer | string, data: string) => createHmac('sha256', key).update(data, 'utf8').digest();

function signingKey(secret: string, credential: string): Buffer {
  const [, date, region, service] = credential.split('/');
  return hmac(hmac(hmac(hmac(`AWS4${secret}`, date!), region!), service!), 'aws4_request');
}

/** Whether S3 would accept this presigned PUT with these request headers. */
function presignedPutSignatureMatches(uploadUrl: string, headers: Record<string, string>, secret: string): boolean {
  const url = new URL(uploadUrl);
  const query = [...url.searchParams].filter(([name]) => name !== 'X-Amz-Signature');
  const canonicalQuery = query.map(([name, value]) => `${awsEncode(name)}=${awsEncode(value)}`).sort().join('&');
  const sent = Object.fromEntries(Object.entries({ ...headers, host: url.host }).map(([name, value]) => [name.toLowerCase(), value.trim().replace(/\s+/g, ' ')]));
  const signedHeaders = url.searchParams.get('X-Amz-SignedHeaders')!.split(';');
  if (Object.keys(sent).sort().join(';') !== signedHeaders.join(';')) return false;
  const canonicalRequest = ['PUT', url.pathname, canonicalQuery, ...signedHeaders.map((name) => `${name}:${sent[name]}`), '', signedHeaders.join(';'), 'UNSIGNED-PAYLOAD'].join('\n');
  const credential = url.searchParams.get('X-Amz-Credential')!;
  const stringToSign = ['AWS4-HMAC-SHA256', url.searchParams.get('X-Amz-Date'), credential.split('/').slice(1).join('/'), createHash('sha256').update(canonicalRequest).digest('hex')].join('\n');
  return hmac(signingKey(secret, credential), stringToSign).toString('hex') === url.searchParams.get('X-Amz-Signature');
}

describe('assets', () => {
  let stack: TestStack;
  let owner: Account;
  let stranger: Account;

  beforeAll(async () => {
    stack = await startTestStack();
    owner = await newAccount();
    stranger = await newAccount();
  });
  afterAll(async () => stack.stop());

  const create = (body: unknown, key = owner.key) => stack.call('POST', ASSETS, { key, body });
  const list = (key = owner.key) => stack.call('GET', ASSETS, { key });
  const get = (assetId: string, key = owner.key) => stack.call('GET', `${ASSETS}/${assetId}`, { key });
  const remove = (assetId: string, key = owner.key) => stack.call('DELETE', `${ASSETS}/${assetId}`, { key });

  describe('create (A1)', () => {
    it('answers 200 with the NVCF fields plus an upload form', async () => {
      const response = await create(PNG);

      expect(response.statusCode).toBe(200);
      expect(response.headers['content-type']).toBe('application/json');
      expect(Object.keys(response.json).sort()).toEqual(['assetId', 'contentType', 'description', 'uploadForm', 'uploadUrl']);
      expect(response.json).toMatchObject({ assetId: expect.stringMatching(UUID), contentType: 'image/png', description: 'input-image' });
      expect(response.json.uploadForm).toEqual({ url: expect.any(String), fields: expect.any(Object) });
    });

    it('stores the asset in the Assets table with its key, status and expiry', async () => {
      const before = Math.floor(Date.now() / 1000);
      const { json } = await create(PNG);

      const record = (await get(json.assetId)).json.asset;
      expect(record.assetId).toBe(json.assetId);
      const { Item } = await dynamo().send(new GetCommand({ TableName: tableName('assets'), Key: { assetId: json.assetId } }));
      expect(Item).toEqual({
        assetId: json.assetId,
        accountId: owner.accountId,
        contentType: 'image/png',
        description: 'input-image',
        s3Key: assetObjectKey(owner.accountId, json.assetId),
        status: 'CREATED',
        createdAt: record.createdAt,
        expiresAt: expect.any(Number),
      });
      expect(Item!.expiresAt - before).toBeGreaterThanOrEqual(ASSET_TTL_SECONDS);
      expect(Item!.expiresAt - before).toBeLessThanOrEqual(ASSET_TTL_SECONDS + 5);
    });

    it('signs Content-Type and the description header into the upload URL, valid for one hour', async () => {
      const { json } = await create(PNG);

      const url = new URL(json.uploadUrl);
      expect(url.pathname).toBe(`/${bucketName()}/${assetObjectKey(owner.accountId, json.assetId)}`);
      expect(url.searchParams.get('X-Amz-SignedHeaders')).toBe(`content-type;host;${ASSET_DESCRIPTION_HEADER}`);
      expect(url.searchParams.get('X-Amz-Expires')).toBe(String(PRESIGNED_URL_SECONDS));
      // Signed as headers, not hoisted into the query: NVCF clients send them as headers.
      expect(url.searchParams.has(ASSET_DESCRIPTION_HEADER)).toBe(false);
    });

    it('presigns the upload URL without a checksum of an empty body, even when the SDK would add one by default', async () => {
      const saved = process.env.AWS_REQUEST_CHECKSUM_CALCULATION;
      delete process.env.AWS_REQUEST_CHECKSUM_CALCULATION;
      resetAwsClients();
      try {
        const { json } = await create(PNG);
        const params = [...new URL(json.uploadUrl).searchParams.keys()].map((name) => name.toLowerCase());
        expect(params.filter((name) => name.includes('checksum'))).toEqual([]);
      } finally {
        process.env.AWS_REQUEST_CHECKSUM_CALCULATION = saved;
        resetAwsClients();
      }
    });

    it('signs the upload URL for exactly the request an NVCF client sends, and for no other Content-Type or description', async () => {
      const { json } = await create({ contentType: 'image/png', description: '  input   image ' });
      const secret = stack.env.AWS_SECRET_ACCESS_KEY!;
      const sent = { 'Content-Type': 'image/png', [ASSET_DESCRIPTION_HEADER]: 'input   image' };

      expect(presignedPutSignatureMatches(json.uploadUrl, sent, secret)).toBe(true);
      expect(presignedPutSignatureMatches(json.uploadUrl, { ...sent, 'Content-Type': 'image/jpeg' }, secret)).toBe(false);
      expect(presignedPutSignatureMatches(json.uploadUrl, { ...sent, [ASSET_DESCRIPTION_HEADER]: 'other' }, secret)).toBe(false);
      expect(presignedPutSignatureMatches(json.uploadUrl, { 'Content-Type': 'image/png' }, secret)).toBe(false);
    });

    it('signs the POST form over its policy', async () => {
      const { fields } = (await create(PNG)).json.uploadForm as { fields: Record<string, string> };

      const signature = hmac(signingKey(stack.env.AWS_SECRET_ACCESS_KEY!, fields['X-Amz-Credential']!), fields.Policy!).toString('hex');

      expect(fields['X-Amz-Signature']).toBe(signature);
    });

    it('accepts an upload through the presigned PUT with the two NVCF headers and stores the exact bytes', async () => {
      const { json } = await create(PNG);
      const bytes = randomBytes(64 * 1024);

      const upload = await putWithUploadUrl(json.uploadUrl, 'image/png', 'input-image', bytes);

      expect(upload.status).toBe(200);
      const stored = await objectBytes(assetObjectKey(owner.accountId, json.assetId));
      expect(stored.bytes.equals(bytes)).toBe(true);
      expect(stored.contentType).toBe('image/png');
      expect(stored.metadata).toEqual({ 'nvcf-asset-description': 'input-image' });
    });

    it('accepts an upload through the presigned POST form, fields first and then the file', async () => {
      const { json } = await create({ contentType: 'application/octet-stream', description: 'form upload' });
      const bytes = randomBytes(10_000);
      const form = new FormData();
      for (const [name, value] of Object.entries(json.uploadForm.fields as Record<string, string>)) form.append(name, value);
      form.append('file', new Blob([bytes], { type: 'application/octet-stream' }), 'input.bin');

      const upload = await fetch(json.uploadForm.url, { method: 'POST', body: form });

      expect(upload.status).toBe(204);
      const stored = await objectBytes(assetObjectKey(owner.accountId, json.assetId));
      expect(stored.bytes.equals(bytes)).toBe(true);
      expect(stored.contentType).toBe('application/octet-stream');
      expect(stored.metadata).toEqual({ 'nvcf-asset-description': 'form upload' });
    });

    it('pins key, size range, Content-Type, description and a one-hour expiry in the POST policy', async () => {
      const before = Date.now();
      const { json } = await create(PNG);
      const { url, fields } = json.uploadForm as { url: string; fields: Record<string, string> };
      const key = assetObjectKey(owner.accountId, json.assetId);

      const policy = JSON.parse(Buffer.from(fields.Policy!, 'base64').toString('utf8'));

      expect(new URL(url).pathname).toBe(`/${bucketName()}`);
      expect(fields).toMatchObject({ key, 'Content-Type': 'image/png', [ASSET_DESCRIPTION_HEADER]: 'input-image' });
      expect(Object.keys(policy).sort()).toEqual(['conditions', 'expiration']);
      expect(policy.conditions).toEqual([
        ['content-length-range', 1, ASSET_MAX_BYTES],
        { 'Content-Type': 'image/png' },
        { [ASSET_DESCRIPTION_HEADER]: 'input-image' },
        { bucket: bucketName() },
        { 'X-Amz-Algorithm': 'AWS4-HMAC-SHA256' },
        { 'X-Amz-Credential': fields['X-Amz-Credential'] },
        { 'X-Amz-Date': fields['X-Amz-Date'] },
        { key },
      ]);
      expect(ASSET_MAX_BYTES).toBe(5 * 1024 ** 3);
      const expiresIn = Date.parse(policy.expiration) - before;
      expect(expiresIn).toBeGreaterThan((PRESIGNED_URL_SECONDS - 5) * 1000);
      expect(expiresIn).toBeLessThanOrEqual((PRESIGNED_URL_SECONDS + 1) * 1000);
    });

    it('stores the description trimmed, as HTTP clients send header values', async () => {
      const { statusCode, json } = await create({ contentType: 'text/plain', description: '  padded  ' });

      expect(statusCode).toBe(200);
      expect(json.description).toBe('padded');
      expect(json.uploadForm.fields[ASSET_DESCRIPTION_HEADER]).toBe('padded');
    });

    const invalid: [string, unknown, RegExp][] = [
      ['a missing contentType', { description: 'x' }, /contentType: is required/],
      ['a missing description', { contentType: 'image/png' }, /description: is required/],
      ['a contentType that is not type/subtype', { contentType: 'png', description: 'x' }, /contentType: must be a media type/],
      ['a contentType with parameters', { contentType: 'text/plain; charset=utf-8', description: 'x' }, /contentType: must be a media type/],
      ['a contentType that is not a string', { contentType: 7, description: 'x' }, /contentType: must be a string, got the number 7/],
      ['an empty description', { contentType: 'image/png', description: '   ' }, /description: must not be empty/],
      [
        'a description longer than the limit',
        { contentType: 'image/png', description: 'd'.repeat(MAX_DESCRIPTION_LENGTH + 1) },
        new RegExp(`description: must be at most ${MAX_DESCRIPTION_LENGTH} characters`),
      ],
      ['a description with non-ASCII characters', { contentType: 'image/png', description: 'café' }, /description: must contain only printable ASCII/],
      ['a description with a line break', { contentType: 'image/png', description: 'a\nb' }, /description: must contain only printable ASCII/],
      ['a JSON array body', [PNG], /must be a JSON object/],
    ];
    it.each(invalid)('refuses %s with 400 naming the field, and stores nothing', async (_, body, detail) => {
      const account = await newAccount();

      const response = await create(body, account.key);

      expect(response.statusCode).toBe(400);
      expect(response.headers['content-type']).toBe('application/problem+json');
      expect(response.json).toMatchObject({ status: 400, title: 'Bad Request', instance: ASSETS });
      expect(response.json.detail).toMatch(detail);
      expect((await list(account.key)).json).toEqual({ assets: [] });
    });

    it('accepts a description of exactly the limit', async () => {
      const response = await create({ contentType: 'image/png', description: 'd'.repeat(MAX_DESCRIPTION_LENGTH) });
      expect(response.statusCode).toBe(200);
    });

    it('refuses a body that is not JSON with 400', async () => {
      const response = await stack.call('POST', ASSETS, { key: owner.key, body: '{"contentType": ', headers: { 'content-type': 'application/json' } });

      expect(response.statusCode).toBe(400);
      expect(response.json.detail).toMatch(/not valid JSON/);
    });

    it('refuses an empty body with 400', async () => {
      const response = await stack.call('POST', ASSETS, { key: owner.key });

      expect(response.statusCode).toBe(400);
      expect(response.json.detail).toMatch(/request body is required/);
    });
  });

  describe('list, get and delete (A2–A4)', () => {
    it('lists only the caller’s assets, each as {assetId, contentType, description}', async () => {
      const account = await newAccount();
      const first = (await create(PNG, account.key)).json;
      const second = (await create({ contentType: 'audio/wav', description: 'speech' }, account.key)).json;
      await create(PNG, stranger.key);

      const response = await list(account.key);

      expect(response.statusCode).toBe(200);
      expect(response.json.assets).toHaveLength(2);
      expect(response.json.assets).toEqual(
        expect.arrayContaining([
          { assetId: first.assetId, contentType: 'image/png', description: 'input-image' },
          { assetId: second.assetId, contentType: 'audio/wav', description: 'speech' },
        ]),
      );
    });

    it('lists every asset of an account with many, across result pages', async () => {
      const account = await newAccount();
      const description = 'p'.repeat(MAX_DESCRIPTION_LENGTH);
      const items: AssetRecord[] = Array.from({ length: 40 }, (_, i) => ({
        assetId: randomUUID(),
        accountId: account.accountId,
        contentType: 'image/png',
        description,
        s3Key: 'unused',
        status: 'CREATED',
        createdAt: new Date(Date.now() - i * 1000).toISOString(),
        expiresAt: Math.floor(Date.now() / 1000) + 3600,
        // Large items make dynalite's 1 MB query pages end before the list does.
        padding: 'x'.repeat(30_000),
      }) as AssetRecord);
      await Promise.all(items.map((Item) => dynamo().send(new PutCommand({ TableName: tableName('assets'), Item }))));

      const response = await list(account.key);

      expect(response.json.assets.map((asset: { assetId: string }) => asset.assetId).sort()).toEqual(items.map((item) => item.assetId).sort());
    });

    it('gets an asset as {asset: {assetId, contentType, description, createdAt}}', async () => {
      const { assetId } = (await create(PNG)).json;

      const response = await get(assetId);

      expect(response.statusCode).toBe(200);
      expect(response.json).toEqual({
        asset: { assetId, contentType: 'image/png', description: 'input-image', createdAt: expect.stringMatching(/^\d{4}-\d\d-\d\dT.*Z$/) },
      });
    });

    it('deletes the asset and its uploaded object with 204, then answers 404 for it', async () => {
      const { assetId, uploadUrl } = (await create(PNG)).json;
      await putWithUploadUrl(uploadUrl, 'image/png', 'input-image', Buffer.from('pixels'));
      const key = assetObjectKey(owner.accountId, assetId);
      expect(await objectExists(key)).toBe(true);

      const response = await remove(assetId);

      expect(response.statusCode).toBe(204);
      expect(response.body.length).toBe(0);
      expect(await objectExists(key)).toBe(false);
      expect((await get(assetId)).statusCode).toBe(404);
      expect((await list()).json.assets.map((asset: { assetId: string }) => asset.assetId)).not.toContain(assetId);
    });

    it('deletes an asset that was never uploaded', async () => {
      const { assetId } = (await create(PNG)).json;
      expect((await remove(assetId)).statusCode).toBe(204);
    });

    it('answers 404 to a second delete of the same asset', async () => {
      const { assetId } = (await create(PNG)).json;
      expect((await remove(assetId)).statusCode).toBe(204);

      const again = await remove(assetId);

      expect(again.statusCode).toBe(404);
      expect(again.json.detail).toBe(`Asset '${assetId}' not found`);
    });

    it('treats an expired asset that DynamoDB has not removed yet as missing', async () => {
      const account = await newAccount();
      const assetId = randomUUID();
      const expired: AssetRecord = {
        assetId,
        accountId: account.accountId,
        contentType: 'image/png',
        description: 'old',
        s3Key: assetObjectKey(account.accountId, assetId),
        status: 'CREATED',
        createdAt: new Date(Date.now() - 2 * ASSET_TTL_SECONDS * 1000).toISOString(),
        expiresAt: Math.floor(Date.now() / 1000) - 60,
      };
      await dynamo().send(new PutCommand({ TableName: tableName('assets'), Item: expired }));

      expect((await get(assetId, account.key)).statusCode).toBe(404);
      expect((await list(account.key)).json).toEqual({ assets: [] });
      expect((await remove(assetId, account.key)).statusCode).toBe(404);
    });

    it('answers 400 for an asset id that is not a UUID', async () => {
      const response = await get('not-a-uuid');

      expect(response.statusCode).toBe(400);
      expect(response.json.detail).toMatch(/assetId must be a UUID/);
    });
  });

  describe('access', () => {
    it('answers 401 without a key and with an unknown key', async () => {
      expect((await stack.call('POST', ASSETS, { body: PNG })).statusCode).toBe(401);
      const unknown = await create(PNG, 'nvapi-unknown-unknown-unknown-unknown-unknown');
      expect(unknown.statusCode).toBe(401);
      expect(unknown.headers['content-type']).toBe('application/problem+json');
    });

    it('answers 403 naming invoke_function to a key without that scope', async () => {
      const limited = await newAccount(['list_functions']);

      for (const response of [await create(PNG, limited.key), await list(limited.key), await get(randomUUID(), limited.key)]) {
        expect(response.statusCode).toBe(403);
        expect(response.json.detail).toContain('invoke_function');
      }
    });

    it('hides an account’s asset from another account, which can neither get nor delete it', async () => {
      const { assetId, uploadUrl } = (await create(PNG)).json;
      await putWithUploadUrl(uploadUrl, 'image/png', 'input-image', Buffer.from('secret'));

      const got = await get(assetId, stranger.key);
      const deleted = await remove(assetId, stranger.key);

      expect(got.statusCode).toBe(404);
      expect(got.json.detail).toBe(`Asset '${assetId}' not found`);
      expect(deleted.statusCode).toBe(404);
      expect((await list(stranger.key)).json.assets.map((asset: { assetId: string }) => asset.assetId)).not.toContain(assetId);
      expect((await get(assetId)).statusCode).toBe(200);
      expect(await objectExists(assetObjectKey(owner.accountId, assetId))).toBe(true);
    });
  });
});
