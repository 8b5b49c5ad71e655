/**
 * Sharing a function on `npm start`, as two teams see it: team B's first key
 * comes from the admin CLI, B makes itself an invoke-only key over HTTP; the
 * owner shares its echo function with B, B invokes it, and B's full key is
 * still refused deploy, delete, secrets and queue details; the owner revokes
 * and B's calls fail within the invocation service's cache time.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { VERSION_CACHE_SECONDS } from '../../core/limits';
import { freePort, waitFor } from '../support/processes';

const ROOT = new URL('../../', import.meta.url).pathname;
const ECHO_IMAGE = 'nvcr.io/nvcf-examples/echo:1.0';
const ownerKey = `nvapi-${randomBytes(32).toString('base64url')}`;
const TEAM_B = 'team-b';
const run = promisify(execFile);

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

describe('sharing a function on npm start', () => {
  let child: ChildProcess;
  let output = '';
  let url: string;
  let stackPid: number;
  let env: NodeJS.ProcessEnv;
  let workDir: string;

  beforeAll(async () => {
    workDir = await mkdtemp(join(tmpdir(), 'nvcf-e2e-sharing-'));
    const port = await freePort();
    // TMPDIR holds the discovery file through which the admin CLI finds this stack.
    env = { ...process.env, PORT: String(port), TMPDIR: workDir, NVCF_API_KEY: ownerKey, NVCF_LOCAL_IMAGES: '', NVCF_DATA_DIR: '' };
    child = spawn('npm', ['start', '--silent'], { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
    child.stdout!.on('data', (chunk: Buffer) => (output += chunk.toString()));
    child.stderr!.on('data', (chunk: Buffer) => (output += chunk.toString()));
    const ready = await waitFor(
      'npm start to print that the API is ready',
      () => {
        if (child.exitCode !== null) throw new Error(`npm start exited ${child.exitCode}:\n${output}`);
        return /NVCF local stack ready at (http:\/\/127\.0\.0\.1:\d+) \(pid (\d+)/.exec(output) ?? undefined;
      },
      60_000,
    );
    url = ready[1]!;
    stackPid = Number(ready[2]);
  }, 90_000);

  afterAll(async () => {
    if (stackPid && alive(stackPid)) process.kill(stackPid, 'SIGTERM');
    await waitFor('npm start to stop', () => !alive(stackPid), 60_000).catch(() => process.kill(-child.pid!, 'SIGKILL'));
    await rm(workDir, { recursive: true, force: true });
  }, 90_000);

  async function call(key: string, method: string, path: string, body?: unknown, headers: Record<string, string> = {}) {
    const response = await fetch(`${url}${path}`, {
      method,
      headers: { authorization: `Bearer ${key}`, ...(body ? { 'content-type': 'application/json' } : {}), ...headers },
      body: body ? JSON.stringify(body) : undefined,
    });
    const text = await response.text();
    let json: any;
    try {
      json = text ? JSON.parse(text) : undefined;
    } catch {
      json = undefined;
    }
    return { status: response.status, json, text };
  }

  it('lets the owner share its function with another team, which invokes it and nothing else, until the owner revokes', async () => {
    // The owner's echo function, deployed.
    const created = await call(ownerKey, 'POST', '/v2/nvcf/functions', { name: 'shared-echo', inferenceUrl: '/echo', containerImage: ECHO_IMAGE, healthUri: '/health' });
    expect(created.status).toBe(200);
    const { id: functionId, versionId } = created.json.function;
    const version = `${functionId}/versions/${versionId}`;
    const deployment = `/v2/nvcf/deployments/functions/${version}`;
    const spec = { deploymentSpecifications: [{ gpu: 'LOCAL', instanceType: 'local.gpu', minInstances: 1, maxInstances: 1 }] };
    expect((await call(ownerKey, 'POST', deployment, spec)).status).toBe(200);
    await waitFor('the version to become ACTIVE', async () => ((await call(ownerKey, 'GET', deployment)).json?.deployment.functionStatus === 'ACTIVE' ? true : undefined), 60_000);

    // Team B: its first key from the admin CLI, then an invoke-only key of its own over HTTP.
    const cli = await run(process.execPath, ['--import', 'tsx', 'bin/keys.ts', 'create', '--account', TEAM_B], { cwd: ROOT, env });
    const teamKey = cli.stdout.trim();
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
      ['PUT', deployment, spec],
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
