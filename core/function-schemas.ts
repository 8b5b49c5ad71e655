/**
 * The bodies of create function / create version (F1/F2, NVCF's
 * CreateFunctionRequest) and of the metadata update (F8), with every rule of
 * nvcf-api.md §2.1. Parsing a create request yields the stored definition of a
 * version with NVCF's defaults filled in, so the API and the worker read the
 * same values.
 *
 * Decisions where NVCF leaves room:
 * - fields NVCF clients may send that this platform does not know (`rateLimit`,
 *   `telemetries`, ...) are ignored, and `null` counts as absent, as in NVCF's
 *   own (Jackson) service;
 * - `description` defaults to the function name, as NVCF's open-source service stores it;
 * - `inferenceUrl` may omit its leading `/` (NVIDIA's examples send
 *   `v2/models/x/infer`); it is stored with the `/`;
 * - the health check defaults to gRPC for every documented gRPC form of
 *   `inferenceUrl` (`/grpc`, `/gRPC`, `grpc.nvcf.nvidia.com:443`), since a gRPC
 *   container cannot answer an HTTP health check.
 */
import * as z from 'zod';
import {
  MAX_DESCRIPTION_LENGTH,
  MAX_ENVIRONMENT_NAME_LENGTH,
  MAX_ENVIRONMENT_VARIABLES,
  MAX_HEALTH_TIMEOUT_SECONDS,
  PLATFORM_ENVIRONMENT_PREFIX,
  MAX_NAME_LENGTH,
  MAX_SECRET_NAME_LENGTH,
  MAX_SECRET_VALUE_LENGTH,
  MAX_SECRETS,
  MAX_SECRETS_FILE_BYTES,
  MAX_TAG_LENGTH,
  MAX_TAGS,
  MAX_URI_LENGTH,
  RESERVED_CONTAINER_PORTS,
} from './limits';
import type { FunctionVersionRecord } from './model';
import { rateLimitSchema } from './rate-limits';
import { secretsDocument, type SecretEntry } from './secrets';

/** NVCF's own wording for the artifact rule, which clients match on. */
export const ONE_OF_ARTIFACTS_MESSAGE =
  "Invalid request: One of the following properties 'containerImage', 'models', or 'helmChart' must be specified in the payload";

export const DEFAULT_INFERENCE_PORT = 8000;
export const DEFAULT_HEALTH_URI = '/v2/health/ready';
export const DEFAULT_HEALTH_TIMEOUT = 'PT10S';
export const DEFAULT_HEALTH_STATUS_CODE = 200;
/** The inferenceUrl NVIDIA's hosted docs give gRPC container functions. */
export const GRPC_INFERENCE_URL = 'grpc.nvcf.nvidia.com:443';

const NAME = /^[a-z0-9A-Z][a-z0-9A-Z\-_]*$/;
const TAG = /^[a-zA-Z0-9\-_:=]+$/;
const SECRET_NAME = /^[a-z0-9A-Z][a-z0-9A-Z_.\-]*$/;
/** An absolute URL path (RFC 3986 path characters, no query or fragment). */
const ABSOLUTE_PATH = /^\/[A-Za-z0-9\-._~!$&'()*+,;=:@%/]*$/;
/** A relative path whose segments cannot be mistaken for a scheme or a host:port. */
const RELATIVE_PATH = /^[A-Za-z0-9\-._~!$&'()*+,;=@%][A-Za-z0-9\-._~!$&'()*+,;=@%/]*$/;
/** A container image reference: `[registry[:port]/]repository[:tag][@sha256:digest]`, lower-case repository. */
const IMAGE_REFERENCE =
  /^[a-z0-9]+(?:[._-][a-z0-9]+)*(?::[0-9]{1,5})?(?:\/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(?:@sha256:[a-f0-9]{64})?$/;
/** ISO-8601 duration in days, hours, minutes and seconds, e.g. PT10S or PT1M30S. */
const DURATION = /^P(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+(?:\.\d+)?)S)?)?$/;

/** Seconds of an ISO-8601 duration as `health.timeout` accepts it (PT10S → 10); NaN when it is not one. */
export function durationSeconds(duration: string): number {
  const match = DURATION.exec(duration);
  if (!match || duration === 'P' || duration.endsWith('T')) return Number.NaN;
  const [, days, hours, minutes, seconds] = match;
  return Number(days ?? 0) * 86400 + Number(hours ?? 0) * 3600 + Number(minutes ?? 0) * 60 + Number(seconds ?? 0);
}

/** True for the inferenceUrl forms that mark a gRPC function. */
export function isGrpcInferenceUrl(inferenceUrl: string): boolean {
  return inferenceUrl.toLowerCase() === '/grpc' || inferenceUrl === GRPC_INFERENCE_URL;
}


