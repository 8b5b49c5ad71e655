/**
 * API keys: `nvapi-` followed by 32 random bytes (base64url). Only the sha256
 * of a key is stored, with the account it belongs to, its scopes and its
 * expiry; the key itself is shown once, when created. A revoked key and an
 * expired one fail alike: resolveApiKey finds neither.
 */
import { createHash, randomBytes } from 'node:crypto';
import { GetCommand, PutCommand, UpdateCommand, paginateScan } from '@aws-sdk/lib-dynamodb';
import * as z from 'zod';
import { conditionalWrite, dynamo } from './aws';
import { tableName } from './config';
import { SCOPES, type Scope } from './routes';

export const API_KEY_PREFIX = 'nvapi-';

/** Account ids are chosen by the operator; they appear as `ncaId` in API responses. */
export const accountIdSchema = z
  .string()
  .regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/, 'account ids are 1-64 letters, digits, ".", "_" or "-", starting with a letter or digit');

export interface ApiKeyRecord {
  keyHash: string;
  accountId: string;
  scopes: Scope[];
  createdAt: string;
  disabled: boolean;
  description?: string;
  /** ISO time after which the key no longer works; none for keys that never expire (the admin CLI's). */
  expiresAt?: string;
  revokedAt?: string;
}

/** A key's state as the keys API shows it (open-source NVCF's KeyStatus, plus REVOKED: here a revoked key is kept, disabled). */
export type ApiKeyStatus = 'ACTIVE' | 'EXPIRED' | 'REVOKED';

export function apiKeyStatus(record: ApiKeyRecord, now = Date.now()): ApiKeyStatus {
  if (record.disabled) return 'REVOKED';
  return record.expiresAt !== undefined && Date.parse(record.expiresAt) <= now ? 'EXPIRED' : 'ACTIVE';
}

export function hashApiKey(key: string): string {
  return createHash('sha256').update(key, 'utf8').digest('hex');
}

/** Creates a key for an account and returns it; this is the only time the key is visible. */
export async function createApiKey(input: { accountId: string; scopes?: readonly Scope[]; description?: string; expiresAt?: string }): Promise<{ key: string; record: ApiKeyRecord }> {
  const accountId = accountIdSchema.parse(input.accountId);
  const scopes = [...new Set(input.scopes ?? SCOPES)];
  for (const scope of scopes) if (!SCOPES.includes(scope)) throw new Error(`unknown scope "${scope}"; known scopes: ${SCOPES.join(', ')}`);
  const key = `${API_KEY_PREFIX}${randomBytes(32).toString('base64url')}`;
  const record: ApiKeyRecord = {
    keyHash: hashApiKey(key),
    accountId,
    scopes,
    createdAt: new Date().toISOString(),
    disabled: false,
    ...(input.description ? { description: input.description } : {}),
    ...(input.expiresAt ? { expiresAt: input.expiresAt } : {}),
  };
  await dynamo().send(
    new PutCommand({ TableName: tableName('apiKeys'), Item: record, ConditionExpression: 'attribute_not_exists(keyHash)' }),
  );
  return { key, record };
}

/** Registers a key chosen by the operator (the local stack's NVCF_API_KEY); idempotent. */
export async function registerApiKey(key: string, accountId: string, scopes: readonly Scope[] = SCOPES): Promise<ApiKeyRecord> {
  if (!key.startsWith(API_KEY_PREFIX) || key.length < API_KEY_PREFIX.length + 32) {
    throw new Error(`an API key must start with "${API_KEY_PREFIX}" and carry at least 32 more characters`);
  }
  const record: ApiKeyRecord = {
    keyHash: hashApiKey(key),
    accountId: accountIdSchema.parse(accountId),
    scopes: [...scopes],
    createdAt: new Date().toISOString(),
    disabled: false,
  };
  await dynamo().send(new PutCommand({ TableName: tableName('apiKeys'), Item: record }));
  return record;
}

/** The record of a working key, or undefined for an unknown, malformed, revoked or expired key. */
export async function resolveApiKey(key: string): Promise<ApiKeyRecord | undefined> {
  if (!key.startsWith(API_KEY_PREFIX)) return undefined;
  const record = await getApiKey(hashApiKey(key));
  return record && apiKeyStatus(record) === 'ACTIVE' ? record : undefined;
}

/** A key's record by its sha256, whatever its state. */
export async function getApiKey(keyHash: string): Promise<ApiKeyRecord | undefined> {
  const { Item } = await dynamo().send(new GetCommand({ TableName: tableName('apiKeys'), Key: { keyHash } }));
  return Item as ApiKeyRecord | undefined;
}

/** Disables a key (given the key or its sha256); false when no such key exists. */
export async function revokeApiKey(keyOrHash: string): Promise<boolean> {
  const keyHash = keyOrHash.startsWith(API_KEY_PREFIX) ? hashApiKey(keyOrHash) : keyOrHash;
  return conditionalWrite(() =>
    dynamo().send(
      new UpdateCommand({
        TableName: tableName('apiKeys'),
        Key: { keyHash },
        UpdateExpression: 'SET disabled = :true, revokedAt = :now',
        ConditionExpression: 'attribute_exists(keyHash)',
        ExpressionAttributeValues: { ':true': true, ':now': new Date().toISOString() },
      }),
    ),
  );
}

/** Every key record of an account, revoked ones included (a scan: ApiKeys is keyed by hash only, and small). */
export async function listApiKeys(accountId: string): Promise<ApiKeyRecord[]> {
  const records: ApiKeyRecord[] = [];
  const pages = paginateScan(
    { client: dynamo() },
    { TableName: tableName('apiKeys'), FilterExpression: 'accountId = :accountId', ExpressionAttributeValues: { ':accountId': accountId } },
  );
  for await (const page of pages) records.push(...((page.Items ?? []) as ApiKeyRecord[]));
  return records.sort((a, b) => a.createdAt.localeCompare(b.createdAt));
}
