/**
 * Sharing a function on `npm start`, as two teams see it: team B's first key
 * comes from the admin CLI, B makes itself an invoke-only key over HTTP; the
 * owner shares its echo function with B, B invokes it, and B's full key is
 * still refused deploy, delete, secrets and queue details; the owner revokes
 * and B's calls fail within the invocation service's cache time.
 */
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { VERSION_CACHE_SECONDS } from '../../core/limits';
import { ONE_LOCAL_INSTANCE, deployAndWait, startNpmStart, type NpmStart } from '../support/npm-start';
import { waitFor } from '../support/processes';

const ECHO_IMAGE = 'nvcr.io/nvcf-examples/echo:1.0';
const ownerKey = `nvapi-${randomBytes(32).toString('base64url')}`;
const TEAM_B = 'team-b';

describe('sharing a function on npm start', () => {
  let stack: NpmStart;

  beforeAll(async () => {
    stack = await startNpmStart({ NVCF_API_KEY: ownerKey });
  }, 90_000);
  afterAll(() => stack?.stop(), 90_000);

  const call = (key: string, method: string, path: string, body?: unknown, headers?: Record<string, string>) => stack.call(key, method, path, body, headers);

  it('lets the owner share its function with another team, which invokes it and nothing else, until the owner revokes', async () => {
    // The owner's echo function, deployed.
    const created = await call(ownerKey, 'POST', '/v2/nvcf/functions', { name: 'shared-echo', inferenceUrl: '/echo', containerImage: ECHO_IMAGE, healthUri: '/health' });
    expect(created.status).toBe(200);
    const { id: functionId, versionId } = created.json.function;
    const version = `${functionId}/versions/${versionId}`;
    const deployment = `/v2/nvcf/deployments/functions/${version}`;
    await deployAndWait(stack, ownerKey, functionId, versionId);

    // Team B: its first key from the admin CLI, then an invoke-only key of its own over HTTP.
    const teamKey = await stack.adminKey(TEAM_B);
    const expiresAt = new Date(Date.now() + 24 * 60 * 60 * 1000).toISOString();
    const made = await call(teamKey, 'POST', '/v1/keys', { description: 'invoker', expires_at: expiresAt, authorizations: { policies: [{ scopes: ['invoke_function', 'list_functions'] }] } });
    expect(made.status).toBe(200);
    const invokeKey = made.json.value as string;
    const invoke = () => call(invokeKey, 'POST', `/v2/nvcf/pexec/functions/${functionId}`, { message: 'hi', repeats: 2 }, { 'nvcf-poll-seconds': '20' });

    expect((await invoke()).status).toBe(404);

    const shared = await call(ownerKey, 'POST', `/v2/nvcf/authorizations/functions/${functionId}`, { authorizedParties: [{ ncaId: TEAM_B }] });
    expect(shared.status).toBe(200);
    expect(shared.json.function.authorizedParties).toEqual([{ ncaId: TEAM_B }]);

    // Allowed: invoke (the service may still hold the 404 for its cache time) and read the public fields.
    const answered = await waitFor('the shared function to answer team B', async () => {
      const response = await invoke();
      return response.status === 404 ? undefined : response;
    }, (VERSION_CACHE_SECONDS + 30) * 1000);
    expect(answered.status).toBe(200);
    expect(answered.text).toContain('hi');
    const listed = await call(invokeKey, 'GET', '/v2/nvcf/functions?visibility=authorized');
    expect(listed.json.functions).toEqual([expect.objectContaining({ id: functionId, versionId, ncaId: 'local', status: 'ACTIVE', ownedByDifferentAccount: true })]);
    expect(listed.text).not.toContain(ECHO_IMAGE);

    // Refused, even with team B's full key: management of the owner's function is the owner's.
    const refusals: [string, string, unknown?][] = [
      ['PUT', deployment, ONE_LOCAL_INSTANCE],
      ['DELETE', deployment],
      ['DELETE', `/v2/nvcf/functions/${version}`],
      ['PUT', `/v2/nvcf/secrets/functions/${version}`, { secrets: [{ name: 'TEAM_B', value: 'x' }] }],
      ['GET', `/v2/nvcf/queues/functions/${version}`],
      ['POST', `/v2/nvcf/authorizations/functions/${functionId}`, { authorizedParties: [{ ncaId: 'team-c' }] }],
    ];
    for (const [method, path, body] of refusals) expect((await call(teamKey, method, path, body)).status, `${method} ${path}`).toBe(404);
    expect((await call(ownerKey, 'GET', deployment)).json.deployment.functionStatus).toBe('ACTIVE');

    // The owner revokes; team B's calls fail within the invocation service's cache time.
    expect((await call(ownerKey, 'DELETE', `/v2/nvcf/authorizations/functions/${functionId}`)).status).toBe(200);
    const refused = await waitFor('team B to be refused', async () => {
      const response = await invoke();
      return response.status === 404 ? response : undefined;
    }, 30_000);
    expect(refused.json.detail).toContain(functionId);
    expect((await call(ownerKey, 'POST', `/v2/nvcf/pexec/functions/${functionId}`, { message: 'still mine' }, { 'nvcf-poll-seconds': '20' })).status).toBe(200);
  }, 180_000);
});
