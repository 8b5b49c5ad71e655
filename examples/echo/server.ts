/**
 * Echo inference server honouring the NVCF container contract, in plain Node
 * (run with `npx tsx examples/echo/server.ts [port]`, or PORT=8000).
 *
 * - `GET /health` → 200 `{"status":"OK"}`.
 * - `POST /echo` with a JSON body → the JSON string `message` repeated
 *   `repeats` times, like NVIDIA's fastapi_echo_sample. Optional fields:
 *   - `delay`: seconds to wait before answering;
 *   - `progress`: number of progress steps written to `NVCF-LARGE-OUTPUT-DIR/progress`
 *     during the delay (`{"id", "progress", "partialResponse": {"step"}}`);
 *   - `outputFile`: `{"name", "bytes"}` — a large output written as `<name>.partial`,
 *     then renamed to `<name>` (the platform uploads only finished files);
 *   - `responseBytes`: answer with that many binary bytes (application/octet-stream);
 *   - `responseText`: `{"chunk", "repeats", "contentType"?}` — answer `chunk` repeated
 *     `repeats` times as is (default text/plain);
 *   - `responseHeaders`: headers added to the answer;
 *   - `fail`: `{"status", "error", "repeats"?}` — answer that status with `{"error"}`
 *     (`error` repeated `repeats` times);
 *   - `assets`: true → answer an object whose `assets` maps each file of
 *     `NVCF-ASSET-DIR` to its sha256 (and `message` holds the echo);
 *   - `headers`: true → the object also holds the `NVCF-*` headers received;
 *   - `crash`: true → the process exits mid-request (to exercise redelivery);
 *   - `stream`: true → `text/event-stream`, `repeats` events `data: <message>`, each
 *     after `delay` seconds (NVIDIA's fastapi_echo_sample).
 * - `POST /echo` with a non-JSON body → `{"bytes", "sha256"}` of the body.
 * - For direct invocation, like NVIDIA's fastapi_multi_endpoint_sample: `GET /yeet` →
 *   `"yeet"`; `GET /query?name&age&active` → `{"message", "parameters"}`; `/status/<code>`
 *   → that status (a health check that fails, say); any other
 *   method and path → `{"method", "path", "query", "bytes", "sha256"}` of the request,
 *   or with `?binary=N` N bytes of application/octet-stream.
 *
 * With ECHO_CALL_LOG=<file>, one line `start <reqId>` / `done <reqId>` per call is
 * appended to that file, so tests can count calls across restarts, and
 * `aborted <reqId> <epoch ms>` when the caller closed the connection before the answer.
 */
import { createHash } from 'node:crypto';
import { appendFileSync } from 'node:fs';
import { readFile, readdir, rename, writeFile } from 'node:fs/promises';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

interface EchoRequest {
  message?: string;
  repeats?: number;
  delay?: number;
  progress?: number;
  outputFile?: { name: string; bytes: number };
  responseBytes?: number;
  responseText?: { chunk: string; repeats: number; contentType?: string };
  responseHeaders?: Record<string, string>;
  fail?: { status: number; error: string; repeats?: number };
  assets?: boolean;
  headers?: boolean;
  crash?: boolean;
  stream?: boolean;
}

const port = Number(process.argv[2] ?? process.env.PORT ?? 8000);
const callLog = process.env.ECHO_CALL_LOG;

function log(event: string, requestId: string): void {
  if (callLog) appendFileSync(callLog, `${event} ${requestId}\n`);
}

/** Logs `aborted` when the caller goes away before the answer is complete. */
function watchAbort(req: IncomingMessage, res: ServerResponse): void {
  const requestId = (req.headers['nvcf-reqid'] as string | undefined) ?? 'unknown';
  res.on('close', () => {
    if (!res.writableFinished && callLog) appendFileSync(callLog, `aborted ${requestId} ${Date.now()}\n`);
  });
}

function bytesOf(size: number): Buffer {
  const bytes = Buffer.alloc(size);
  for (let i = 0; i < bytes.length; i += 1) bytes[i] = i % 251;
  return bytes;
}

function send(res: ServerResponse, status: number, body: unknown, contentType = 'application/json', headers: Record<string, string> = {}): void {
  const bytes = Buffer.isBuffer(body) ? body : Buffer.from(JSON.stringify(body));
  res.writeHead(status, { ...headers, 'content-type': contentType, 'content-length': bytes.length });
  res.end(bytes);
}

async function readBody(req: IncomingMessage): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of req) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

async function assetDigests(dir: string | undefined): Promise<Record<string, string>> {
  if (!dir) return {};
  const digests: Record<string, string> = {};
  for (const name of await readdir(dir).catch(() => [])) {
    digests[name] = createHash('sha256').update(await readFile(join(dir, name))).digest('hex');
  }
  return digests;
}

