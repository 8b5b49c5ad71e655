/**
 * The invocation service's short-lived caches, which keep DynamoDB off the
 * sync path: API keys (a revoked key stops working within
 * API_KEY_CACHE_SECONDS) and a function's versions (a deploy or undeploy is
 * seen within VERSION_CACHE_SECONDS; a send to a queue that no longer exists
 * drops the entry at once). Concurrent misses share one read.
 */
import { resolveApiKey, type ApiKeyRecord } from '../core/api-keys';
import { listOwnedVersions } from '../core/functions';
import { API_KEY_CACHE_SECONDS, VERSION_CACHE_SECONDS } from '../core/limits';
import type { FunctionVersionRecord } from '../core/model';

/** Entries kept at most; the oldest go first. */
const MAX_ENTRIES = 10_000;

/** A time-bounded cache whose misses for one key share one load. */
export class TtlCache<V> {
  private readonly entries = new Map<string, { value: Promise<V>; until: number }>();

  constructor(
    private readonly ttlMs: number,
    private readonly load: (key: string) => Promise<V>,
  ) {}

  get(key: string): Promise<V> {
    const now = Date.now();
    const hit = this.entries.get(key);
    if (hit && hit.until > now) return hit.value;
    const value = this.load(key);
    this.entries.delete(key);
    this.entries.set(key, { value, until: now + this.ttlMs });
    // A failed load must not be served from the cache.
    value.catch(() => this.entries.get(key)?.value === value && this.entries.delete(key));
    if (this.entries.size > MAX_ENTRIES) this.entries.delete(this.entries.keys().next().value!);
    return value;
  }

  forget(key: string): void {
    this.entries.delete(key);
  }
}

export class ServiceCaches {
  readonly keys = new TtlCache<ApiKeyRecord | undefined>(API_KEY_CACHE_SECONDS * 1000, (key) => resolveApiKey(key));
  private readonly versions = new TtlCache<FunctionVersionRecord[]>(VERSION_CACHE_SECONDS * 1000, (key) => {
    const [accountId, functionId] = JSON.parse(key) as [string, string];
    return listOwnedVersions(accountId, functionId);
  });

  /** The account's versions of a function (empty when it has none). */
  versionsOf(accountId: string, functionId: string): Promise<FunctionVersionRecord[]> {
    return this.versions.get(JSON.stringify([accountId, functionId]));
  }

  forgetVersions(accountId: string, functionId: string): void {
    this.versions.forget(JSON.stringify([accountId, functionId]));
  }
}
