/**
 * Authorizations (nvcf-api.md §2.7): the accounts besides its owner that may
 * invoke a function. A function has at most one set of its own, inherited by
 * every version, and each version at most one set of its own; a version may be
 * invoked by the union of the two. Each set is one item of the Authorizations
 * table whose `parties` is a DynamoDB string set, so add and remove are single
 * conditional writes. A set emptied by removals still exists (add works on it);
 * DELETE removes it.
 */
import { ConditionalCheckFailedException } from '@aws-sdk/client-dynamodb';
import { DeleteCommand, PutCommand, QueryCommand, UpdateCommand, paginateScan } from '@aws-sdk/lib-dynamodb';
import { dynamo } from './aws';
import { tableName } from './config';

/** The `target` of a function's own set; version sets use the versionId (a UUID, never this). */
export const FUNCTION_TARGET = 'function';

/** The sets of one function: its own (inherited), and each version's by versionId. */
export interface FunctionAuthorizations {
  /** Undefined when the function has no set of its own. */
  inherited?: ReadonlySet<string>;
  versions: ReadonlyMap<string, ReadonlySet<string>>;
}

interface AuthorizationItem {
  functionId: string;
  target: string;
  /** Owner of the function, kept so that a scan for shared functions needs no second read to name it. */
  accountId: string;
  parties?: Set<string>;
  updatedAt: string;
}

export const NO_AUTHORIZATIONS: FunctionAuthorizations = { versions: new Map() };

/** Every set of a function (one Query; the partition holds one item per set). */
export async function readAuthorizations(functionId: string): Promise<FunctionAuthorizations> {
  const { Items = [] } = await dynamo().send(
    new QueryCommand({ TableName: tableName('authorizations'), KeyConditionExpression: 'functionId = :functionId', ExpressionAttributeValues: { ':functionId': functionId } }),
  );
  let inherited: Set<string> | undefined;
  const versions = new Map<string, Set<string>>();
  for (const item of Items as AuthorizationItem[]) {
    const parties = new Set(item.parties ?? []);
    if (item.target === FUNCTION_TARGET) inherited = parties;
    else versions.set(item.target, parties);
  }
  return { inherited, versions };
}

/** The accounts that may invoke a version besides its owner: the function's set and the version's own. */
export function partiesOf(authorizations: FunctionAuthorizations, versionId: string): Set<string> {
  return new Set([...(authorizations.inherited ?? []), ...(authorizations.versions.get(versionId) ?? [])]);
}

/** Replaces a set (POST): `parties` becomes the whole set. */
export async function replaceParties(ownerAccountId: string, functionId: string, target: string, parties: readonly string[]): Promise<void> {
  const item: AuthorizationItem = { functionId, target, accountId: ownerAccountId, updatedAt: new Date().toISOString() };
  // A DynamoDB set cannot be empty: an empty set is an item without `parties`.
  if (parties.length > 0) item.parties = new Set(parties);
  await dynamo().send(new PutCommand({ TableName: tableName('authorizations'), Item: item }));
}

/** Deletes sets of a function: the given targets. */
export async function deleteSets(functionId: string, targets: readonly string[]): Promise<void> {
  await Promise.all(targets.map((target) => dynamo().send(new DeleteCommand({ TableName: tableName('authorizations'), Key: { functionId, target } }))));
}

export type AddOutcome = 'added' | 'no-set' | 'present';

/**
 * Adds an account to a set in one conditional write. With `mustExist` the set
 * must already exist (a function's add); without, the write creates it (a
 * version's add when only the function's set exists: the caller checks that).
 */
export async function addParty(ownerAccountId: string, functionId: string, target: string, party: string, { mustExist }: { mustExist: boolean }): Promise<AddOutcome> {
  try {
    await dynamo().send(
      new UpdateCommand({
        TableName: tableName('authorizations'),
        Key: { functionId, target },
        UpdateExpression: 'ADD parties :party SET accountId = :owner, updatedAt = :now',
        ConditionExpression: `${mustExist ? 'attribute_exists(target) AND ' : ''}(attribute_not_exists(parties) OR NOT contains(parties, :member))`,
        ExpressionAttributeValues: { ':party': new Set([party]), ':member': party, ':owner': ownerAccountId, ':now': new Date().toISOString() },
      }),
    );
    return 'added';
  } catch (error) {
    if (!(error instanceof ConditionalCheckFailedException)) throw error;
    const sets = await readAuthorizations(functionId);
    const set = target === FUNCTION_TARGET ? sets.inherited : sets.versions.get(target);
    return set ? 'present' : 'no-set';
  }
}

/** Removes an account from a set in one conditional write; false when the set does not hold it. */
export async function removeParty(functionId: string, target: string, party: string): Promise<boolean> {
  try {
    await dynamo().send(
      new UpdateCommand({
        TableName: tableName('authorizations'),
        Key: { functionId, target },
        UpdateExpression: 'DELETE parties :party SET updatedAt = :now',
        ConditionExpression: 'contains(parties, :member)',
        ExpressionAttributeValues: { ':party': new Set([party]), ':member': party, ':now': new Date().toISOString() },
      }),
    );
    return true;
  } catch (error) {
    if (error instanceof ConditionalCheckFailedException) return false;
    throw error;
  }
}

/**
 * The functions shared with an account, with their owners: a Scan (parties
 * are a set, which no index can key), paid only by F3/F6 with
 * visibility=authorized or no visibility filter; the table holds one small
 * item per shared function or version.
 */
export async function functionsSharedWith(accountId: string): Promise<Map<string, string>> {
  const shared = new Map<string, string>();
  const pages = paginateScan(
    { client: dynamo() },
    { TableName: tableName('authorizations'), FilterExpression: 'contains(parties, :me)', ExpressionAttributeValues: { ':me': accountId }, ProjectionExpression: 'functionId, accountId' },
  );
  for await (const page of pages) for (const item of (page.Items ?? []) as AuthorizationItem[]) shared.set(item.functionId, item.accountId);
  return shared;
}
