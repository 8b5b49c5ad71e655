/**
 * `npm run bench`: the HTTP invocation bench (bench/invoke.ts) and the gRPC
 * one (bench/grpc.ts), one after the other, each in a process of its own (each
 * starts a local stack of its own), printed as one JSON object
 * `{"http": ..., "grpc": ...}`. Arguments go to both (the calls of each).
 */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';

const run = promisify(execFile);
const ROOT = new URL('../', import.meta.url).pathname;

async function bench(script: string): Promise<unknown> {
  const { stdout } = await run(process.execPath, ['--import', 'tsx', script, ...process.argv.slice(2)], { cwd: ROOT, maxBuffer: 64 * 1024 * 1024 });
  return JSON.parse(stdout);
}

const http = await bench('bench/invoke.ts');
const grpc = await bench('bench/grpc.ts');
process.stdout.write(`${JSON.stringify({ http, grpc }, null, 2)}\n`);
