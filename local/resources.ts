/**
 * Creates the tables, indexes and bucket the CDK app declares, from the same
 * definitions (core/tables.ts), in whatever DynamoDB/S3 the SDK points at.
 */
import { existsSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { CreateTableCommand, DynamoDBClient, ResourceInUseException, type AttributeDefinition } from '@aws-sdk/client-dynamodb';
import { BucketAlreadyOwnedByYou, CreateBucketCommand, S3Client } from '@aws-sdk/client-s3';
import { ENV } from '../core/names';
import { LocalDataKeys } from '../core/secrets';
import { TABLES, type TableDefinition } from '../core/tables';

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

function attributeDefinitions(table: TableDefinition): AttributeDefinition[] {
  const keys = [table.partitionKey, table.sortKey, ...table.globalIndexes.flatMap((index) => [index.partitionKey, index.sortKey])];
  const byName = new Map<string, AttributeDefinition>();
  for (const key of keys) if (key) byName.set(key.name, { AttributeName: key.name, AttributeType: key.type });
  return [...byName.values()];
}

/** Creates every table and the bucket named in `env`; existing ones are left alone. */
export async function createLocalResources(env: Record<string, string>): Promise<void> {
  const dynamo = new DynamoDBClient({});
  for (const table of Object.values(TABLES) as TableDefinition[]) {
    try {
      await dynamo.send(
        new CreateTableCommand({
          TableName: env[table.envVar],
          BillingMode: 'PAY_PER_REQUEST',
          AttributeDefinitions: attributeDefinitions(table),
          KeySchema: [
            { AttributeName: table.partitionKey.name, KeyType: 'HASH' },
            ...(table.sortKey ? [{ AttributeName: table.sortKey.name, KeyType: 'RANGE' as const }] : []),
          ],
          ...(table.globalIndexes.length > 0
            ? {
                GlobalSecondaryIndexes: table.globalIndexes.map((index) => ({
                  IndexName: index.indexName,
                  KeySchema: [
                    { AttributeName: index.partitionKey.name, KeyType: 'HASH' as const },
                    ...(index.sortKey ? [{ AttributeName: index.sortKey.name, KeyType: 'RANGE' as const }] : []),
                  ],
                  Projection: { ProjectionType: 'ALL' as const },
                })),
              }
            : {}),
        }),
      );
    } catch (error) {
      if (!(error instanceof ResourceInUseException)) throw error;
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
