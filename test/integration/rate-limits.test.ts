/**
 * Rate limits on the emulators: `rateLimit` in NVCF's format on F1, F9 and the
 * ratelimit routes (RL1/RL2), every malformed value refused with a 400 that
 * names it and changes nothing; enforcement in the invocation service (429
 * with Retry-After and RateLimit-* headers, nothing queued), per calling
 * account, per-account rates and exemptions, the owner's limit applying to
 * an authorized account; one counter write per call while a limit is set and
 * none without.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { dynamo } from '../../core/aws';
import { tableName } from '../../core/config';
import { getVersion } from '../../core/functions';
import type { FunctionVersionRecord } from '../../core/model';
import { admitCall, parseRate, windowAt } from '../../core/rate-limits';
import { deployVersion } from '../support/function-versions';
import { receiveJobs } from '../support/scripted-worker';
import { newAccount, startTestStack, type TestStack } from '../support/stack';

type Account = { accountId: string; key: string };

const FUNCTION = { name: 'limited', inferenceUrl: '/echo', containerImage: 'nvcr.io/example/echo:1.0' };

describe('rate limits', () => {
  let stack: TestStack;
  let owner: Account;
  let friend: Account;
  let exempt: Account;
  let stranger: Account;
  /** UpdateItem requests sent to the Counters table by this process. */
  let counterWrites = 0;

  beforeAll(async () => {
    stack = await startTestStack();
    [owner, friend, exempt, stranger] = await Promise.all([newAccount(), newAccount(), newAccount(), newAccount()]);
    const countersTable = tableName('counters');
    dynamo().middlewareStack.add(
      (next, context) => async (args) => {
        const input = args.input as { TableName?: string };
        if (['UpdateCommand', 'UpdateItemCommand'].includes(context.commandName ?? '') && input.TableName === countersTable) counterWrites += 1;
        return next(args);
      },
      { step: 'initialize', name: 'countCounterWrites' },
    );
  });
  afterAll(async () => stack.stop());

  /** An ACTIVE version of the owner's with `rateLimit`, through F1 (which stores it) and a deployment written as D1 would. */
  async function limitedVersion(rateLimit?: unknown): Promise<FunctionVersionRecord> {
    const created = await stack.call('POST', '/v2/nvcf/functions', { key: owner.key, body: { ...FUNCTION, ...(rateLimit ? { rateLimit } : {}) } });
    expect(created.statusCode, created.body.toString()).toBe(200);
    const { id, versionId } = created.json.function;
    return deployVersion((await getVersion(id, versionId))!, { status: 'ACTIVE' });
  }

  /** An async call (poll 0): answered 202 once queued, so no worker is needed to see what was admitted. */
  function invoke(version: FunctionVersionRecord, key: string) {
    return stack.call('POST', `/v2/nvcf/pexec/functions/${version.functionId}/versions/${version.versionId}`, { key, body: { message: 'hi' }, headers: { 'nvcf-poll-seconds': '0' } });
  }

  it('parses NVCF rate strings and says what is wrong with a bad one', () => {
    expect(parseRate('100-S')).toEqual([{ count: 100, unit: 'S' }]);
    expect(parseRate('5-S, 1000-M,10-H,2-D')).toEqual([
      { count: 5, unit: 'S' },
      { count: 1000, unit: 'M' },
      { count: 10, unit: 'H' },
      { count: 2, unit: 'D' },
    ]);
    expect(parseRate('10-X')).toContain('"10-X" is not a rate');
    expect(parseRate('0-S')).toContain('the count must be from 1');
    expect(parseRate('5-S,6-S')).toContain('gives the S window twice');
    expect(windowAt('M', Date.UTC(2026, 0, 1, 10, 5, 30))).toEqual({ start: Date.UTC(2026, 0, 1, 10, 5) / 1000, end: Date.UTC(2026, 0, 1, 10, 6) / 1000 });
  });

  it('stores rateLimit given on create and shows it in the Function object', async () => {
    const rateLimit = { rateLimit: '100-S', exemptedNcaIds: [exempt.accountId], perNcaIdRate: { [friend.accountId]: '10-M' }, syncCheck: true };
    const created = await stack.call('POST', '/v2/nvcf/functions', { key: owner.key, body: { ...FUNCTION, rateLimit } });
    expect(created.statusCode).toBe(200);
    expect(created.json.function.rateLimit).toEqual(rateLimit);
    const read = await stack.call('GET', `/v2/nvcf/functions/${created.json.function.id}/versions/${created.json.function.versionId}`, { key: owner.key });
    expect(read.json.function.rateLimit).toEqual(rateLimit);
  });

  it('refuses every malformed rateLimit on create with a 400 naming the field, and creates nothing', async () => {
    const before = (await stack.call('GET', '/v2/nvcf/functions', { key: owner.key })).json.functions.length;
    const cases: [unknown, string][] = [
      [{ rateLimit: '10-X' }, 'rateLimit.rateLimit'],
      [{ rateLimit: '0-S' }, 'the count must be from 1'],
      [{ rateLimit: 'ten per second' }, 'is not a rate'],
      [{ rateLimit: 10 }, 'rateLimit.rateLimit'],
      [{ perNcaIdRate: { [friend.accountId]: '5-Q' } }, `rateLimit.perNcaIdRate.${friend.accountId}`],
      [{ rateLimit: '5-S', perUserRate: '1-S' }, 'perUserRate'],
      [{ rateLimit: '5-S', burst: 3 }, 'burst'],
      [{ exemptedNcaIds: [friend.accountId] }, 'give rateLimit'],
      [{ rateLimit: '5-S', exemptedNcaIds: ['not an account!'] }, 'rateLimit.exemptedNcaIds'],
      ['5-S', 'must be a JSON object'],
    ];
    for (const [rateLimit, named] of cases) {
      const refused = await stack.call('POST', '/v2/nvcf/functions', { key: owner.key, body: { ...FUNCTION, rateLimit } });
      expect(refused.statusCode, JSON.stringify(rateLimit)).toBe(400);
      expect(refused.headers['content-type']).toContain('application/problem+json');
      expect(refused.json.detail, JSON.stringify(rateLimit)).toContain(named);
    }
    expect((await stack.call('GET', '/v2/nvcf/functions', { key: owner.key })).json.functions.length).toBe(before);
  });

  it('sets and removes the limit with F9 and the ratelimit routes; bad bodies change nothing; another account gets 404', async () => {
    const created = await stack.call('POST', '/v2/nvcf/functions', { key: owner.key, body: FUNCTION });
    const { id, versionId } = created.json.function;
    const versionPath = `/v2/nvcf/functions/${id}/versions/${versionId}`;
    const ratePath = `/v2/nvcf/ratelimit/functions/${id}/versions/${versionId}`;
    const current = async () => (await stack.call('GET', versionPath, { key: owner.key })).json.function;

    const updated = await stack.call('PUT', versionPath, { key: owner.key, body: { tags: ['team-a'], rateLimit: { rateLimit: '5-M' } } });
    expect(updated.statusCode).toBe(200);
    expect(updated.json.function).toMatchObject({ tags: ['team-a'], rateLimit: { rateLimit: '5-M' } });

    for (const [body, named] of [
      [{}, 'give at least one of tags and rateLimit'],
      [{ rateLimit: { rateLimit: '5-MIN' } }, 'rateLimit.rateLimit'],
      [{ modelUpdates: [{ name: 'm' }] }, 'modelUpdates'],
      [{ llmInvocationConfig: {} }, 'llmInvocationConfig'],
    ] as [unknown, string][]) {
      const refused = await stack.call('PUT', versionPath, { key: owner.key, body });
      expect(refused.statusCode, JSON.stringify(body)).toBe(400);
      expect(refused.json.detail).toContain(named);
    }
    expect((await current()).rateLimit).toEqual({ rateLimit: '5-M' });

    expect((await stack.call('PUT', ratePath, { key: owner.key, body: { rateLimit: '7-S,100-H' } })).statusCode).toBe(204);
    expect((await current()).rateLimit).toEqual({ rateLimit: '7-S,100-H' });
    const bad = await stack.call('PUT', ratePath, { key: owner.key, body: { rateLimit: '7-S,8-S' } });
    expect(bad.statusCode).toBe(400);
    expect(bad.json.detail).toContain('gives the S window twice');
    expect((await current()).rateLimit).toEqual({ rateLimit: '7-S,100-H' });

    for (const [method, path, body] of [
      ['PUT', ratePath, { rateLimit: '1-S' }],
      ['DELETE', ratePath, undefined],
      ['PUT', versionPath, { rateLimit: { rateLimit: '1-S' } }],
    ] as const) {
      expect((await stack.call(method, path, { key: stranger.key, body })).statusCode, `${method} ${path}`).toBe(404);
    }
    expect((await current()).rateLimit).toEqual({ rateLimit: '7-S,100-H' });

    expect((await stack.call('DELETE', ratePath, { key: owner.key })).statusCode).toBe(204);
    expect((await current()).rateLimit).toBeUndefined();
    expect((await current()).tags).toEqual(['team-a']);
  });

  it('refuses the call beyond the limit with 429, Retry-After and RateLimit headers, and queues nothing for it', async () => {
    // A day window: no boundary falls inside the test but at midnight UTC.
    const version = await limitedVersion({ rateLimit: '3-D' });
    for (let i = 0; i < 3; i += 1) {
      const accepted = await invoke(version, owner.key);
      expect(accepted.statusCode).toBe(202);
      // An admitted call tells its standing too.
      expect([accepted.headers['ratelimit-limit'], accepted.headers['ratelimit-remaining']]).toEqual(['3', String(2 - i)]);
      expect(Number(accepted.headers['ratelimit-reset'])).toBeGreaterThan(0);
    }
    const refused = await invoke(version, owner.key);
    expect(refused.statusCode).toBe(429);
    expect(refused.headers['content-type']).toContain('application/problem+json');
    expect(refused.json.detail).toContain('rate limit 3-D reached');
    const retryAfter = Number(refused.headers['retry-after']);
    expect(retryAfter).toBeGreaterThan(0);
    expect(retryAfter).toBeLessThanOrEqual(86400);
    expect(refused.headers['ratelimit-limit']).toBe('3');
    expect(refused.headers['ratelimit-remaining']).toBe('0');
    expect(refused.headers['ratelimit-reset']).toBe(String(retryAfter));
    expect(await receiveJobs(version, 10, 1)).toHaveLength(3);
  });

  it('counts each calling account on its own, gives named accounts their own rate and exempts the exempted, under the owner’s limit', async () => {
    const version = await limitedVersion({ rateLimit: '2-D', perNcaIdRate: { [friend.accountId]: '1-D' }, exemptedNcaIds: [exempt.accountId] });
    const shared = await stack.call('POST', `/v2/nvcf/authorizations/functions/${version.functionId}`, {
      key: owner.key,
      body: { authorizedParties: [{ ncaId: friend.accountId }, { ncaId: exempt.accountId }] },
    });
    expect(shared.statusCode).toBe(200);
    const statuses = async (key: string, times: number) => {
      const answers: number[] = [];
      for (let i = 0; i < times; i += 1) answers.push((await invoke(version, key)).statusCode);
      return answers;
    };
    expect(await statuses(owner.key, 3)).toEqual([202, 202, 429]);
    expect(await statuses(friend.key, 2)).toEqual([202, 429]);
    expect(await statuses(exempt.key, 4)).toEqual([202, 202, 202, 202]);
    // Another account's limit is not the stranger's business: the function stays invisible to it.
    expect((await invoke(version, stranger.key)).statusCode).toBe(404);
  });

  it('sends one counter write per call while a limit is set, none without, and lets at most the limit through concurrently', async () => {
    const unlimited = await limitedVersion();
    counterWrites = 0;
    for (let i = 0; i < 5; i += 1) {
      const accepted = await invoke(unlimited, owner.key);
      expect(accepted.statusCode).toBe(202);
      expect(accepted.headers['ratelimit-limit']).toBeUndefined();
    }
    expect(counterWrites).toBe(0);

    const limited = await limitedVersion({ rateLimit: '20-D' });
    counterWrites = 0;
    const answers = await Promise.all(Array.from({ length: 60 }, () => invoke(limited, owner.key)));
    expect(counterWrites).toBe(60);
    expect(answers.filter((answer) => answer.statusCode === 202)).toHaveLength(20);
    expect(answers.filter((answer) => answer.statusCode === 429)).toHaveLength(40);
  });

  it('admits directly through core (the gRPC session path) with the standing of the tightest window', async () => {
    const version = { functionId: 'f', versionId: `v-${Date.now()}`, rateLimit: { rateLimit: '3-D,100-H' } };
    expect(await admitCall({ ...version, rateLimit: undefined }, owner.accountId)).toBeUndefined();
    const first = await admitCall(version, owner.accountId);
    expect(first).toMatchObject({ limit: 3, remaining: 2 });
    await admitCall(version, owner.accountId);
    await admitCall(version, owner.accountId);
    await expect(admitCall(version, owner.accountId)).rejects.toMatchObject({ status: 429 });
  });
});