const port = z.number().int('must be an integer').min(1, 'must be from 1 to 65535').max(65535, 'must be from 1 to 65535');

const uriString = z.string().min(1, 'must not be empty').max(MAX_URI_LENGTH, `must be at most ${MAX_URI_LENGTH} characters`);

const inferenceUrl = uriString
  .refine((url) => url === GRPC_INFERENCE_URL || ABSOLUTE_PATH.test(url) || RELATIVE_PATH.test(url), {
    error: `must be the URL path the container serves inference on, e.g. /echo (or ${GRPC_INFERENCE_URL} for a gRPC function)`,
  })
  .transform((url) => (url === GRPC_INFERENCE_URL || url.startsWith('/') ? url : `/${url}`));

const path = uriString.regex(ABSOLUTE_PATH, 'must be a URL path starting with /, e.g. /v2/health/ready');

const platformPortMessage = `ports ${RESERVED_CONTAINER_PORTS.join(' and ')} are reserved for the platform`;
const containerPort = port.refine((value) => !RESERVED_CONTAINER_PORTS.includes(value), { error: platformPortMessage });

const healthSchema = z
  .object(
    {
      protocol: z.enum(['HTTP', 'gRPC'], { error: 'must be HTTP or gRPC' }),
      uri: uriString.regex(/^\S+$/, 'must not contain whitespace'),
      port: containerPort,
      timeout: z.string().refine((timeout) => durationSeconds(timeout) > 0 && durationSeconds(timeout) <= MAX_HEALTH_TIMEOUT_SECONDS, {
        error: `must be a positive ISO-8601 duration of at most ${MAX_HEALTH_TIMEOUT_SECONDS} seconds, such as PT10S`,
      }),
      expectedStatusCode: z.number().int('must be an integer').min(100, 'must be an HTTP status code').max(599, 'must be an HTTP status code'),
    },
    { error: 'must be an object {protocol, uri, port, timeout, expectedStatusCode}' },
  )
  .superRefine((health, ctx) => {
    // The worker and the readiness probe call it on the container: a path, never a URL of another host.
    if (health.protocol === 'HTTP' && !ABSOLUTE_PATH.test(health.uri) && !RELATIVE_PATH.test(health.uri)) {
      ctx.addIssue({ code: 'custom', path: ['uri'], message: 'must be the URL path the container answers health checks on, e.g. /v2/health/ready' });
    }
  })
  .transform((health) => (health.protocol === 'HTTP' && !health.uri.startsWith('/') ? { ...health, uri: `/${health.uri}` } : health));

/** Names a directory under /config/models or /config/resources. */
export const ARTIFACT_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;
/** Environment variable names as Kubernetes and POSIX shells take them. */
const ENVIRONMENT_NAME = /^[A-Za-z_][A-Za-z0-9_.-]*$/;
/** Kubernetes Service names (DNS-1035 labels): the worker of a Helm function calls http://<name>.<namespace>.svc. */
const SERVICE_NAME = /^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$/;

const artifactsSchema = z
  .array(
    z.object({
      name: z.string().regex(ARTIFACT_NAME, 'must be 1 to 128 letters, digits, ".", "_" or "-", starting with a letter or digit (it names a directory under /config)'),
      version: z.string().min(1, 'must not be empty').max(MAX_NAME_LENGTH, `must be at most ${MAX_NAME_LENGTH} characters`),
      uri: uriString,
    }),
  )
  .superRefine((artifacts, ctx) => {
    const seen = new Set<string>();
    artifacts.forEach((artifact, i) => {
      if (seen.has(artifact.name)) ctx.addIssue({ code: 'custom', path: [i, 'name'], message: `duplicate name "${artifact.name}"; names must be unique` });
      seen.add(artifact.name);
    });
  });

const containerEnvironmentSchema = z
  .array(
    z.object({
      key: z
        .string()
        .max(MAX_ENVIRONMENT_NAME_LENGTH, `must be at most ${MAX_ENVIRONMENT_NAME_LENGTH} characters`)
        .regex(ENVIRONMENT_NAME, 'must be an environment variable name: letters, digits, "_", "." or "-", not starting with a digit')
        .refine((key) => !key.startsWith(PLATFORM_ENVIRONMENT_PREFIX), { error: `names starting with ${PLATFORM_ENVIRONMENT_PREFIX} are set by the platform` }),
      value: z
        .string()
        .max(MAX_SECRET_VALUE_LENGTH, `must be at most ${MAX_SECRET_VALUE_LENGTH} characters`)
        .refine((value) => !value.includes('\0'), { error: 'must not contain NUL characters' }),
    }),
  )
  .max(MAX_ENVIRONMENT_VARIABLES, `at most ${MAX_ENVIRONMENT_VARIABLES} variables are allowed`)
  .superRefine((variables, ctx) => {
    const seen = new Set<string>();
    variables.forEach((variable, i) => {
      if (seen.has(variable.key)) ctx.addIssue({ code: 'custom', path: [i, 'key'], message: `duplicate key "${variable.key}"` });
      seen.add(variable.key);
    });
  });

