/**
 * Where models and resources come from: one object each in the platform
 * bucket's models/ prefix, the only place function pods may read
 * (gpu-agent/fetch-artifacts.ts downloads them), or NGC's model registry,
 * with a URI as NVCF writes it (`v2/org/<org>/models/<name>/versions/<v>/zip`,
 * resources likewise), fetched from NGC's API with the owner's registry
 * credential for NGC. The API checks a version's artifacts with the same
 * rule when it is deployed.
 */
import type { ArtifactReference } from './model';
import { ENV, NGC_API_URL, S3_PREFIX } from './names';

/**
 * An NGC model or resource path: `v2/org/...`, a `models` or `resources`
 * segment, the name, `versions/<v>/zip` (NGC's answer of every file as one
 * zip). Org and team segments are kept as written (the seeds' URIs carry
 * more than the org).
 */
const NGC_ARTIFACT_PATH = /^\/?(v2\/org\/(?:[^/]+\/)+?(models|resources)\/[^/]+\/versions\/[^/]+\/zip)$/;

/** The NGC API path of an artifact (`v2/org/...`) and what it is, or undefined when its URI is not NGC's. */
export function ngcArtifactPath(artifact: ArtifactReference): { path: string; kind: 'MODEL' | 'RESOURCE' } | undefined {
  const match = NGC_ARTIFACT_PATH.exec(artifact.uri);
  if (!match || match[1]!.split('/').some((part) => part === '..' || part === '.')) return undefined;
  return { path: match[1]!, kind: match[2] === 'models' ? 'MODEL' : 'RESOURCE' };
}

/** Base URL of NGC's API (NVCF_NGC_API_URL, for a stand-in; default NGC's own), without a trailing slash. */
export function ngcApiUrl(env: NodeJS.ProcessEnv = process.env): string {
  return (env[ENV.ngcApiUrl] || NGC_API_URL).replace(/\/+$/, '');
}

/** The object key of an artifact in `bucket`, or the reason, in words a user can act on, why it has none. */
export function artifactObjectKey(artifact: ArtifactReference, bucket: string): { key: string } | { problem: string } {
  const match = /^s3:\/\/([^/]+)\/(.+)$/.exec(artifact.uri);
  const hint = `upload it to s3://${bucket}/${S3_PREFIX.models}... and use that URI, or use an NGC URI v2/org/<org>/models/<name>/versions/<version>/zip`;
  if (!match) return { problem: `"${artifact.name}" has URI "${artifact.uri}", which is neither an s3:// URI nor an NGC model or resource URI; ${hint}` };
  const [, uriBucket, key] = match;
  if (uriBucket !== bucket || !key!.startsWith(S3_PREFIX.models) || key!.split('/').includes('..')) {
    return { problem: `"${artifact.name}" is at ${artifact.uri}, outside s3://${bucket}/${S3_PREFIX.models} where function pods may read; ${hint}` };
  }
  return { key: key! };
}
