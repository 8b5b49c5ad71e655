/**
 * A job's request directories (nvcf-api.md §4.3, §4.4): the asset and
 * large-output directory of each request, made fresh for it, removed after
 * it, swept at start; and the finished files a container left there.
 */
import { chmod, mkdir, readdir, rename, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { logger, type WorkerConfig } from './config';

/** Request directory names the worker creates: the request id, optionally followed by `.<suffix>`. */
const REQUEST_ENTRY = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}(\..+)?$/;

/** One delivery's paths: the request's directories (NVCF layout) and its claim's own spill and zip files. */
export interface RequestDirs {
  assets: string;
  output: string;
  /** Where a large container answer is spilled. */
  spill: string;
  /** Where the result zip is written. */
  zip: string;
}

/** The paths of request `requestId` for the delivery whose claim is `owner`. */
export function requestDirs(config: Pick<WorkerConfig, 'assetDir' | 'outputDir'>, requestId: string, owner: string): RequestDirs {
  return {
    assets: join(config.assetDir, requestId),
    output: join(config.outputDir, requestId),
    spill: join(config.outputDir, `${requestId}.${owner}.response`),
    zip: join(config.outputDir, `${requestId}.${owner}.zip`),
  };
}

/** Removes a delivery's directories and files; failures (a root container's files) are logged, never thrown. */
export async function removeRequestDirs(dirs: RequestDirs): Promise<void> {
  await Promise.all(Object.values(dirs).map((path) => removeDir(path)));
}

/** Removes a request directory; one that cannot be removed (root-owned content) is renamed aside for the next sweep. */
export async function removeDir(path: string): Promise<void> {
  try {
    await rm(path, { recursive: true, force: true });
  } catch (error) {
    const aside = `${path}.stale-${Date.now()}`;
    logger.warn('could not remove a request directory; moving it aside', { path, error: error as Error });
    await rename(path, aside).catch((failure: Error) => logger.warn('could not move it aside either', { path, error: failure }));
  }
}

/** Makes an empty directory the container (any user) may write to. */
export async function freshDir(path: string): Promise<void> {
  await removeDir(path);
  await mkdir(path, { recursive: true });
  // The container may run as another user (NVCF: dir mode 0777); mkdir's mode is subject to umask.
  await chmod(path, 0o777);
}

/**
 * Removes what earlier runs of the worker left in its asset and output
 * directories (it runs no job yet); entries it cannot remove are logged.
 */
export async function sweepRequestDirs(config: Pick<WorkerConfig, 'assetDir' | 'outputDir'>): Promise<void> {
  for (const dir of [config.assetDir, config.outputDir]) {
    const names = await mkdir(dir, { recursive: true })
      .then(() => readdir(dir))
      .catch((error: Error) => {
        logger.warn('could not read a request directory', { dir, error });
        return [] as string[];
      });
    for (const name of names.filter((entry) => REQUEST_ENTRY.test(entry))) {
      await rm(join(dir, name), { recursive: true, force: true }).catch((error: Error) =>
        logger.warn('could not remove a stale request directory', { path: join(dir, name), error }),
      );
    }
  }
}

/** Finished output files, relative to `dir`: everything but `progress` and `*.partial`. */
export async function finishedFiles(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { recursive: true, withFileTypes: true });
  return entries
    .filter((entry) => entry.isFile() && entry.name !== 'progress' && !entry.name.endsWith('.partial'))
    .map((entry) => join(entry.parentPath, entry.name).slice(dir.length + 1).split('\\').join('/'))
    .sort();
}