/** `tags` of a create request and of the metadata update. */
export const tagsSchema = z
  .array(
    z
      .string()
      .max(MAX_TAG_LENGTH, `must be at most ${MAX_TAG_LENGTH} characters`)
      .regex(TAG, 'must be 1 or more of the characters a-z A-Z 0-9 - _ : ='),
  )
  .max(MAX_TAGS, `at most ${MAX_TAGS} tags are allowed`);

/**
 * `secrets` of a create request and of the secrets update: names as NVCF's open-source
 * service takes them, values a string or a JSON object (kept as given: the file holds
 * the object). Messages never quote a value.
 */
export const secretsSchema = z
  .array(
    z.object({
      name: z
        .string()
        .min(1, 'must not be empty')
        .max(MAX_SECRET_NAME_LENGTH, `must be at most ${MAX_SECRET_NAME_LENGTH} characters`)
        .regex(SECRET_NAME, 'must start with a letter or digit and contain only letters, digits, _ . -'),
      value: z
        .union([z.string(), z.record(z.string(), z.unknown())], { error: 'must be a string or a JSON object' })
        .superRefine((value, ctx) => {
          const length = typeof value === 'string' ? value.length : JSON.stringify(value).length;
          if (length === 0) ctx.addIssue({ code: 'custom', message: 'must not be empty' });
          if (length > MAX_SECRET_VALUE_LENGTH) ctx.addIssue({ code: 'custom', message: `must be at most ${MAX_SECRET_VALUE_LENGTH} characters` });
        }),
    }),
  )
  .max(MAX_SECRETS, `at most ${MAX_SECRETS} secrets are allowed per function version`)
  .superRefine((secrets, ctx) => {
    const seen = new Set<string>();
    secrets.forEach((secret, i) => {
      if (seen.has(secret.name)) ctx.addIssue({ code: 'custom', path: [i, 'name'], message: `duplicate secret name "${secret.name}"` });
      seen.add(secret.name);
    });
    const bytes = Buffer.byteLength(secretsDocument(secrets as SecretEntry[]), 'utf8');
    if (bytes > MAX_SECRETS_FILE_BYTES) {
      ctx.addIssue({ code: 'custom', message: `together the secrets make a ${bytes}-byte secrets.json; at most ${MAX_SECRETS_FILE_BYTES} bytes are allowed per function version` });
    }
  });

/** The body of the secrets update: `{"secrets": [{name, value}]}` replaces the version's set (an empty list clears it). */
export const updateSecretsRequestSchema = z.object({ secrets: secretsSchema }, { error: 'must be a JSON object {"secrets": [{"name": ..., "value": ...}]}' });

/** The parts of a version record a create request defines (ids, owner, status and timestamps come from the platform). */
export type FunctionDefinition = Omit<FunctionVersionRecord, 'functionId' | 'versionId' | 'accountId' | 'status' | 'createdAt' | 'updatedAt' | 'deployment' | 'secrets'> & {
  /** In plain text only until createVersion seals them. */
  secrets?: SecretEntry[];
};

/** Absent, null and empty lists are all "not given". */
function given<T>(list: T[] | null | undefined): T[] | undefined {
  return list && list.length > 0 ? list : undefined;
}

const HELM_EXCLUDES = ['containerImage', 'containerArgs', 'containerEnvironment'] as const;

