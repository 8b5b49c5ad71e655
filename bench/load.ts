/**
 * Closed-loop load for bench/invoke.ts, in a process of its own so that its
 * HTTP clients' CPU is not counted as the stack's: BENCH_CLIENTS clients each
 * POST BENCH_BODY to BENCH_URL (with BENCH_AUTHORIZATION) and wait for the
 * whole answer, again and again, for BENCH_SECONDS. Prints one JSON line:
 * `{"completed", "errors", "failures", "latencyMs", "seconds", "cpuSeconds",
 * "firstError"}` (CPU of the
 * loop only, not of the process's start).
 */
import { performance } from 'node:perf_hooks';

function setting(name: string): string {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is required`);
  return value;
}

const url = setting('BENCH_URL');
const clients = Number(setting('BENCH_CLIENTS'));
const seconds = Number(setting('BENCH_SECONDS'));
const body = setting('BENCH_BODY');
const authorization = setting('BENCH_AUTHORIZATION');
if (!Number.isInteger(clients) || clients < 1 || !(seconds > 0)) throw new Error('BENCH_CLIENTS must be a positive integer and BENCH_SECONDS positive');

let completed = 0;
let errors = 0;
/** Answers other than 200 by status ("fetch failed" and the like by message). */
const failures: Record<string, number> = {};
const latencies: number[] = [];
let firstError: string | undefined;
const cpuBefore = process.cpuUsage();
const startedAt = performance.now();
const until = startedAt + seconds * 1000;
await Promise.all(
  Array.from({ length: clients }, async () => {
    while (performance.now() < until) {
      const sent = performance.now();
      try {
        const response = await fetch(url, { method: 'POST', headers: { authorization, 'content-type': 'application/json' }, body });
        const answer = Buffer.from(await response.arrayBuffer());
        if (response.status === 200) {
          completed += 1;
          latencies.push(performance.now() - sent);
        } else {
          errors += 1;
          failures[`HTTP ${response.status}`] = (failures[`HTTP ${response.status}`] ?? 0) + 1;
          const headers = JSON.stringify(Object.fromEntries([...response.headers].filter(([name]) => name.startsWith('nvcf-'))));
          firstError ??= `HTTP ${response.status} after ${Math.round(performance.now() - sent)} ms, ${Math.round(sent - startedAt)} ms into the run, ${headers}: ${answer.toString('utf8', 0, 300)}`;
        }
      } catch (error) {
        errors += 1;
        failures[(error as Error).message] = (failures[(error as Error).message] ?? 0) + 1;
        firstError ??= (error as Error).message;
      }
    }
  }),
);
const elapsed = (performance.now() - startedAt) / 1000;
const cpu = process.cpuUsage(cpuBefore);
latencies.sort((a, b) => a - b);
const at = (p: number) => Math.round(100 * (latencies[Math.min(latencies.length - 1, Math.floor(p * latencies.length))] ?? 0)) / 100;
const latencyMs = { p50: at(0.5), p99: at(0.99), max: at(1) };
process.stdout.write(`${JSON.stringify({ completed, errors, failures, latencyMs, seconds: elapsed, cpuSeconds: (cpu.user + cpu.system) / 1e6, firstError })}\n`);
