/**
 * The invocation service's short-lived caches, which keep DynamoDB off the
 * sync path: API keys (a revoked key stops working within
 * API_KEY_CACHE_SECONDS) and a caller's access to a function with its versions
 * (a deploy, an undeploy or a revoked authorization is seen within
 * VERSION_CACHE_SECONDS; a send to a queue that no longer exists drops the
 * entry at once). Concurrent misses share one read.
 */
import { loadFunctionAccess, type FunctionAccess } from '../core/access';
import { resolveApiKey, type ApiKeyRecord } from '../core/api-keys';
import { API_KEY_CACHE_SECONDS, VERSION_CACHE_SECONDS } from '../core/limits';

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
  private readonly access = new TtlCache<FunctionAccess | undefined>(VERSION_CACHE_SECONDS * 1000, (key) => {
    const [callerAccountId, functionId] = JSON.parse(key) as [string, string];
    return loadFunctionAccess(callerAccountId, functionId);
  });

  /** The caller's access to a function and the versions it may use; undefined when it may not see the function. */
  accessTo(callerAccountId: string, functionId: string): Promise<FunctionAccess | undefined> {
    return this.access.get(JSON.stringify([callerAccountId, functionId]));
  }

  forgetAccess(callerAccountId: string, functionId: string): void {
    this.access.forget(JSON.stringify([callerAccountId, functionId]));
  }
}