/** The body of F1 and F2, parsed into the stored definition with NVCF's defaults. */
export const createFunctionRequestSchema = z
  .object(
    {
      name: z
        .string()
        .min(1, 'must not be empty')
        .max(MAX_NAME_LENGTH, `must be at most ${MAX_NAME_LENGTH} characters`)
        .regex(NAME, 'must start with a letter or digit and contain only letters, digits, - and _'),
      inferenceUrl,
      inferencePort: containerPort.nullish(),
      containerImage: uriString.regex(IMAGE_REFERENCE, 'must be a container image reference such as nvcr.io/org/image:tag').nullish(),
      containerArgs: z.string().max(MAX_URI_LENGTH, `must be at most ${MAX_URI_LENGTH} characters`).nullish(),
      containerEnvironment: containerEnvironmentSchema.nullish(),
      models: artifactsSchema.nullish(),
      resources: artifactsSchema.nullish(),
      helmChart: uriString.regex(/^(https?|oci):\/\/\S+$/, 'must be an http(s):// or oci:// URL of a Helm chart').nullish(),
      helmChartServiceName: z
        .string()
        .regex(SERVICE_NAME, "must be the name of the chart's Kubernetes Service: at most 63 lower-case letters, digits and '-', starting with a letter")
        .nullish(),
      apiBodyFormat: z.enum(['PREDICT_V2', 'CUSTOM'], { error: 'must be PREDICT_V2 or CUSTOM' }).nullish(),
      functionType: z.enum(['DEFAULT', 'STREAMING'], { error: 'must be DEFAULT or STREAMING' }).nullish(),
      healthUri: path.nullish(),
      health: healthSchema.nullish(),
      description: z.string().max(MAX_DESCRIPTION_LENGTH, `must be at most ${MAX_DESCRIPTION_LENGTH} characters`).nullish(),
      tags: tagsSchema.nullish(),
      secrets: secretsSchema.nullish(),
      rateLimit: rateLimitSchema.nullish(),
    },
    { error: 'must be a JSON object' },
  )
  .superRefine((request, ctx) => {
    if (!request.containerImage && !given(request.models) && !request.helmChart) {
      ctx.addIssue({ code: 'custom', message: ONE_OF_ARTIFACTS_MESSAGE });
    }
    if (request.helmChart) {
      for (const field of HELM_EXCLUDES) {
        if (request[field] !== undefined && request[field] !== null) {
          ctx.addIssue({ code: 'custom', path: [field], message: 'must not be given together with helmChart (the chart defines its containers)' });
        }
      }
      if (!request.helmChartServiceName) {
        ctx.addIssue({ code: 'custom', path: ['helmChartServiceName'], message: 'is required together with helmChart' });
      }
    } else if (request.helmChartServiceName) {
      ctx.addIssue({ code: 'custom', path: ['helmChartServiceName'], message: 'is only allowed together with helmChart' });
    }
  })
  .transform((request): FunctionDefinition => {
    const inferencePort = request.inferencePort ?? DEFAULT_INFERENCE_PORT;
    const health = request.health ?? {
      protocol: isGrpcInferenceUrl(request.inferenceUrl) ? 'gRPC' : 'HTTP',
      uri: request.healthUri ?? DEFAULT_HEALTH_URI,
      port: inferencePort,
      timeout: DEFAULT_HEALTH_TIMEOUT,
      expectedStatusCode: DEFAULT_HEALTH_STATUS_CODE,
    };
    return {
      name: request.name,
      functionType: request.functionType ?? 'DEFAULT',
      apiBodyFormat: request.apiBodyFormat ?? 'CUSTOM',
      inferenceUrl: request.inferenceUrl,
      inferencePort,
      healthUri: request.healthUri ?? health.uri,
      health,
      containerImage: request.containerImage ?? undefined,
      containerArgs: request.containerArgs ?? undefined,
      containerEnvironment: given(request.containerEnvironment),
      models: given(request.models),
      resources: given(request.resources),
      helmChart: request.helmChart ?? undefined,
      helmChartServiceName: request.helmChartServiceName ?? undefined,
      description: request.description ?? request.name,
      tags: given(request.tags),
      secrets: given(request.secrets),
      rateLimit: request.rateLimit ?? undefined,
    };
  });

/** The body of F8: `{"tags": [...]}` replaces the version's tags (an empty list clears them). */
export const metadataUpdateSchema = z.object({ tags: tagsSchema }, { error: 'must be a JSON object {"tags": [...]}' });

/**
 * The body of F9 (open-source NVCF's UpdateFunctionRequest): `tags` replaces the
 * tags, `rateLimit` the rate limit; at least one of them. NVCF's `modelUpdates`
 * and `llmInvocationConfig` concern LLM functions, which this platform does not run.
 */
export const versionUpdateSchema = z
  .object(
    {
      tags: tagsSchema.optional(),
      rateLimit: rateLimitSchema.optional(),
      modelUpdates: z.undefined({ error: 'is not supported: this platform has no LLM functions' }).optional(),
      llmInvocationConfig: z.undefined({ error: 'is not supported: this platform has no LLM functions' }).optional(),
    },
    { error: 'must be a JSON object {"tags"?: [...], "rateLimit"?: {...}}' },
  )
  .refine((update) => update.tags !== undefined || update.rateLimit !== undefined, 'give at least one of tags and rateLimit');
