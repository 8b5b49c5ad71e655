/**
 * Creates the tables, indexes and bucket the CDK app declares, from the same
 * definitions (core/tables.ts), in whatever DynamoDB/S3 the SDK points at.
 */
import { existsSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import {
  CreateTableCommand,
  DeleteTableCommand,
  DescribeTableCommand,
  DynamoDBClient,
  paginateScan,
  PutItemCommand,
  ResourceInUseException,
  type AttributeDefinition,
  type AttributeValue,
} from '@aws-sdk/client-dynamodb';
import { BucketAlreadyOwnedByYou, CreateBucketCommand, S3Client } from '@aws-sdk/client-s3';
import { ENV } from '../core/names';
import { LocalDataKeys } from '../core/secrets';
import { TABLES, type GlobalIndexDefinition, type TableDefinition } from '../core/tables';

/** Physical names used by the local stack and the tests, as environment variables. */
export function localResourceEnv(prefix = 'nvcf-local'): Record<string, string> {
  const env: Record<string, string> = { [ENV.bucket]: `${prefix}-bucket` };
  for (const table of Object.values(TABLES)) env[table.envVar] = `${prefix}-${table.id}`;
  return env;
}

/**
 * The local key that stands in for the KMS key of functions' secrets, in `dir`
 * (kept there, so that secrets sealed in NVCF_DATA_DIR open after a restart);
 * made on first use, readable by this user only. Returns the variable that names it.
 */
export async function localSecretsKeyEnv(dir: string): Promise<Record<string, string>> {
  const file = join(dir, 'secrets.key');
  if (!existsSync(file)) await writeFile(file, LocalDataKeys.newKeyFileContent(), { mode: 0o600, flag: 'wx' });
  return { [ENV.secretsLocalKeyFile]: file };
}

function indexSchema(index: GlobalIndexDefinition) {
  return {
    IndexName: index.indexName,
    KeySchema: [
      { AttributeName: index.partitionKey.name, KeyType: 'HASH' as const },
      ...(index.sortKey ? [{ AttributeName: index.sortKey.name, KeyType: 'RANGE' as const }] : []),
    ],
    Projection: { ProjectionType: 'ALL' as const },
  };
}

function attributeDefinitions(table: TableDefinition): AttributeDefinition[] {
  const keys = [table.partitionKey, table.sortKey, ...table.globalIndexes.flatMap((index) => [index.partitionKey, index.sortKey])];
  const byName = new Map<string, AttributeDefinition>();
  for (const key of keys) if (key) byName.set(key.name, { AttributeName: key.name, AttributeType: key.type });
  return [...byName.values()];
}

/**
 * A table kept in NVCF_DATA_DIR by an older version lacks the indexes added
 * since. dynalite cannot add an index to a table (UpdateTable ignores index
 * creation), so the table is made again with them and its items copied back,
 * each given the keys of the new indexes it belongs in (an invocation waiting
 * in a queue: queuedVersion). It runs once, at start, before anything is
 * served; a crash in the middle of it would lose the local table's items.
 */
async function addMissingIndexes(dynamo: DynamoDBClient, tableName: string, table: TableDefinition): Promise<void> {
  const { Table } = await dynamo.send(new DescribeTableCommand({ TableName: tableName }));
  const present = new Set((Table?.GlobalSecondaryIndexes ?? []).map((index) => index.IndexName));
  if (table.globalIndexes.every((index) => present.has(index.indexName))) return;
  const items: Record<string, AttributeValue>[] = [];
  for await (const page of paginateScan({ client: dynamo }, { TableName: tableName, ConsistentRead: true })) items.push(...(page.Items ?? []));
  await dynamo.send(new DeleteTableCommand({ TableName: tableName }));
  await createTable(dynamo, tableName, table);
  for (const item of items) {
    if (item.status?.S === 'QUEUED' && item.versionId && !item.queuedVersion) item.queuedVersion = item.versionId;
    await dynamo.send(new PutItemCommand({ TableName: tableName, Item: item }));
  }
}

function createTable(dynamo: DynamoDBClient, tableName: string, table: TableDefinition) {
  return dynamo.send(
    new CreateTableCommand({
      TableName: tableName,
      BillingMode: 'PAY_PER_REQUEST',
      AttributeDefinitions: attributeDefinitions(table),
      KeySchema: [
        { AttributeName: table.partitionKey.name, KeyType: 'HASH' },
        ...(table.sortKey ? [{ AttributeName: table.sortKey.name, KeyType: 'RANGE' as const }] : []),
      ],
      ...(table.globalIndexes.length > 0 ? { GlobalSecondaryIndexes: table.globalIndexes.map(indexSchema) } : {}),
    }),
  );
}

/** Creates every table and the bucket named in `env`; existing ones get the indexes they lack and are otherwise left alone. */
export async function createLocalResources(env: Record<string, string>): Promise<void> {
  const dynamo = new DynamoDBClient({});
  for (const table of Object.values(TABLES) as TableDefinition[]) {
    try {
      await createTable(dynamo, env[table.envVar]!, table);
    } catch (error) {
      if (!(error instanceof ResourceInUseException)) throw error;
      await addMissingIndexes(dynamo, env[table.envVar]!, table);
    }
  }
  dynamo.destroy();

  const s3 = new S3Client({ forcePathStyle: true });
  try {
    await s3.send(new CreateBucketCommand({ Bucket: env[ENV.bucket] }));
  } catch (error) {
    if (!(error instanceof BucketAlreadyOwnedByYou) && (error as Error).name !== 'BucketAlreadyExists') throw error;
  }
  s3.destroy();
}
