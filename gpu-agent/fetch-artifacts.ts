/**
 * The `fetch-artifacts` role: the init container of a function pod. It reads
 * the version and downloads each of its `models` into `<dir>/models/<name>`
 * and each of its `resources` into `<dir>/resources/<name>` (dir = /config,
 * which the function container then mounts read-only; locally the process
 * runtime's per-instance `{config}`).
 *
 * Accepted URIs:
 * - `s3://<platform bucket>/models/<key>`, one object each (the pod's identity
 *   may read only that prefix of that bucket). An object whose key ends in
 *   `.tar.gz`, `.tgz` or `.tar` is unpacked with tar, one ending in `.zip`
 *   with unzip (both are in the agent image); any other object is stored as
 *   it is, as `<dir>/models/<name>/<last part of the key>`.
 * - NGC's, as NVCF writes them (`v2/org/<org>/models/<name>/versions/<v>/zip`,
 *   resources likewise): the zip NGC's API answers for that path (base URL
 *   NVCF_NGC_API_URL, default NGC's), with the version owner's NGC registry
 *   credential listing MODEL or RESOURCE as `Authorization: Bearer <key>`,
 *   unpacked. An answer other than 2xx fails naming NGC, the HTTP status and
 *   the credential, so a wrong key shows in the version's healthInfo.
 * Other URIs fail with a message saying what to do instead.
 * Everything fetched is made readable by any user (`chmod -R a+rX`): the
 * fetcher runs as uid 1000, the function container as whatever user its
 * image says, and archives may carry owner-only modes.
 */
import { spawn } from 'node:child_process';
import { createWriteStream } from 'node:fs';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { join, posix } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { GetObjectCommand } from '@aws-sdk/client-s3';
import { Logger } from '@aws-lambda-powertools/logger';
import { s3 } from '../core/aws';
import { artifactObjectKey, ngcApiUrl, ngcArtifactPath } from '../core/artifacts';
import { bucketName } from '../core/config';
import { ARTIFACT_NAME } from '../core/function-schemas';
import { getVersion } from '../core/functions';
import type { ArtifactReference, FunctionVersionRecord } from '../core/model';
import { SERVICE_NAME } from '../core/names';
import { NGC_MODELS_HOST, openRegistryLogin, registryCredentialFor } from '../core/registry-credentials';
import { WORKER_ENV } from './worker/config';

export const FETCH_ARTIFACTS_ROLE = 'fetch-artifacts';

/** Environment of the fetcher; the controller sets it on the init container. */
export const FETCH_ARTIFACTS_ENV = {
  functionId: WORKER_ENV.functionId,
  versionId: WORKER_ENV.versionId,
  /** Where models/ and resources/ go; default /config. */
  directory: 'NVCF_ARTIFACTS_DIR',
  /** Where the reason of a failure is written; default Kubernetes' /dev/termination-log, whence it reaches the version's healthInfo. */
  terminationLog: 'NVCF_TERMINATION_LOG',
} as const;

const logger = new Logger({ serviceName: SERVICE_NAME, persistentKeys: { role: FETCH_ARTIFACTS_ROLE } });

interface Archive {
  suffixes: string[];
  command: (file: string, target: string) => string[];
}

const ARCHIVES: Archive[] = [
  { suffixes: ['.tar.gz', '.tgz'], command: (file, target) => ['tar', '-xzf', file, '-C', target, '--no-same-owner', '--no-same-permissions'] },
  { suffixes: ['.tar'], command: (file, target) => ['tar', '-xf', file, '-C', target, '--no-same-owner', '--no-same-permissions'] },
  { suffixes: ['.zip'], command: (file, target) => ['unzip', '-q', '-o', file, '-d', target] },
];

function fail(message: string): never {
  throw new Error(message);
}

function run(command: string[]): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(command[0]!, command.slice(1), { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString('utf8')));
    child.once('error', reject);
    child.once('close', (code) => (code === 0 ? resolve() : reject(new Error(`${command[0]} exited with code ${code}: ${stderr.trim()}`))));
  });
}

/** Where an artifact's bytes come from, and the key or path that names their format. */
type Download = { body: Readable; key: string };

async function fromBucket(artifact: ArtifactReference, bucket: string): Promise<Download> {
  const found = artifactObjectKey(artifact, bucket);
  if ('problem' in found) fail(found.problem);
  const { key } = found;
  const { Body } = await s3()
    .send(new GetObjectCommand({ Bucket: bucket, Key: key }))
    .catch((error: Error) => fail(`cannot read ${artifact.uri} for "${artifact.name}": ${error.name}: ${error.message}`));
  return { body: Body as Readable, key };
}

