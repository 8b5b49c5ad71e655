/**
 * The command-line forms `nvcf` takes, in the NGC CLI's spelling where it has
 * one: targets `<function-id>:<version-id>`, deployment specifications
 * `gpu:instanceType:min:max[:...]`, `KEY:VALUE` pairs and model references.
 * A malformed value is a UsageError naming the flag and the form it takes.
 */
import type { CreateFunctionRequest, DeploymentRequest, Secrets } from '../client';
import type { DEFAULT_HEALTH_STATUS_CODE, DEFAULT_HEALTH_TIMEOUT, DEFAULT_HEALTH_URI, DEFAULT_INFERENCE_PORT } from '../core/function-schemas';

/**
 * NVCF's health check defaults, typed by core/function-schemas.ts (a different value does not
 * compile): importing that module would load the AWS SDK (through secrets) at every command's start.
 */
const HEALTH_DEFAULTS: {
  port: typeof DEFAULT_INFERENCE_PORT;
  uri: typeof DEFAULT_HEALTH_URI;
  timeout: typeof DEFAULT_HEALTH_TIMEOUT;
  expectedStatusCode: typeof DEFAULT_HEALTH_STATUS_CODE;
} = { port: 8000, uri: '/v2/health/ready', timeout: 'PT10S', expectedStatusCode: 200 };

/** A mistake in the command line: reported with a hint and exit code 2. */
export class UsageError extends Error {
  override name = 'UsageError';
}

export interface Target {
  functionId: string;
  versionId?: string;
}

/** `<function-id>[:<version-id>]`; `needsVersion` when the command acts on one version. */
export function parseTarget(text: string, needsVersion: boolean): Target {
  const [functionId, versionId, ...rest] = text.split(':');
  if (!functionId || rest.length > 0 || versionId === '') throw new UsageError(`"${text}" is not a target: give <function-id>${needsVersion ? ':<version-id>' : '[:<version-id>]'}`);
  if (needsVersion && !versionId) throw new UsageError(`"${text}" names no version: give <function-id>:<version-id> (nvcf function list shows both)`);
  return versionId ? { functionId, versionId } : { functionId };
}

export function versionTarget(text: string): Required<Target> {
  return parseTarget(text, true) as Required<Target>;
}

function integer(flag: string, field: string, text: string): number {
  if (!/^\d+$/.test(text)) throw new UsageError(`${flag}: ${field} must be a whole number, got "${text}"`);
  return Number(text);
}

/** `clusters(a,b)` as the NGC CLI's help writes it, or plain `a,b`; empty is "not given". */
function list(text: string | undefined): string[] | undefined {
  const inner = text?.replace(/^\w+\((.*)\)$/, '$1');
  const names = inner?.split(',').map((name) => name.trim()).filter(Boolean);
  return names?.length ? names : undefined;
}

type Specification = DeploymentRequest['deploymentSpecifications'][number];

const TARGETED_FORM = 'gpu:instanceType:minInstances:maxInstances[:maxRequestConcurrency][:clusters][:regions][:attributes][:preferredOrder]';
const BACKEND_FORM = 'backend:gpu:instanceType:minInstances:maxInstances[:maxRequestConcurrency]';

/** `--targeted-dep-spec gpu:instanceType:min:max[:concurrency][:clusters][:regions][:attributes][:preferredOrder]`. */
export function parseTargetedSpecification(text: string): Specification {
  const flag = '--targeted-dep-spec';
  const parts = text.split(':');
  const [gpu, instanceType, min, max, concurrency, clusters, regions, attributes, order] = parts;
  if (parts.length < 4 || parts.length > 9 || !gpu || !min || !max) throw new UsageError(`${flag} "${text}": give ${TARGETED_FORM}`);
  return {
    gpu,
    ...(instanceType ? { instanceType } : {}),
    minInstances: integer(flag, 'minInstances', min),
    maxInstances: integer(flag, 'maxInstances', max),
    ...(concurrency ? { maxRequestConcurrency: integer(flag, 'maxRequestConcurrency', concurrency) } : {}),
    ...(list(clusters) ? { clusters: list(clusters) } : {}),
    ...(list(regions) ? { regions: list(regions) } : {}),
    ...(list(attributes) ? { attributes: list(attributes) } : {}),
    ...(order ? { preferredOrder: integer(flag, 'preferredOrder', order) } : {}),
  };
}

/** `--dep-spec backend:gpu:instanceType:min:max[:concurrency]`, the NGC CLI's older form. */
export function parseBackendSpecification(text: string): Specification {
  const flag = '--dep-spec';
  const parts = text.split(':');
  const [backend, gpu, instanceType, min, max, concurrency] = parts;
  if (parts.length < 5 || parts.length > 6 || !backend || !gpu || !min || !max) throw new UsageError(`${flag} "${text}": give ${BACKEND_FORM}`);
  return {
    backend,
    gpu,
    ...(instanceType ? { instanceType } : {}),
    minInstances: integer(flag, 'minInstances', min),
    maxInstances: integer(flag, 'maxInstances', max),
    ...(concurrency ? { maxRequestConcurrency: integer(flag, 'maxRequestConcurrency', concurrency) } : {}),
  };
}

export interface DeploymentFlags {
  targetedDepSpec?: string[];
  depSpec?: string[];
  configuration?: string;
}

