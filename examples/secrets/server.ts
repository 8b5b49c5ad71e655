/**
 * A function that reads its secrets the way NVIDIA's helpers do: the JSON
 * object in `/var/secrets/secrets.json` (name → value), read again on every
 * request, so that values replaced with PUT /v2/nvcf/secrets/... are used as
 * soon as the platform rewrites the file, without a restart.
 *
 * Run with `npx tsx examples/secrets/server.ts [port] [secrets file]`; the
 * local image map passes `{port}` and `{secrets}` (the instance's own file).
 *
 * - `GET /health` → 200 `{"status":"OK"}`.
 * - `POST /secrets` → `{"names", "sha256", "file", "pid"}`: the secret names,
 *   the sha256 of each value (of its JSON text for an object), never a value
 *   itself, the file read and this process's pid.
 */
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { createServer } from 'node:http';

const port = Number(process.argv[2] ?? process.env.PORT ?? 8000);
const file = process.argv[3] ?? '/var/secrets/secrets.json';

const sha256 = (value: unknown) => createHash('sha256').update(typeof value === 'string' ? value : JSON.stringify(value)).digest('hex');

const server = createServer((request, response) => {
  const answer = (status: number, body: unknown) => {
    response.writeHead(status, { 'content-type': 'application/json' });
    response.end(JSON.stringify(body));
  };
  request.resume();
  request.on('end', async () => {
    if (request.method === 'GET' && request.url === '/health') return answer(200, { status: 'OK' });
    if (request.method !== 'POST' || request.url !== '/secrets') return answer(404, { error: `no route ${request.method} ${request.url}` });
    try {
      const secrets = JSON.parse(await readFile(file, 'utf8')) as Record<string, unknown>;
      const names = Object.keys(secrets).sort();
      answer(200, { names, sha256: Object.fromEntries(names.map((name) => [name, sha256(secrets[name])])), file, pid: process.pid });
    } catch (error) {
      answer(500, { error: `cannot read the secrets file ${file}: ${(error as Error).message}` });
    }
  });
});
server.listen(port, '127.0.0.1', () => process.stdout.write(`secrets example listening on ${port}, reading ${file}\n`));
process.once('SIGTERM', () => server.close(() => process.exit(0)));