/** NGC's zip of the artifact, fetched with the owner's NGC credential (never another account's). */
async function fromNgc(artifact: ArtifactReference, ngc: { path: string; kind: 'MODEL' | 'RESOURCE' }, { accountId, ngcBaseUrl }: Sources): Promise<Download> {
  const credential =
    (await registryCredentialFor(accountId, NGC_MODELS_HOST, ngc.kind)) ??
    fail(`"${artifact.name}" comes from NGC (${artifact.uri}), and the function's account has no registry credential for NGC listing ${ngc.kind}; add one with POST /v2/nvcf/registry-credentials`);
  const { password } = await openRegistryLogin(credential);
  const url = `${ngcBaseUrl}/${ngc.path}`;
  const unreachable = (error: Error): never =>
    fail(`cannot reach NGC (${new URL(url).host}) for "${artifact.name}": ${error.message}${error.cause ? ` (${String((error.cause as Error).message ?? error.cause)})` : ''}`);
  let response = await fetch(url, { headers: { authorization: `Bearer ${password}` }, redirect: 'manual' }).catch(unreachable);
  // NGC answers a download with a redirect to a presigned storage URL: followed without the key, which is NGC's alone.
  const location = response.status >= 300 && response.status < 400 ? response.headers.get('location') : null;
  if (location) {
    await response.body?.cancel();
    response = await fetch(new URL(location, url)).catch(unreachable);
  }
  if (!response.ok || !response.body) {
    const hint =
      response.status === 401 || response.status === 403
        ? `: the key of registry credential ${credential.registryCredentialId} (${credential.registryHostname}) was refused or has no access to this org; replace it with PATCH /v2/nvcf/registry-credentials/${credential.registryCredentialId}`
        : response.status === 404
          ? ': no such model or resource version in that org'
          : '';
    await response.body?.cancel();
    fail(`NGC (${new URL(url).host}) answered HTTP ${response.status} for "${artifact.name}" (${artifact.uri})${hint}`);
  }
  return { body: Readable.fromWeb(response.body as import('node:stream/web').ReadableStream), key: `${ngc.path}.zip` };
}

/** Where a version's artifacts are read: the platform bucket, NGC's API, and whose credentials open the latter. */
interface Sources {
  bucket: string;
  ngcBaseUrl: string;
  accountId: string;
}

async function fetchOne(artifact: ArtifactReference, target: string, sources: Sources): Promise<void> {
  if (!ARTIFACT_NAME.test(artifact.name)) fail(`artifact name "${artifact.name}" must be letters, digits, ".", "_" or "-" (it names a directory under /config)`);
  const ngc = ngcArtifactPath(artifact);
  const { body, key } = ngc ? await fromNgc(artifact, ngc, sources) : await fromBucket(artifact, sources.bucket);
  await rm(target, { recursive: true, force: true });
  await mkdir(target, { recursive: true });
  const archive = ARCHIVES.find(({ suffixes }) => suffixes.some((suffix) => key.endsWith(suffix)));
  const file = archive ? `${target}.download` : join(target, posix.basename(key));
  await pipeline(body, createWriteStream(file));
  if (!archive) return;
  try {
    await run(archive.command(file, target));
  } catch (error) {
    fail(`cannot unpack ${artifact.uri} for "${artifact.name}": ${(error as Error).message}`);
  } finally {
    await rm(file, { force: true });
  }
}

/** Downloads every model and resource of `version` below `directory`. */
export async function fetchArtifacts(
  version: Pick<FunctionVersionRecord, 'accountId' | 'models' | 'resources'>,
  directory: string,
  env: NodeJS.ProcessEnv = process.env,
): Promise<void> {
  const sources: Sources = { bucket: bucketName(env), ngcBaseUrl: ngcApiUrl(env), accountId: version.accountId };
  const wanted = [
    ...(version.models ?? []).map((artifact) => ({ artifact, target: join(directory, 'models', artifact.name) })),
    ...(version.resources ?? []).map((artifact) => ({ artifact, target: join(directory, 'resources', artifact.name) })),
  ];
  for (const { artifact, target } of wanted) {
    logger.info('fetching', { name: artifact.name, uri: artifact.uri, target });
    await fetchOne(artifact, target, sources);
    await run(['chmod', '-R', 'a+rX', target]);
  }
}

/** Entry of `gpu-agent fetch-artifacts`; resolves with the exit code. */
export async function main(env: NodeJS.ProcessEnv = process.env): Promise<number> {
  try {
    const functionId = env[FETCH_ARTIFACTS_ENV.functionId] ?? fail(`${FETCH_ARTIFACTS_ENV.functionId} is not set`);
    const versionId = env[FETCH_ARTIFACTS_ENV.versionId] ?? fail(`${FETCH_ARTIFACTS_ENV.versionId} is not set`);
    const version = (await getVersion(functionId, versionId)) ?? fail(`function ${functionId} has no version ${versionId}`);
    await fetchArtifacts(version, env[FETCH_ARTIFACTS_ENV.directory] || '/config', env);
    logger.info('artifacts fetched', { models: version.models?.length ?? 0, resources: version.resources?.length ?? 0 });
    return 0;
  } catch (error) {
    const message = (error as Error).message;
    logger.error('fetching artifacts failed', { error: error as Error });
    // Best effort: off Kubernetes there is no termination log.
    await writeFile(env[FETCH_ARTIFACTS_ENV.terminationLog] || '/dev/termination-log', message).catch(() => undefined);
    return 1;
  }
}
