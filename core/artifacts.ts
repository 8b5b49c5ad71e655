/**
 * Where models and resources come from: one object each in the platform
 * bucket's models/ prefix, the only place function pods may read
 * (gpu-agent/fetch-artifacts.ts downloads them). The API checks a version's
 * artifacts with the same rule when it is deployed.
 */
import type { ArtifactReference } from './model';
import { S3_PREFIX } from './names';

/** The object key of an artifact in `bucket`, or the reason, in words a user can act on, why it has none. */
export function artifactObjectKey(artifact: ArtifactReference, bucket: string): { key: string } | { problem: string } {
  const match = /^s3:\/\/([^/]+)\/(.+)$/.exec(artifact.uri);
  const hint = `upload it to s3://${bucket}/${S3_PREFIX.models}... and use that URI`;
  if (!match) return { problem: `"${artifact.name}" has URI "${artifact.uri}", which is not an s3:// URI; ${hint}` };
  const [, uriBucket, key] = match;
  if (uriBucket !== bucket || !key!.startsWith(S3_PREFIX.models) || key!.split('/').includes('..')) {
    return { problem: `"${artifact.name}" is at ${artifact.uri}, outside s3://${bucket}/${S3_PREFIX.models} where function pods may read; ${hint}` };
  }
  return { key: key! };
}
