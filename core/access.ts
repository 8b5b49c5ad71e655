/**
 * Who may do what with a function: the one place the authorizer's callers
 * (the Lambdas), the invocation service (HTTP and gRPC) and the rate limits
 * and quotas learn it. The owner may do everything its key's scopes allow; an
 * account the owner authorized (core/authorizations.ts) may invoke the
 * versions shared with it and read their public fields, nothing else; any
 * other account sees nothing, exactly as if the function did not exist (404).
 */
import { partiesOf, readAuthorizations } from './authorizations';
import { listFunctionVersions } from './functions';
import type { FunctionVersionRecord } from './model';
import { badRequest, notFound } from './problem';

export type AccessRole = 'owner' | 'authorized';

/**
 * A caller's access to one function. `callerAccountId` acts on
 * `ownerAccountId`'s function: limits and quotas of both apply to its calls.
 */
export interface FunctionAccess {
  functionId: string;
  callerAccountId: string;
  ownerAccountId: string;
  role: AccessRole;
  /** The versions the caller may use: all of them for the owner, the ones shared with the caller otherwise. */
  versions: FunctionVersionRecord[];
}

/**
 * The caller's access to a function, or undefined when it may not see it (or
 * it does not exist). The owner's access costs one Query, as before sharing
 * existed; another account's costs a second one, of the function's sets.
 */
export async function loadFunctionAccess(callerAccountId: string, functionId: string): Promise<FunctionAccess | undefined> {
  const versions = await listFunctionVersions(functionId);
  if (versions.length === 0) return undefined;
  const ownerAccountId = versions[0]!.accountId;
  if (ownerAccountId === callerAccountId) return { functionId, callerAccountId, ownerAccountId, role: 'owner', versions };
  const authorizations = await readAuthorizations(functionId);
  const shared = versions.filter((version) => partiesOf(authorizations, version.versionId).has(callerAccountId));
  if (shared.length === 0) return undefined;
  return { functionId, callerAccountId, ownerAccountId, role: 'authorized', versions: shared };
}

/**
 * The version a call goes to: I1 (no version) a random ACTIVE one; I2, pinned
 * direct calls and gRPC with function-version-id that one, which must be
 * ACTIVE. 404 when the caller may not see the function or version, 400 when
 * it is not ACTIVE.
 */
export function invocableVersion(access: FunctionAccess | undefined, functionId: string, versionId?: string): FunctionVersionRecord {
  if (!access) throw notFound(`Function id '${functionId}' not found`);
  const { versions } = access;
  if (versionId) {
    const pinned = versions.find((version) => version.versionId === versionId);
    if (!pinned) throw notFound(`Function id '${functionId}': Version '${versionId}' not found`);
    if (pinned.status !== 'ACTIVE') {
      throw badRequest(`Function id '${functionId}', version '${versionId}': Status ${pinned.status}, only ACTIVE versions can be invoked${pinned.status === 'DEPLOYING' ? '; wait until the deployment is ACTIVE' : '; deploy it first'}`);
    }
    return pinned;
  }
  const active = versions.filter((version) => version.status === 'ACTIVE' && version.deployment?.queueUrl);
  if (active.length === 0) {
    const statuses = [...new Set(versions.map((version) => version.status))].join(', ');
    throw badRequest(`Function id '${functionId}' has no ACTIVE version (versions are ${statuses}); deploy a version and wait until it is ACTIVE`);
  }
  return active[Math.floor(Math.random() * active.length)]!;
}
