/**
 * The DynamoDB tables of DESIGN.md, described once. lib/ turns these into
 * CloudFormation tables and local/ creates the same tables in the emulator, so
 * the two cannot drift.
 */
import { ENV } from './names';

export interface KeyAttribute {
  name: string;
  type: 'S' | 'N';
}

export interface GlobalIndexDefinition {
  indexName: string;
  partitionKey: KeyAttribute;
  sortKey?: KeyAttribute;
}

export interface TableDefinition {
  /** Logical name used for construct ids and outputs. */
  id: 'Functions' | 'Instances' | 'Invocations' | 'Assets' | 'ApiKeys' | 'RegistryCredentials' | 'Authorizations' | 'Counters' | 'Quotas';
  /** Environment variable that carries the physical table name. */
  envVar: string;
  partitionKey: KeyAttribute;
  sortKey?: KeyAttribute;
  /** Attribute holding an epoch-seconds expiry, when the table expires items. */
  ttlAttribute?: string;
  globalIndexes: GlobalIndexDefinition[];
}

/** Index name used by every table that is listed per account. */
export const BY_ACCOUNT_INDEX = 'byAccount';
export const TTL_ATTRIBUTE = 'expiresAt';
/**
 * Index of the invocations waiting in a version's queue, oldest first: only
 * QUEUED items carry its key (`queuedVersion`), so it holds nothing else.
 */
export const QUEUED_INDEX = 'byQueue';

export const TABLES = {
  functions: {
    id: 'Functions',
    envVar: ENV.functionsTable,
    partitionKey: { name: 'functionId', type: 'S' },
    sortKey: { name: 'versionId', type: 'S' },
    globalIndexes: [
      {
        indexName: BY_ACCOUNT_INDEX,
        partitionKey: { name: 'accountId', type: 'S' },
        sortKey: { name: 'createdAt', type: 'S' },
      },
    ],
  },
  instances: {
    id: 'Instances',
    envVar: ENV.instancesTable,
    partitionKey: { name: 'versionId', type: 'S' },
    sortKey: { name: 'instanceId', type: 'S' },
    ttlAttribute: TTL_ATTRIBUTE,
    globalIndexes: [],
  },
  invocations: {
    id: 'Invocations',
    envVar: ENV.invocationsTable,
    partitionKey: { name: 'requestId', type: 'S' },
    ttlAttribute: TTL_ATTRIBUTE,
    globalIndexes: [
      {
        indexName: QUEUED_INDEX,
        partitionKey: { name: 'queuedVersion', type: 'S' },
        sortKey: { name: 'createdAt', type: 'S' },
      },
    ],
  },
  assets: {
    id: 'Assets',
    envVar: ENV.assetsTable,
    partitionKey: { name: 'assetId', type: 'S' },
    ttlAttribute: TTL_ATTRIBUTE,
    globalIndexes: [
      {
        indexName: BY_ACCOUNT_INDEX,
        partitionKey: { name: 'accountId', type: 'S' },
        sortKey: { name: 'createdAt', type: 'S' },
      },
    ],
  },
  apiKeys: {
    id: 'ApiKeys',
    envVar: ENV.apiKeysTable,
    partitionKey: { name: 'keyHash', type: 'S' },
    globalIndexes: [],
  },
  /** One item per registry credential, under its account: another account's id finds nothing. */
  registryCredentials: {
    id: 'RegistryCredentials',
    envVar: ENV.registryCredentialsTable,
    partitionKey: { name: 'accountId', type: 'S' },
    sortKey: { name: 'registryCredentialId', type: 'S' },
    globalIndexes: [],
  },
  /**
   * Who besides its owner may invoke a function (nvcf-api.md §2.7): one item per set, the
   * function's own (`target` FUNCTION_TARGET, inherited by every version) or a version's
   * (`target` = its versionId); `parties` is a string set of account ids.
   */
  authorizations: {
    id: 'Authorizations',
    envVar: ENV.authorizationsTable,
    partitionKey: { name: 'functionId', type: 'S' },
    sortKey: { name: 'target', type: 'S' },
    globalIndexes: [],
  },
  /**
   * Shared counters of the invocation service (core/rate-limits.ts, core/quotas.ts): one item per
   * rate-limit window (`rate#<versionId>#<caller>#<rate>#<windowStart>`, expiring by TTL) and one
   * per account's concurrent invocations (`concurrent#<accountId>`).
   */
  counters: {
    id: 'Counters',
    envVar: ENV.countersTable,
    partitionKey: { name: 'counterKey', type: 'S' },
    ttlAttribute: TTL_ATTRIBUTE,
    globalIndexes: [],
  },
  /** Per-account quota overrides the admin CLI sets (core/quotas.ts); an account without an item has the installation's quotas. */
  quotas: {
    id: 'Quotas',
    envVar: ENV.quotasTable,
    partitionKey: { name: 'accountId', type: 'S' },
    globalIndexes: [],
  },
} as const satisfies Record<string, TableDefinition>;

export type TableName = keyof typeof TABLES;
