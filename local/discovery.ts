/**
 * How admin commands find a running local stack: while it runs, `npm start`
 * writes the SDK environment that reaches its emulators (endpoints, table and
 * bucket names) to a file named after its port in the system's temp
 * directory (readable by its user only). `npm run keys` with the same PORT
 * reads it, whatever NVCF_DATA_DIR either was given: one stack listens on a port.
 * The file also holds the API's URL and the local account's key, so that `nvcf`
 * works against `npm start` with no configuration.
 */
import { readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export const DEFAULT_LOCAL_PORT = 8700;

export function discoveryFile(env: NodeJS.ProcessEnv = process.env): string {
  const port = env.PORT || String(DEFAULT_LOCAL_PORT);
  return join(tmpdir(), `nvcf-local-${port}.json`);
}

/** Where the local stack's API answers, and the key of its local account. */
export interface LocalApi {
  url: string;
  apiKey: string;
}

interface Published {
  pid: number;
  env: Record<string, string>;
  api?: LocalApi;
}

export async function publishLocalStack(stackEnv: Record<string, string>, api: LocalApi, env: NodeJS.ProcessEnv = process.env): Promise<() => Promise<void>> {
  const file = discoveryFile(env);
  const published: Published = { pid: process.pid, env: stackEnv, api };
  await writeFile(file, JSON.stringify(published), { mode: 0o600 });
  return () => rm(file, { force: true });
}

/** What the local stack running with this PORT published, or undefined when none runs. */
async function readPublished(env: NodeJS.ProcessEnv): Promise<Published | undefined> {
  let published: Published;
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
  return published;
}

/** The environment of the local stack running with this PORT, or undefined when none runs. */
export async function findLocalStack(env: NodeJS.ProcessEnv = process.env): Promise<Record<string, string> | undefined> {
  return (await readPublished(env))?.env;
}

/** The API of the local stack running with this PORT, or undefined when none runs. */
export async function findLocalApi(env: NodeJS.ProcessEnv = process.env): Promise<LocalApi | undefined> {
  return (await readPublished(env))?.api;
}
