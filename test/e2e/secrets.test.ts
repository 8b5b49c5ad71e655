/**
 * Secrets on `npm start` as a user sees them: a function created with a
 * secret reads it from its own file (`{secrets}` in the shipped image map,
 * examples/secrets), a PUT of the secrets reaches the running instance
 * without a restart, and no value appears in any answer, in the stack's
 * output, or in the instance's command and worker logs.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort, waitFor } from '../support/processes';

const ROOT = new URL('../../', import.meta.url).pathname;
const SECRETS_IMAGE = 'nvcr.io/nvcf-examples/secrets:1.0';
const FIRST = `first-marker-${randomBytes(6).toString('hex')}`;
const SECOND = `second-marker-${randomBytes(6).toString('hex')}`;
const sha256 = (text: string) => createHash('sha256').update(text).digest('hex');
const apiKey = `nvapi-${randomBytes(32).toString('base64url')}`;

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

describe('secrets on npm start', () => {
  let child: ChildProcess;
  let output = '';
  let url: string;
  /** The stack's own process, as its ready line prints it. */
  let stackPid: number;
  const answers: string[] = [];

  beforeAll(async () => {
    const port = await freePort();
    // The worker checks every second here (30 s by default), so that the test need not wait half a minute.
    child = spawn('npm', ['start', '--silent'], {
      cwd: ROOT,
      env: { ...process.env, PORT: String(port), NVCF_API_KEY: apiKey, NVCF_WORKER_SECRETS_POLL_SECONDS: '1', NVCF_LOCAL_IMAGES: '', NVCF_DATA_DIR: '' },
      stdio: ['ignore', 'pipe', 'pipe'],
      detached: true,
    });
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

  // Only if the test did not get to stop the stack itself.
  afterAll(() => {
    for (const pid of [stackPid, -child.pid!]) if (pid && alive(pid)) process.kill(pid, 'SIGKILL');
  });

  async function call(method: string, path: string, body?: unknown) {
    const response = await fetch(`${url}${path}`, {
      method,
      headers: { authorization: `Bearer ${apiKey}`, ...(body ? { 'content-type': 'application/json' } : {}) },
      body: body ? JSON.stringify(body) : undefined,
    });
    const text = await response.text();
    answers.push(text);
    return { status: response.status, text, json: text ? JSON.parse(text) : undefined };
  }

  it('delivers the secret to the instance’s file, replaces it in the running instance after a PUT, and shows it nowhere', async () => {
    const created = await call('POST', '/v2/nvcf/functions', {
      name: 'secrets-e2e',
      inferenceUrl: '/secrets',
      containerImage: SECRETS_IMAGE,
      health: { protocol: 'HTTP', uri: '/health', port: 8000, timeout: 'PT10S', expectedStatusCode: 200 },
      secrets: [{ name: 'API_TOKEN', value: FIRST }],
    });
    expect(created.status).toBe(200);
    const { id, versionId } = created.json.function;
    const version = `${id}/versions/${versionId}`;
    expect((await call('POST', `/v2/nvcf/deployments/functions/${version}`, { deploymentSpecifications: [{ gpu: 'LOCAL', instanceType: 'local.gpu', minInstances: 1, maxInstances: 1 }] })).status).toBe(200);
    await waitFor('the version to become ACTIVE', async () => (await call('GET', `/v2/nvcf/deployments/functions/${version}`)).json.deployment.functionStatus === 'ACTIVE', 60_000);

    const invoke = () => call('POST', `/v2/nvcf/pexec/functions/${version}`, { ask: 'secrets' });
    const first = await invoke();
    expect(first.status).toBe(200);
    expect(first.json).toMatchObject({ names: ['API_TOKEN'], sha256: { API_TOKEN: sha256(FIRST) } });

    expect((await call('PUT', `/v2/nvcf/secrets/functions/${version}`, { secrets: [{ name: 'API_TOKEN', value: SECOND }, { name: 'EXTRA', value: 'x' }] })).status).toBe(204);
    const second = await waitFor('the running instance to read the replaced secret', async () => {
      const answer = await invoke();
      return answer.json?.sha256?.API_TOKEN === sha256(SECOND) ? answer : undefined;
    }, 60_000);
    expect(second.json.names).toEqual(['API_TOKEN', 'EXTRA']);
    // The same process and file: no restart.
    expect(second.json.pid).toBe(first.json.pid);
    expect(second.json.file).toBe(first.json.file);
    expect(second.json.file).toMatch(/\/instances\/local-[0-9a-f]+\/secrets\/secrets\.json$/);

    expect(output).toContain(`secrets replaced: ${id} version ${versionId}`);

    // The instance's lines as the logs route answers them: the container's and the worker's own (none names a value).
    const logged = (await call('GET', `/v2/nvcf/logs/functions/${version}?limit=1000`)).json.lines as { source: string; message: string }[];
    const logs = logged.map((line) => line.message).join('\n');
    expect(logs).toContain('secrets example listening');
    // Stopped as a user stops it: the instance's command goes with it, and nothing printed on the way out names a value.
    process.kill(stackPid, 'SIGTERM');
    await waitFor('the stack to stop', () => !alive(stackPid), 60_000);
    expect(alive(second.json.pid)).toBe(false);
    expect(output).toMatch(/ stopped\n$/);
    for (const marker of [FIRST, SECOND]) {
      expect(answers.join('\n')).not.toContain(marker);
      expect(output).not.toContain(marker);
      expect(logs).not.toContain(marker);
    }
  }, 180_000);
});
