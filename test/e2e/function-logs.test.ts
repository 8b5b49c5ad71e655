/**
 * Function logs through `npm start`: a deployed function's container and
 * worker lines come back from the logs route, marked by source, filtered by
 * instance, followed by cursor without a line twice or one lost; another
 * account gets 404 and a bad limit 400. The files are kept in NVCF_DATA_DIR,
 * at the path the stack prints when the instance starts.
 */
import { randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startNpmStart, type NpmStart } from '../support/npm-start';
import { waitFor } from '../support/processes';

const TICKING_IMAGE = 'nvcr.io/nvcf-examples/ticking:1.0';
const apiKey = `nvapi-${randomBytes(32).toString('base64url')}`;

/** A function that answers its health check and prints a numbered line every 100 ms, so that polls always have new lines. */
const TICKING_SERVER = `
const http = require('node:http');
let n = 0;
setInterval(() => console.log('tick ' + n++), 100);
console.error('ticking server on stderr');
http.createServer((req, res) => res.end('ok')).listen(Number(process.argv[2]), '127.0.0.1');
`;

/** Holds the ticking server, its image map and the stack's NVCF_DATA_DIR. */
let workDir: string;
let stack: NpmStart;

async function call(path: string, key = apiKey) {
  const answer = await stack.call(key, 'GET', path);
  return { status: answer.status, contentType: answer.headers.get('content-type'), json: answer.json };
}

beforeAll(async () => {
  workDir = await mkdtemp(join(tmpdir(), 'nvcf-e2e-logs-'));
  const script = join(workDir, 'ticking.cjs');
  await writeFile(script, TICKING_SERVER);
  const imageMap = join(workDir, 'images.json');
  await writeFile(imageMap, JSON.stringify({ [TICKING_IMAGE]: { command: [process.execPath, script, '{port}'] } }));
  // The worker's INFO lines ('instance ready') give it lines of its own to mark.
  stack = await startNpmStart({ NVCF_API_KEY: apiKey, NVCF_LOCAL_IMAGES: imageMap, NVCF_DATA_DIR: join(workDir, 'data'), POWERTOOLS_LOG_LEVEL: 'INFO' });
}, 90_000);

afterAll(async () => {
  await stack?.stop();
  await rm(workDir, { recursive: true, force: true });
}, 90_000);

describe('function logs through npm start', () => {
  let version: string;
  let logsPath: string;

  beforeAll(async () => {
    const created = await stack.call(apiKey, 'POST', '/v2/nvcf/functions', {
      name: 'ticking',
      inferenceUrl: '/',
      inferencePort: 8000,
      containerImage: TICKING_IMAGE,
      health: { protocol: 'HTTP', uri: '/', port: 8000, timeout: 'PT10S', expectedStatusCode: 200 },
    });
    const { id, versionId } = created.json.function;
    version = `${id}/versions/${versionId}`;
    const deployed = await stack.call(apiKey, 'POST', `/v2/nvcf/deployments/functions/${version}`, { deploymentSpecifications: [{ gpu: 'LOCAL', minInstances: 1, maxInstances: 1 }] });
    expect(deployed.status).toBe(200);
    logsPath = `/v2/nvcf/logs/functions/${version}`;
    await waitFor('the version to become ACTIVE', async () => (await call(`/v2/nvcf/deployments/functions/${version}`)).json.deployment.functionStatus === 'ACTIVE', 60_000).catch((error) => {
      throw new Error(`${(error as Error).message}; npm start printed:\n${stack.output()}`);
    });
  }, 90_000);

  it('prints where the instance’s logs are kept, below NVCF_DATA_DIR, and keeps them there', async () => {
    const printed = new RegExp(`started; logs in (\\S+/data/logs/${version.replace('/versions/', '/')}/local-[0-9a-f]{8})`).exec(stack.output());
    expect(printed, stack.output()).not.toBeNull();
    const file = await readFile(join(printed![1]!, 'container.log'), 'utf8');
    expect(JSON.parse(file.split('\n')[0]!)).toMatchObject({ t: expect.stringMatching(/^\d{4}-\d\d-\d\dT/), stream: expect.stringMatching(/^std(out|err)$/), message: expect.any(String) });
  });

  it('answers the container’s stdout and stderr and the worker’s own lines, each with its instance, time and source', async () => {
    const { json } = await waitFor('the worker’s first line', async () => {
      const answer = await call(`${logsPath}?limit=1000`);
      return answer.json.lines?.some((line: any) => line.source === 'worker') ? answer : undefined;
    }, 30_000);
    const lines: any[] = json.lines;
    const instanceId = lines[0].instanceId;
    expect(instanceId).toMatch(/^local-[0-9a-f]{8}$/);
    expect(lines).toContainEqual(expect.objectContaining({ instanceId, stream: 'stdout', source: 'container', message: 'tick 0' }));
    expect(lines).toContainEqual(expect.objectContaining({ instanceId, stream: 'stderr', source: 'container', message: 'ticking server on stderr' }));
    expect(lines.filter((line) => line.source === 'worker').map((line) => line.message).join('\n')).toContain('instance ready');
    for (const line of lines) expect(Date.parse(line.timestamp)).toBeGreaterThan(0);
    expect([...lines.map((line) => Date.parse(line.timestamp))]).toEqual([...lines.map((line) => Date.parse(line.timestamp))].sort((a, b) => a - b));

    expect((await call(`${logsPath}?instanceId=${instanceId}&limit=5`)).json.lines.every((line: any) => line.instanceId === instanceId)).toBe(true);
    expect((await call(`${logsPath}?instanceId=local-00000000`)).json.lines).toEqual([]);
  });

  it('follows by cursor: polling answers only newer lines, never one twice, none lost', async () => {
    const ticks: number[] = [];
    let answer = await call(`${logsPath}?limit=3`);
    const collect = (lines: any[]) => ticks.push(...lines.filter((l) => /^tick \d+$/.test(l.message)).map((l) => Number(l.message.slice(5))));
    collect(answer.json.lines);
    // Polls while the function keeps printing, small pages so that the limit is reached too.
    await waitFor('40 ticks polled by cursor', async () => {
      answer = await call(`${logsPath}?limit=7&cursor=${answer.json.cursor}`);
      expect(answer.status).toBe(200);
      collect(answer.json.lines);
      return ticks.length >= 40;
    }, 30_000);
    expect(ticks).toEqual(ticks.map((_, i) => i));
  }, 60_000);

  it('answers 404 to another account, as for its other routes of the version', async () => {
    const other = await call(logsPath, await stack.adminKey('team-b'));
    expect(other.status).toBe(404);
    expect(other.contentType).toBe('application/problem+json');
  }, 60_000);

  it('refuses a bad limit with 400 problem+json naming it', async () => {
    const refused = await call(`${logsPath}?limit=0`);
    expect(refused.status).toBe(400);
    expect(refused.contentType).toBe('application/problem+json');
    expect(refused.json.detail).toBe('query parameter limit must be a whole number from 1 to 1000, got "0"');
  });
});
