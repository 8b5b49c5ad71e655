/**
 * What the invocation service asks before it queues a call: the version's
 * rate limit for the caller (core/rate-limits.ts) and the concurrent
 * invocations quota of the caller and of the function's owner
 * (core/quotas.ts). HTTP pexec and direct invocation admit every call; the
 * gRPC path admits once per session.
 */
import type { FunctionVersionRecord } from '../core/model';
import type { Quotas } from '../core/quota-settings';
import { accountQuotas, takeInvocationSlots } from '../core/quotas';
import { admitCall } from '../core/rate-limits';
import { QUOTA_CACHE_SECONDS } from '../core/limits';
import { TtlCache } from './caches';
import { logger } from './http';

/** Gives back what an admitted call holds; never throws. */
export type ReleaseAdmission = () => Promise<void>;

export class InvocationAdmission {
  private readonly quotas = new TtlCache<Quotas>(QUOTA_CACHE_SECONDS * 1000, (accountId) => accountQuotas(accountId));

  /**
   * Admits one call (or one gRPC session) of `callerAccountId` to `version`,
   * or throws a 429 Problem (rate limit reached, or a concurrent invocations
   * quota full) before anything is queued. The returned function must run
   * once the call is no longer held by this service (answered, turned
   * durable, or refused later on). Costs no request when no rate limit and no
   * concurrency quota apply, beyond reading each account's quotas once per
   * QUOTA_CACHE_SECONDS.
   */
  async admit(callerAccountId: string, version: FunctionVersionRecord): Promise<ReleaseAdmission> {
    await admitCall(version, callerAccountId);
    const accountIds = [...new Set([callerAccountId, version.accountId])];
    const accounts = await Promise.all(accountIds.map(async (accountId) => ({ accountId, quotas: await this.quotas.get(accountId) })));
    const release = await takeInvocationSlots(accounts);
    return async () => {
      await release().catch((error: Error) => logger.error('could not give back concurrent invocation slots', { error, accountIds }));
    };
  }
}
