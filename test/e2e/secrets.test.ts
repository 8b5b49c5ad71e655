/**
 * Secrets on `npm start` as a user sees them: a function created with a
 * secret reads it from its own file (`{secrets}` in the shipped image map,
 * examples/secrets), a PUT of the secrets reaches the running instance
 * without a restart, and no value appears in any answer, in the stack's
 * output, or in the instance's command and worker logs.
 */
import { createHash, randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { alive, deployAndWait, startNpmStart, type NpmStart } from '../support/npm-start';
import { waitFor } from '../support/processes';

const SECRETS_IMAGE = 'nvcr.io/nvcf-examples/secrets:1.0';
const FIRST = `first-marker-${randomBytes(6).toString('hex')}`;
const SECOND = `second-marker-${randomBytes(6).toString('hex')}`;
const sha256 = (text: string) => createHash('sha256').update(text).digest('hex');
const apiKey = `nvapi-${randomBytes(32).toString('base64url')}`;

describe('secrets on npm start', () => {
  let stack: NpmStart;
  const answers: string[] = [];

  beforeAll(async () => {
    // The worker checks every second here (30 s by default), so that the test need not wait half a minute.
    stack = await startNpmStart({ NVCF_API_KEY: apiKey, NVCF_WORKER_SECRETS_POLL_SECONDS: '1' });
  }, 90_000);
  // The test stops the stack itself; this only cleans up when it did not get there.
  afterAll(() => stack?.stop(), 90_000);

  async function call(method: string, path: string, body?: unknown) {
    const answer = await stack.call(apiKey, method, path, body);
    answers.push(answer.text);
    return answer;
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
    await deployAndWait(stack, apiKey, id, versionId);

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

    expect(stack.output()).toContain(`secrets replaced: ${id} version ${versionId}`);

    // The instance's lines as the logs route answers them: the container's and the worker's own (none names a value).
    const logged = (await call('GET', `/v2/nvcf/logs/functions/${version}?limit=1000`)).json.lines as { source: string; message: string }[];
    const logs = logged.map((line) => line.message).join('\n');
    expect(logs).toContain('secrets example listening');
    // Stopped as a user stops it: the instance's command goes with it, and nothing printed on the way out names a value.
    await stack.stop();
    expect(alive(second.json.pid)).toBe(false);
    expect(stack.output()).toMatch(/ stopped\n$/);
    for (const marker of [FIRST, SECOND]) {
      expect(answers.join('\n')).not.toContain(marker);
      expect(stack.output()).not.toContain(marker);
      expect(logs).not.toContain(marker);
    }
  }, 180_000);
});