async function echo(req: IncomingMessage, res: ServerResponse): Promise<void> {
  const header = (name: string) => req.headers[name.toLowerCase()] as string | undefined;
  const requestId = header('NVCF-REQID') ?? 'unknown';
  const outputDir = header('NVCF-LARGE-OUTPUT-DIR');
  const raw = await readBody(req);
  let input: EchoRequest;
  try {
    input = JSON.parse(raw.toString('utf8')) as EchoRequest;
  } catch {
    send(res, 200, { bytes: raw.length, sha256: createHash('sha256').update(raw).digest('hex') });
    return;
  }
  log('start', requestId);
  if (input.crash) process.exit(3);
  if (input.stream) {
    res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
    for (let i = 0; i < (input.repeats ?? 1) && !res.destroyed; i += 1) {
      await sleep((input.delay ?? 0) * 1000);
      res.write(`data: ${input.message ?? ''}\n\n`);
    }
    log('done', requestId);
    res.end();
    return;
  }

  const steps = input.progress ?? 0;
  const delayMs = (input.delay ?? 0) * 1000;
  for (let step = 1; step <= steps; step += 1) {
    await sleep(delayMs / (steps + 1));
    const progress = { id: requestId, progress: Math.round((100 * step) / (steps + 1)), partialResponse: { step } };
    // Written next to the final name and renamed, so the platform never reads half a file.
    if (outputDir) {
      await writeFile(join(outputDir, 'progress.tmp'), JSON.stringify(progress));
      await rename(join(outputDir, 'progress.tmp'), join(outputDir, 'progress'));
    }
  }
  await sleep(steps > 0 ? delayMs / (steps + 1) : delayMs);

  if (input.outputFile && outputDir) {
    const target = join(outputDir, input.outputFile.name);
    await writeFile(`${target}.partial`, Buffer.alloc(input.outputFile.bytes, 'x'));
    await rename(`${target}.partial`, target);
  }
  log('done', requestId);
  const extra = input.responseHeaders ?? {};
  if (input.fail) return send(res, input.fail.status, { error: input.fail.error.repeat(input.fail.repeats ?? 1) }, 'application/json', extra);
  if (input.responseBytes !== undefined) return send(res, 200, bytesOf(input.responseBytes), 'application/octet-stream', extra);
  if (input.responseText) {
    const { chunk, repeats, contentType = 'text/plain' } = input.responseText;
    return send(res, 200, Buffer.from(chunk.repeat(repeats)), contentType, extra);
  }
  const message = (input.message ?? '').repeat(input.repeats ?? 1);
  if (!input.assets && !input.headers) return send(res, 200, message, 'application/json', extra);
  const nvcfHeaders = Object.fromEntries(Object.entries(req.headers).filter(([name]) => name.startsWith('nvcf-') || name.startsWith('x-')));
  send(res, 200, {
    message,
    ...(input.assets ? { assets: await assetDigests(header('NVCF-ASSET-DIR')) } : {}),
    ...(input.headers ? { headers: nvcfHeaders } : {}),
  });
}

/** Any other method and path: what arrived, or `?binary=N` bytes. */
async function describe(req: IncomingMessage, res: ServerResponse): Promise<void> {
  const url = new URL(req.url ?? '/', 'http://localhost');
  const raw = await readBody(req);
  const binary = url.searchParams.get('binary');
  if (binary !== null) return send(res, 200, bytesOf(Number(binary)), 'application/octet-stream');
  if (req.method === 'GET' && url.pathname === '/yeet') return send(res, 200, 'yeet');
  const status = /^\/status\/(\d{3})$/.exec(url.pathname);
  if (status) return send(res, Number(status[1]), { status: Number(status[1]) });
  const query = Object.fromEntries(url.searchParams);
  if (req.method === 'GET' && url.pathname === '/query') return send(res, 200, { message: 'Query parameters received', parameters: query });
  send(res, 200, { method: req.method, path: url.pathname, query, bytes: raw.length, sha256: createHash('sha256').update(raw).digest('hex') });
}

const server = createServer((req, res) => {
  if (req.method === 'GET' && req.url === '/health') return send(res, 200, { status: 'OK' });
  watchAbort(req, res);
  const handler = req.method === 'POST' && req.url === '/echo' ? echo : describe;
  handler(req, res).catch((error: Error) => send(res, 500, { error: error.message }));
});

server.listen(port, '127.0.0.1', () => process.stdout.write(`echo server listening on http://127.0.0.1:${port}\n`));
process.on('SIGTERM', () => server.close(() => process.exit(0)));
