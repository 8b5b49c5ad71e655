/**
 * How admin commands find a running local stack: while it runs, `npm start`
 * writes the SDK environment that reaches its emulators (endpoints, table and
 * bucket names) to a file named after its port in the system's temp
 * directory (readable by its user only). `npm run keys` with the same PORT
 * reads it, whatever NVCF_DATA_DIR either was given: one stack listens on a port.
 */
import { readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export const DEFAULT_LOCAL_PORT = 8700;

export function discoveryFile(env: NodeJS.ProcessEnv = process.env): string {
  const port = env.PORT || String(DEFAULT_LOCAL_PORT);
  return join(tmpdir(), `nvcf-local-${port}.json`);
}

export async function publishLocalStack(stackEnv: Record<string, string>, env: NodeJS.ProcessEnv = process.env): Promise<() => Promise<void>> {
  const file = discoveryFile(env);
  await writeFile(file, JSON.stringify({ pid: process.pid, env: stackEnv }), { mode: 0o600 });
  return () => rm(file, { force: true });
}

/** The environment of the local stack running with this PORT, or undefined when none runs. */
export async function findLocalStack(env: NodeJS.ProcessEnv = process.env): Promise<Record<string, string> | undefined> {
  let published: { pid: number; env: Record<string, string> };
  try {
    published = JSON.parse(await readFile(discoveryFile(env), 'utf8'));
  } catch {
    return undefined;
  }
  try {
    process.kill(published.pid, 0);
  } catch {
    return undefined; // left behind by a stack that was killed
  }
  return published.env;
}
