/**
 * The AWS services of the control plane, emulated in-process on loopback:
 * dynalite (DynamoDB), fauxqs (SQS) and s3rver (S3). Used by `npm start` and by
 * the integration tests; their quirks are in docs/architecture.md ("Emulator behaviour").
 */
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import dynalite from 'dynalite';
import { buildApp, interceptLocalhostDns } from 'fauxqs';
import S3rver from 's3rver';

export const LOCAL_REGION = 'us-east-1';

export interface Emulators {
  /** Variables that point the AWS SDK at the emulators (endpoints, credentials, checksums). */
  env: Record<string, string>;
  stop(): Promise<void>;
}

export interface EmulatorOptions {
  /** Keep DynamoDB and S3 state under this directory; in memory / a temp dir otherwise. */
  dataDir?: string;
}

function listen(server: Server): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve((server.address() as AddressInfo).port));
  });
}

function close(server: Server): Promise<void> {
  return new Promise((resolve) => server.close(() => resolve()));
}

/** Starts the three emulators; `stop()` closes them and removes temporary state. */
export async function startEmulators(options: EmulatorOptions = {}): Promise<Emulators> {
  // Queue URLs are http://sqs.<region>.localhost:<port>/...; resolve *.localhost to loopback in this process.
  interceptLocalhostDns();

  const dynamoPath = options.dataDir ? join(options.dataDir, 'dynamodb') : undefined;
  if (dynamoPath) await mkdir(dynamoPath, { recursive: true });
  const dynamoServer = dynalite({ createTableMs: 0, deleteTableMs: 0, updateTableMs: 0, ...(dynamoPath ? { path: dynamoPath } : {}) });
  const dynamoPort = await listen(dynamoServer);

  const sqsApp = buildApp({ logger: false, defaultRegion: LOCAL_REGION });
  const sqsAddress = await sqsApp.listen({ host: '127.0.0.1', port: 0 });
  const sqsPort = new URL(sqsAddress).port;

  const s3Directory = options.dataDir ? join(options.dataDir, 's3') : await mkdtemp(join(tmpdir(), 'nvcf-s3-'));
  await mkdir(s3Directory, { recursive: true });
  const s3Server = new S3rver({ address: '127.0.0.1', port: 0, silent: true, directory: s3Directory });
  const s3Address = await s3Server.run();

  const env: Record<string, string> = {
    AWS_REGION: LOCAL_REGION,
    AWS_ACCESS_KEY_ID: 'S3RVER',
    AWS_SECRET_ACCESS_KEY: 'S3RVER',
    AWS_ENDPOINT_URL_DYNAMODB: `http://127.0.0.1:${dynamoPort}`,
    AWS_ENDPOINT_URL_SQS: `http://sqs.${LOCAL_REGION}.localhost:${sqsPort}`,
    AWS_ENDPOINT_URL_S3: `http://127.0.0.1:${s3Address.port}`,
    AWS_REQUEST_CHECKSUM_CALCULATION: 'WHEN_REQUIRED',
    AWS_RESPONSE_CHECKSUM_VALIDATION: 'WHEN_REQUIRED',
  };

  return {
    env,
    async stop() {
      await Promise.all([close(dynamoServer), sqsApp.close(), s3Server.close()]);
      if (!options.dataDir) await rm(s3Directory, { recursive: true, force: true });
    },
  };
}
