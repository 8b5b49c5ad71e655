/**
 * What the invocation service asks before it queues a call: the version's
 * rate limit for the caller (core/rate-limits.ts) and the concurrent
 * invocations quota of the caller and of the function's owner
 * (core/quotas.ts). HTTP pexec and direct invocation admit every call; the
 * gRPC path admits once per session.
 */
import { randomUUID } from 'node:crypto';
import type { FunctionVersionRecord } from '../core/model';
import type { Quotas } from '../core/quota-settings';
import { accountQuotas, markHolderAlive, takeInvocationSlots } from '../core/quotas';
import { admitCall, type RateLimitAdmission } from '../core/rate-limits';
import { CONCURRENCY_HEARTBEAT_SECONDS, QUOTA_CACHE_SECONDS } from '../core/limits';
import { TtlCache } from './caches';
import { logger } from './http';

/** Gives back what an admitted call holds; never throws. */
export type ReleaseAdmission = () => Promise<void>;

export class InvocationAdmission {
  private readonly quotas = new TtlCache<Quotas>(QUOTA_CACHE_SECONDS * 1000, (accountId) => accountQuotas(accountId));
  /** This replica, as the holder of the concurrent-invocation slots it takes (core/quotas.ts). */
  readonly holder = randomUUID().replaceAll('-', '');
  /** Slots this replica holds per account, whose liveness it refreshes. */
  private readonly held = new Map<string, number>();
  private readonly heartbeat = setInterval(() => void this.markAlive(), CONCURRENCY_HEARTBEAT_SECONDS * 1000).unref();

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
    return (await this.admitWithStanding(callerAccountId, version)).release;
  }

  /** As admit, and with the standing of the caller's rate limit (undefined when none applies), for RateLimit-* headers. */
  async admitWithStanding(callerAccountId: string, version: FunctionVersionRecord): Promise<{ release: ReleaseAdmission; standing?: RateLimitAdmission }> {
    const standing = await admitCall(version, callerAccountId);
    const accountIds = [...new Set([callerAccountId, version.accountId])];
    const accounts = await Promise.all(accountIds.map(async (accountId) => ({ accountId, quotas: await this.quotas.get(accountId) })));
    const slots = await takeInvocationSlots(accounts, this.holder, {
      onGivenBack: (given) => logger.warn('gave back the concurrent invocation slots of a replica that stopped refreshing them', given),
    });
    this.count(slots.accountIds, 1);
    return {
      standing,
      release: async () => {
        this.count(slots.accountIds, -1);
        await slots.release().catch((error: Error) => logger.error('could not give back concurrent invocation slots', { error, accountIds }));
      },
    };
  }

  /** Stops refreshing this replica's slots (the service is closing). */
  close(): void {
    clearInterval(this.heartbeat);
  }

  private count(accountIds: readonly string[], change: 1 | -1): void {
    for (const accountId of accountIds) {
      const now = (this.held.get(accountId) ?? 0) + change;
      if (now > 0) this.held.set(accountId, now);
      else this.held.delete(accountId);
    }
  }

  private async markAlive(): Promise<void> {
    if (this.held.size === 0) return;
    await markHolderAlive([...this.held.keys()], this.holder).catch((error: Error) => logger.error('could not refresh this replica\'s concurrent invocation slots', { error }));
  }
}
