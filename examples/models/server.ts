/**
 * A function that reads the models and resources the platform placed for it:
 * NVCF mounts them at /config/models/<name> and /config/resources/<name>; the
 * local stack puts them in the instance's own directory, which the image map
 * passes as `{config}`.
 *
 * Run with `npx tsx examples/models/server.ts [port] [config dir]`.
 *
 * - `GET /health` → 200 `{"status":"OK"}`.
 * - `POST /files` → `{"config", "files"}`: every file below the config
 *   directory, by path relative to it, with its size and first line.
 */
import { readdir, readFile } from 'node:fs/promises';
import { createServer } from 'node:http';
import { join, relative } from 'node:path';

const port = Number(process.argv[2] ?? process.env.PORT ?? 8000);
const config = process.argv[3] ?? '/config';

async function listFiles(dir: string): Promise<Record<string, { bytes: number; firstLine: string }>> {
  const files: Record<string, { bytes: number; firstLine: string }> = {};
  for (const entry of await readdir(dir, { withFileTypes: true, recursive: true })) {
    if (!entry.isFile()) continue;
    const path = join(entry.parentPath, entry.name);
    const content = await readFile(path);
    files[relative(config, path)] = { bytes: content.length, firstLine: content.toString('utf8').split('\n')[0]!.slice(0, 200) };
  }
  return files;
}

const server = createServer((request, response) => {
  const answer = (status: number, body: unknown) => {
    response.writeHead(status, { 'content-type': 'application/json' });
    response.end(JSON.stringify(body));
  };
  request.resume();
  request.on('end', async () => {
    if (request.method === 'GET' && request.url === '/health') return answer(200, { status: 'OK' });
    if (request.method !== 'POST' || request.url !== '/files') return answer(404, { error: `no route ${request.method} ${request.url}` });
    try {
      answer(200, { config, files: await listFiles(config) });
    } catch (error) {
      answer(500, { error: `cannot list ${config}: ${(error as Error).message}` });
    }
  });
});
server.listen(port, '127.0.0.1', () => process.stdout.write(`models example listening on ${port}, reading ${config}\n`));
process.once('SIGTERM', () => server.close(() => process.exit(0)));
