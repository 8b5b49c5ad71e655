/**
 * A version's secrets as the container reads them: `/var/secrets/secrets.json`
 * (a JSON object name → value, as NVIDIA's helpers expect), written by the
 * `write-secrets` init container before the function container starts and
 * rewritten by the worker whenever the version's secrets change (PUT
 * /v2/nvcf/secrets/...), so running instances see new values without a
 * restart. Every write is atomic: a temporary file in the same directory,
 * then a rename, so a reader sees the old file or the new one, never half.
 *
 * Nothing here logs or reports a value: log lines carry the count of names
 * and the revision only.
 */
import { randomUUID } from 'node:crypto';
import { rename, rm, writeFile } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { Logger } from '@aws-lambda-powertools/logger';
import { getVersionSecrets } from '../core/functions';
import { SERVICE_NAME } from '../core/names';
import { openSecrets } from '../core/secrets';
import { WORKER_ENV } from './worker/config';

/** Where the container finds its secrets on EKS (nvcf-api.md §2.8). */
export const SECRETS_DIR = '/var/secrets';
export const SECRETS_FILE_NAME = 'secrets.json';
export const SECRETS_FILE = `${SECRETS_DIR}/${SECRETS_FILE_NAME}`;

export const WRITE_SECRETS_ROLE = 'write-secrets';

/** Environment of the init container; the worker reads the file path from its own config. */
export const WRITE_SECRETS_ENV = {
  functionId: WORKER_ENV.functionId,
  versionId: WORKER_ENV.versionId,
  file: 'NVCF_SECRETS_FILE',
  terminationLog: 'NVCF_TERMINATION_LOG',
} as const;

const logger = new Logger({ serviceName: SERVICE_NAME, persistentKeys: { role: 'secrets' } });

/** Replaces `file` with `content` in one rename; readable by any user of the pod (the container's user is the image's). */
export async function writeFileAtomically(file: string, content: string): Promise<void> {
  const temporary = join(dirname(file), `.${basename(file)}.${randomUUID().slice(0, 8)}.tmp`);
  try {
    await writeFile(temporary, content, { mode: 0o644 });
    await rename(temporary, file);
  } catch (error) {
    await rm(temporary, { force: true });
    throw error;
  }
}

/** What a delivery wrote: the revision of the set (undefined: the version has none) and how many names. */
export interface Delivered {
  revision: string | undefined;
  names: number;
}

/** Writes the version's current secrets to `file` (`{}` when it has none); throws when they cannot be opened. */
export async function deliverSecrets(functionId: string, versionId: string, file: string): Promise<Delivered> {
  const item = await getVersionSecrets(functionId, versionId);
  if (!item) throw new Error(`function ${functionId} has no version ${versionId}`);
  const content = item.secrets ? await openSecrets(item.secrets, { accountId: item.accountId, functionId, versionId }) : '{}';
  await writeFileAtomically(file, content);
  return { revision: item.secrets?.revision, names: item.secrets?.names.length ?? 0 };
}

/**
 * The worker's part: rewrites the file whenever the version's secrets revision
 * changes, checking every `intervalSeconds` (one consistent read of two attributes).
 */
export class SecretsRefresher {
  private timer: NodeJS.Timeout | undefined;
  private current: string | undefined | null = null;
  private running: Promise<void> = Promise.resolve();

  constructor(
    private readonly functionId: string,
    private readonly versionId: string,
    private readonly file: string,
    private readonly intervalSeconds: number,
  ) {}

  /** Writes the file now (the init step may have run long ago), then keeps it current. */
  async start(): Promise<void> {
    await this.refresh();
    this.timer = setInterval(() => (this.running = this.refresh()), this.intervalSeconds * 1000);
  }

  async stop(): Promise<void> {
    clearInterval(this.timer);
    await this.running;
  }

  /** One check; a failure keeps the file as it is and is retried on the next tick. */
  async refresh(): Promise<void> {
    try {
      const item = await getVersionSecrets(this.functionId, this.versionId);
      if (!item || item.secrets?.revision === this.current) return;
      const delivered = await deliverSecrets(this.functionId, this.versionId, this.file);
      if (this.current !== null) logger.info('secrets file rewritten', { versionId: this.versionId, revision: delivered.revision ?? 'none', names: delivered.names });
      this.current = delivered.revision;
    } catch (error) {
      logger.warn('secrets file not refreshed; keeping the previous one', { versionId: this.versionId, error: (error as Error).message });
    }
  }
}

/** Entry of `gpu-agent write-secrets`, the init container: writes the file once; resolves with the exit code. */
export async function main(env: NodeJS.ProcessEnv = process.env): Promise<number> {
  try {
    const functionId = env[WRITE_SECRETS_ENV.functionId];
    const versionId = env[WRITE_SECRETS_ENV.versionId];
    if (!functionId || !versionId) throw new Error(`${WRITE_SECRETS_ENV.functionId} and ${WRITE_SECRETS_ENV.versionId} must be set`);
    const delivered = await deliverSecrets(functionId, versionId, env[WRITE_SECRETS_ENV.file] || SECRETS_FILE);
    logger.info('secrets file written', { versionId, revision: delivered.revision ?? 'none', names: delivered.names });
    return 0;
  } catch (error) {
    const message = (error as Error).message;
    logger.error('writing the secrets file failed', { error: message });
    // Best effort: off Kubernetes there is no termination log. The reason reaches the version's healthInfo.
    await writeFile(env[WRITE_SECRETS_ENV.terminationLog] || '/dev/termination-log', message).catch(() => undefined);
    return 1;
  }
}