/** The deployment request of `deploy create|update`. */
export function deploymentRequest(flags: DeploymentFlags): DeploymentRequest {
  const specifications = [...(flags.targetedDepSpec ?? []).map(parseTargetedSpecification), ...(flags.depSpec ?? []).map(parseBackendSpecification)];
  if (specifications.length === 0) throw new UsageError(`give at least one --targeted-dep-spec ${TARGETED_FORM} (nvcf gpus lists the GPUs and instance types)`);
  if (flags.configuration !== undefined) {
    const configuration = parseJson('--configuration', flags.configuration);
    if (!configuration || typeof configuration !== 'object' || Array.isArray(configuration)) throw new UsageError('--configuration must be a JSON object of Helm values');
    for (const spec of specifications) spec.configuration = configuration as Record<string, unknown>;
  }
  return { deploymentSpecifications: specifications };
}

export function parseJson(flag: string, text: string): unknown {
  try {
    return JSON.parse(text);
  } catch (error) {
    throw new UsageError(`${flag} is not JSON: ${(error as Error).message}`);
  }
}

/** `KEY:VALUE`, split at the first colon, as the NGC CLI takes it. */
export function keyValue(flag: string, text: string): { key: string; value: string } {
  const colon = text.indexOf(':');
  if (colon <= 0) throw new UsageError(`${flag} "${text}": give KEY:VALUE`);
  return { key: text.slice(0, colon), value: text.slice(colon + 1) };
}

/** `--model name:version:uri` (the URI may hold colons of its own). */
export function artifact(flag: string, text: string): { name: string; version: string; uri: string } {
  const [name, version, ...uri] = text.split(':');
  if (!name || !version || uri.length === 0 || !uri.join(':')) throw new UsageError(`${flag} "${text}": give NAME:VERSION:URI, e.g. my-model:1:s3://bucket/models/my-model.zip`);
  return { name, version, uri: uri.join(':') };
}

export interface FunctionFlags {
  name: string;
  inferenceUrl: string;
  inferencePort?: number;
  containerImage?: string;
  containerArgs?: string;
  containerEnvironmentVariable?: string[];
  model?: string[];
  resource?: string[];
  helmChart?: string;
  helmChartService?: string;
  apiBodyFormat?: 'PREDICT_V2' | 'CUSTOM';
  functionType?: 'DEFAULT' | 'STREAMING';
  healthUri?: string;
  healthPort?: number;
  healthProtocol?: 'HTTP' | 'gRPC';
  healthTimeout?: string;
  healthExpectedStatusCode?: number;
  description?: string;
  tag?: string[];
  secret?: string[];
}

/**
 * The create request of `function create`, from the NGC CLI's flags; the API
 * checks the rest. A health check given in part gets NVCF's defaults for the other fields.
 */
export function createFunctionRequest(flags: FunctionFlags, jsonSecrets: { name: string; value: Record<string, unknown> }[] = []): CreateFunctionRequest {
  const healthGiven = flags.healthPort !== undefined || flags.healthProtocol !== undefined || flags.healthTimeout !== undefined || flags.healthExpectedStatusCode !== undefined;
  const secrets = secretsOf(flags.secret, jsonSecrets);
  return {
    name: flags.name,
    inferenceUrl: flags.inferenceUrl,
    inferencePort: flags.inferencePort,
    containerImage: flags.containerImage,
    containerArgs: flags.containerArgs,
    containerEnvironment: flags.containerEnvironmentVariable?.map((text) => keyValue('--container-environment-variable', text)),
    models: flags.model?.map((text) => artifact('--model', text)),
    resources: flags.resource?.map((text) => artifact('--resource', text)),
    helmChart: flags.helmChart,
    helmChartServiceName: flags.helmChartService,
    apiBodyFormat: flags.apiBodyFormat,
    functionType: flags.functionType,
    healthUri: flags.healthUri,
    health: healthGiven
      ? {
          protocol: flags.healthProtocol ?? 'HTTP',
          uri: flags.healthUri ?? HEALTH_DEFAULTS.uri,
          port: flags.healthPort ?? flags.inferencePort ?? HEALTH_DEFAULTS.port,
          timeout: flags.healthTimeout ?? HEALTH_DEFAULTS.timeout,
          expectedStatusCode: flags.healthExpectedStatusCode ?? HEALTH_DEFAULTS.expectedStatusCode,
        }
      : undefined,
    description: flags.description,
    tags: flags.tag,
    secrets,
  };
}

/** `--secret NAME:VALUE`s and `--json-secret-file`s as the API takes them; undefined when none is given. */
export function secretsOf(pairs: string[] = [], jsonSecrets: { name: string; value: Record<string, unknown> }[] = []): Secrets | undefined {
  const secrets = [...pairs.map((text) => keyValue('--secret', text)).map(({ key, value }) => ({ name: key, value })), ...jsonSecrets];
  return secrets.length > 0 ? secrets : undefined;
}

const CONTENT_TYPES: Record<string, string> = {
  json: 'application/json',
  txt: 'text/plain',
  csv: 'text/csv',
  png: 'image/png',
  jpg: 'image/jpeg',
  jpeg: 'image/jpeg',
  wav: 'audio/wav',
  mp3: 'audio/mpeg',
  mp4: 'video/mp4',
  zip: 'application/zip',
  pdf: 'application/pdf',
};

/** The media type of an asset by its file's extension (application/octet-stream when unknown). */
export function contentTypeOf(fileName: string): string {
  const extension = /\.([A-Za-z0-9]+)$/.exec(fileName)?.[1]?.toLowerCase();
  return (extension && CONTENT_TYPES[extension]) || 'application/octet-stream';
}

/** An asset's description from its file's name: the API takes printable ASCII only. */
export function assetDescriptionOf(fileName: string): string {
  return fileName.replace(/[^\x20-\x7E]/g, '_').trim() || 'asset';
}
