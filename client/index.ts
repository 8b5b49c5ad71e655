/**
 * A typed client of the NVCF API as this platform serves it (docs/api.md), for
 * the `nvcf` CLI, tests and any TypeScript program:
 *
 * ```ts
 * const nvcf = new NvcfClient({ baseUrl: 'http://127.0.0.1:8700', apiKey: process.env.NVCF_API_KEY! });
 * const fn = await nvcf.createFunction({ name: 'echo', inferenceUrl: '/echo', containerImage: 'nvcr.io/nvcf-examples/echo:1.0' });
 * await nvcf.deploy(fn.id, fn.versionId, { deploymentSpecifications: [{ gpu: 'LOCAL', minInstances: 1, maxInstances: 1 }] });
 * const outcome = await nvcf.awaitOutcome(await nvcf.invoke(fn.id, { body: { message: 'hi' } }));
 * ```
 *
 * Nothing here restates a shape: request bodies are the input types of the zod
 * schemas the handlers validate with (core/), answers the return types of the
 * functions that render them (lambdas/, imported as types only: none of their
 * code runs here), and every path comes from the route table (core/routes.ts).
 * Errors are thrown as NvcfError, carrying the problem+json answer.
 */
import { request as httpRequest, type IncomingMessage } from 'node:http';
import { request as httpsRequest } from 'node:https';
import type { Readable } from 'node:stream';
import type * as z from 'zod';
import type { ASSET_DESCRIPTION_HEADER, AssetRecord, CreatedAsset, createAssetRequestSchema } from '../core/assets';
import type { deploymentRequestSchema } from '../core/deployment-schemas';
import type { createFunctionRequestSchema, secretsSchema, tagsSchema, versionUpdateSchema } from '../core/function-schemas';
import type { LogsPage, LogsQuery } from '../core/function-logs';
import type { FunctionStatus } from '../core/model';
import { reasonPhrase, type ProblemBody } from '../core/problem';
import type { QueuePosition } from '../core/queues';
import { INVOCATION_SERVICE, ROUTES, type RouteDefinition, type Scope } from '../core/routes';
import type { accountUsage } from '../core/quotas';
import type { rateLimitSchema } from '../core/rate-limits';
import type { addRegistryCredentialSchema, recognizedRegistriesJson, toRegistryCredentialJson, updateRegistryCredentialSchema } from '../core/registry-credentials';
import type { clusterGroupsJson, supportedGpusJson } from '../lambdas/gpus';
import type { keyJson } from '../lambdas/keys';
import type { authFn } from '../lambdas/shared/authorizations';
import type { deploymentJson } from '../lambdas/deployments';
import type { queueEntry } from '../lambdas/queues';
import type { toFunctionJson } from '../lambdas/shared/function-json';

export type CreateFunctionRequest = z.input<typeof createFunctionRequestSchema>;
export type DeploymentRequest = z.input<typeof deploymentRequestSchema>;
export type CreateAssetRequest = z.input<typeof createAssetRequestSchema>;
export type Secrets = z.input<typeof secretsSchema>;
export type Tags = z.input<typeof tagsSchema>;
export type VersionUpdate = z.input<typeof versionUpdateSchema>;
export type RateLimit = z.input<typeof rateLimitSchema>;
export type AddRegistryCredentialRequest = z.input<typeof addRegistryCredentialSchema>;
export type UpdateRegistryCredentialRequest = z.input<typeof updateRegistryCredentialSchema>;
export type RegistryCredential = ReturnType<typeof toRegistryCredentialJson>;
export type RecognizedRegistries = ReturnType<typeof recognizedRegistriesJson>['recognizedRegistries'];
/** NVCF's AuthFn: a function (and version), its owner and the accounts it is shared with. */
export type AuthFn = ReturnType<typeof authFn>;
/** NVCF's KeyDto; `value` only in createKey's answer. */
export type ApiKey = ReturnType<typeof keyJson>;
export type AccountUsage = { accountId: string; quotas: Awaited<ReturnType<typeof accountUsage>> };
/** A new key's description, expiry (ISO 8601) and scopes (the caller's own when left out). */
export interface CreateKeyRequest {
  description: string;
  expiresAt: string;
  scopes?: readonly Scope[];
}

/** NVCF's Function object: one function version. */
export type FunctionVersion = ReturnType<typeof toFunctionJson>;
/** NVCF's Deployment object. */
export type Deployment = ReturnType<typeof deploymentJson>['deployment'];
export type QueueEntry = Awaited<ReturnType<typeof queueEntry>>;
export type ClusterGroups = ReturnType<typeof clusterGroupsJson>;
export type SupportedGpu = ReturnType<typeof supportedGpusJson>[number];
/** A1's answer: the asset and its two ways to upload. */
export type CreatedAssetAnswer = Pick<AssetRecord, 'assetId' | 'contentType' | 'description'> & Pick<CreatedAsset, 'uploadUrl' | 'uploadForm'>;
export type AssetSummary = Pick<AssetRecord, 'assetId' | 'contentType' | 'description'>;
export type AssetDetails = AssetSummary & Pick<AssetRecord, 'createdAt'>;
/** L1's query as it travels: `since` an ISO time or epoch ms, `cursor` the one the previous page carried. */
export type LogsOptions = { [K in keyof LogsQuery]?: string };
export type FunctionLogs = LogsPage & { functionId: string; functionVersionId: string };

/** An answer of the API that is not a success, with its problem+json (or what stood in for it). */
export class NvcfError extends Error {
  readonly status: number;
  readonly title: string;
  readonly detail: string;
  readonly type?: string;
  readonly requestId?: string;

  constructor(problem: Pick<ProblemBody, 'status' | 'title' | 'detail'> & Partial<ProblemBody>) {
    super(`${problem.title} (${problem.status}): ${problem.detail}`);
    this.name = 'NvcfError';
    this.status = problem.status;
    this.title = problem.title;
    this.detail = problem.detail;
    this.type = problem.type;
    this.requestId = problem.requestId;
  }
}

/** The server could not be reached at all (refused, unknown host, reset). */
export class NvcfConnectionError extends Error {
  constructor(url: string, cause: unknown) {
    const reason = (cause as { cause?: { message?: string } })?.cause?.message ?? (cause as Error)?.message ?? String(cause);
    super(`cannot reach ${url}: ${reason}`, { cause });
    this.name = 'NvcfConnectionError';
  }
}

/** One server-sent event as the container wrote it. */
export interface SseEvent {
  event?: string;
  data: string;
  id?: string;
}

/**
 * What an invocation answered: its result, a 202 (queued or running, with the
 * progress the container reported), a large output to download, or an event
 * stream being relayed. A failure is thrown as NvcfError.
 */
export type InvocationOutcome =
  | { kind: 'result'; requestId?: string; status: number; contentType?: string; headers: Headers; body: Buffer }
  | { kind: 'pending'; requestId: string; invocationStatus: string; percentComplete?: number; partialResponse?: unknown }
  | { kind: 'large-output'; requestId?: string; location: string }
  | { kind: 'stream'; requestId?: string; events: AsyncGenerator<SseEvent> };

export interface InvokeOptions {
  /** Pins a version (I2); else any ACTIVE version answers (I1). */
  versionId?: string;
  /** Sent as JSON unless it is a string or bytes. */
  body?: unknown;
  contentType?: string;
  /** NVCF-POLL-SECONDS: how long to wait before a 202; 0 answers 202 at once. */
  pollSeconds?: number;
  /** NVCF-INPUT-ASSET-REFERENCES. */
  assetIds?: readonly string[];
  /** Accept text/event-stream: an SSE answer is relayed event by event. */
  stream?: boolean;
  headers?: Record<string, string>;
  signal?: AbortSignal;
}

export interface ClientOptions {
  /** The API's base URL (stack output ApiUrl, or http://127.0.0.1:8700 locally). */
  baseUrl: string;
  /** Where the invocation routes go (stack output InvocationUrl); the base URL by default. */
  invocationUrl?: string;
  apiKey: string;
}

/** A version's state while it deploys, as `watchDeployment` reports it. */
export interface DeploymentProgress {
  status: FunctionStatus;
  /** Instances that are up and healthy. */
  readyInstances: number;
  /** The instances the deployment asks for at least (its minInstances, summed). */
  minInstances: number;
  healthInfo: NonNullable<Deployment['healthInfo']>;
}

const ROUTES_BY_REF = new Map(ROUTES.map((route) => [route.ref, route]));
/**
 * core/assets.ts's header, typed by it (a different value does not compile): importing the
 * module itself would load the AWS SDK, half a second of every nvcf command's start.
 */
const DESCRIPTION_HEADER: typeof ASSET_DESCRIPTION_HEADER = 'x-amz-meta-nvcf-asset-description';
const JSON_TYPE = /^application\/(?:[\w.+-]+\+)?json\b/i;

function routeOf(ref: string): RouteDefinition {
  const route = ROUTES_BY_REF.get(ref);
  if (!route) throw new Error(`no route ${ref} in core/routes.ts`);
  return route;
}

/** The route's path with its `{param}`s filled in; a missing one is a programming error. */
export function routePath(ref: string, params: Record<string, string> = {}): string {
  return routeOf(ref).path.replace(/\{(\w+)\}/g, (_, name: string) => {
    const value = params[name];
    if (value === undefined) throw new Error(`route ${ref} needs ${name}`);
    return encodeURIComponent(value);
  });
}

/** A non-success answer as NvcfError: its problem+json, or API Gateway's `{"message"}`, or its text. */
async function errorOf(response: Response): Promise<NvcfError> {
  const text = await response.text();
  const requestId = response.headers.get('nvcf-reqid') ?? undefined;
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    parsed = undefined;
  }
  const body = (parsed && typeof parsed === 'object' ? parsed : {}) as Partial<ProblemBody> & { message?: unknown };
  return new NvcfError({
    status: response.status,
    title: typeof body.title === 'string' ? body.title : reasonPhrase(response.status),
    detail: typeof body.detail === 'string' ? body.detail : typeof body.message === 'string' ? body.message : text.trim() || '(no detail)',
    type: body.type,
    requestId: body.requestId ?? requestId,
  });
}

/** Server-sent events of a body as they arrive (the WHATWG event-stream format: fields, then a blank line). */
export async function* readServerSentEvents(body: AsyncIterable<Uint8Array>): AsyncGenerator<SseEvent> {
  const decoder = new TextDecoder();
  let buffered = '';
  let event: { event?: string; id?: string; data?: string[] } = {};
  const dispatch = function* () {
    if (event.data) yield { data: event.data.join('\n'), ...(event.event ? { event: event.event } : {}), ...(event.id ? { id: event.id } : {}) } as SseEvent;
    event = {};
  };
  const line = function* (text: string) {
    if (text === '') return yield* dispatch();
    if (text.startsWith(':')) return; // a comment (keep-alive)
    const colon = text.indexOf(':');
    const field = colon === -1 ? text : text.slice(0, colon);
    const value = colon === -1 ? '' : text.slice(colon + 1).replace(/^ /, '');
    if (field === 'data') (event.data ??= []).push(value);
    else if (field === 'event') event.event = value;
    else if (field === 'id') event.id = value;
  };
  for await (const chunk of body) {
    buffered += decoder.decode(chunk, { stream: true });
    let end: number;
    while ((end = buffered.search(/\r\n|\r|\n/)) !== -1) {
      const text = buffered.slice(0, end);
      buffered = buffered.slice(buffered.startsWith('\r\n', end) ? end + 2 : end + 1);
      yield* line(text);
    }
  }
  buffered += decoder.decode();
  if (buffered) yield* line(buffered);
  yield* dispatch();
}

export class NvcfClient {
  private readonly baseUrl: string;
  private readonly invocationUrl: string;
  private readonly apiKey: string;

  constructor(options: ClientOptions) {
    this.baseUrl = options.baseUrl.replace(/\/+$/, '');
    this.invocationUrl = (options.invocationUrl ?? options.baseUrl).replace(/\/+$/, '');
    this.apiKey = options.apiKey;
  }

  /** A route's URL: invocation routes on the invocation URL, the rest on the base URL. */
  url(ref: string, params: Record<string, string> = {}, query: Record<string, string | undefined> = {}): string {
    const base = routeOf(ref).handler === INVOCATION_SERVICE ? this.invocationUrl : this.baseUrl;
    const search = new URLSearchParams(Object.entries(query).filter((entry): entry is [string, string] => entry[1] !== undefined));
    return `${base}${routePath(ref, params)}${search.size > 0 ? `?${search}` : ''}`;
  }

  private async send(ref: string, init: { params?: Record<string, string>; query?: Record<string, string | undefined>; json?: unknown; headers?: Record<string, string>; body?: RequestInit['body']; signal?: AbortSignal } = {}): Promise<Response> {
    const url = this.url(ref, init.params, init.query);
    const headers: Record<string, string> = { authorization: `Bearer ${this.apiKey}`, ...init.headers };
    let body = init.body;
    if (init.json !== undefined) {
      headers['content-type'] = 'application/json';
      body = JSON.stringify(init.json);
    }
    let response: Response;
    try {
      // manual: a 302 of a large output is an answer to report, not to follow with the API key.
      response = await fetch(url, { method: routeOf(ref).method, headers, body, redirect: 'manual', signal: init.signal });
    } catch (error) {
      if ((error as Error).name === 'AbortError') throw error;
      throw new NvcfConnectionError(url, error);
    }
    if (response.status >= 400) throw await errorOf(response);
    return response;
  }

  private async json<T>(ref: string, init: Parameters<NvcfClient['send']>[1] = {}): Promise<T> {
    return (await (await this.send(ref, init)).json()) as T;
  }

  // Functions (F1–F8, S1)

  async createFunction(request: CreateFunctionRequest): Promise<FunctionVersion> {
    return (await this.json<{ function: FunctionVersion }>('F1', { json: request })).function;
  }

  async createVersion(functionId: string, request: CreateFunctionRequest): Promise<FunctionVersion> {
    return (await this.json<{ function: FunctionVersion }>('F2', { params: { functionId }, json: request })).function;
  }

  /** The caller's function versions (`visibility` as NVCF takes it: authorized, private, public). */
  async listFunctions(options: { visibility?: readonly string[] } = {}): Promise<FunctionVersion[]> {
    const query = { visibility: options.visibility?.join(',') };
    return (await this.json<{ functions: FunctionVersion[] }>('F3', { query })).functions;
  }

  async listVersions(functionId: string): Promise<FunctionVersion[]> {
    return (await this.json<{ functions: FunctionVersion[] }>('F4', { params: { functionId } })).functions;
  }

  async getVersion(functionId: string, functionVersionId: string, options: { includeSecrets?: boolean } = {}): Promise<FunctionVersion> {
    const query = { includeSecrets: options.includeSecrets === undefined ? undefined : String(options.includeSecrets) };
    return (await this.json<{ function: FunctionVersion }>('F5', { params: { functionId, functionVersionId }, query })).function;
  }

  async listFunctionIds(): Promise<string[]> {
    return (await this.json<{ functionIds: string[] }>('F6')).functionIds;
  }

  async deleteVersion(functionId: string, functionVersionId: string): Promise<void> {
    await this.send('F7', { params: { functionId, functionVersionId } });
  }

  /** Replaces the version's tags (an empty list clears them). */
  async updateMetadata(functionId: string, functionVersionId: string, tags: Tags): Promise<FunctionVersion> {
    return (await this.json<{ function: FunctionVersion }>('F8', { params: { functionId, functionVersionId }, json: { tags } })).function;
  }

  /** Replaces the version's whole set of secrets. */
  async updateSecrets(functionId: string, functionVersionId: string, secrets: Secrets): Promise<void> {
    await this.send('S1', { params: { functionId, functionVersionId }, json: { secrets } });
  }

  /** F9: replaces the version's tags and/or rate limit. */
  async updateVersion(functionId: string, functionVersionId: string, update: VersionUpdate): Promise<FunctionVersion> {
    return (await this.json<{ function: FunctionVersion }>('F9', { params: { functionId, functionVersionId }, json: update })).function;
  }

  /** RL1: sets the version's rate limit, e.g. `{ rateLimit: '100-S' }`. */
  async setRateLimit(functionId: string, functionVersionId: string, rateLimit: RateLimit): Promise<void> {
    await this.send('RL1', { params: { functionId, functionVersionId }, json: rateLimit });
  }

  /** RL2: removes the version's rate limit. */
  async deleteRateLimit(functionId: string, functionVersionId: string): Promise<void> {
    await this.send('RL2', { params: { functionId, functionVersionId } });
  }

  /** U1 (our extension): the account's usage against each of its quotas. */
  async accountUsage(): Promise<AccountUsage> {
    return this.json('U1');
  }

  /** L1 (our extension): the stdout/stderr lines of the version's instances; follow by sending back `cursor`. */
  async functionLogs(functionId: string, functionVersionId: string, options: LogsOptions = {}): Promise<FunctionLogs> {
    return this.json('L1', { params: { functionId, functionVersionId }, query: options });
  }

  // Deployments (D1–D4)

  async deploy(functionId: string, functionVersionId: string, request: DeploymentRequest): Promise<Deployment> {
    return (await this.json<{ deployment: Deployment }>('D1', { params: { functionId, functionVersionId }, json: request })).deployment;
  }

  async getDeployment(functionId: string, functionVersionId: string): Promise<Deployment> {
    return (await this.json<{ deployment: Deployment }>('D2', { params: { functionId, functionVersionId } })).deployment;
  }

  async updateDeployment(functionId: string, functionVersionId: string, request: DeploymentRequest): Promise<Deployment> {
    return (await this.json<{ deployment: Deployment }>('D3', { params: { functionId, functionVersionId }, json: request })).deployment;
  }

  /** Undeploys; answers the version, INACTIVE. */
  async undeploy(functionId: string, functionVersionId: string, options: { graceful?: boolean } = {}): Promise<FunctionVersion> {
    const query = { graceful: options.graceful === undefined ? undefined : String(options.graceful) };
    return (await this.json<{ function: FunctionVersion }>('D4', { params: { functionId, functionVersionId }, query })).function;
  }

  /**
   * Follows a deployment until the version is ACTIVE or ERROR, calling
   * `onProgress` with every read (every `intervalMs`); answers the last one.
   */
  async watchDeployment(functionId: string, functionVersionId: string, onProgress: (progress: DeploymentProgress) => void, options: { intervalMs?: number; signal?: AbortSignal } = {}): Promise<DeploymentProgress> {
    const { intervalMs = 1000, signal } = options;
    for (;;) {
      const [version, deployment] = await Promise.all([this.getVersion(functionId, functionVersionId), this.getDeployment(functionId, functionVersionId)]);
      const progress: DeploymentProgress = {
        status: version.status,
        readyInstances: (version.activeInstances ?? []).filter((instance) => instance.instanceStatus === 'ACTIVE').length,
        minInstances: deployment.deploymentSpecifications.reduce((sum, spec) => sum + spec.minInstances, 0),
        healthInfo: deployment.healthInfo ?? [],
      };
      onProgress(progress);
      if (progress.status === 'ACTIVE' || progress.status === 'ERROR' || progress.status === 'INACTIVE') return progress;
      signal?.throwIfAborted();
      await new Promise((resolve) => setTimeout(resolve, intervalMs));
    }
  }

  // Invocation (I1, I2, I3, I6)

  /** Invokes a function (I1, or I2 with a version); see InvocationOutcome for what can come back. */
  async invoke(functionId: string, options: InvokeOptions = {}): Promise<InvocationOutcome> {
    const { versionId, body = {}, pollSeconds, assetIds, stream, signal } = options;
    const headers: Record<string, string> = { ...options.headers };
    if (pollSeconds !== undefined) headers['nvcf-poll-seconds'] = String(pollSeconds);
    if (assetIds?.length) headers['nvcf-input-asset-references'] = assetIds.join(',');
    if (stream) headers.accept = 'text/event-stream';
    const bytes = typeof body === 'string' || body instanceof Uint8Array;
    headers['content-type'] = options.contentType ?? (bytes ? 'application/octet-stream' : 'application/json');
    const response = versionId
      ? await this.send('I2', { params: { functionId, functionVersionId: versionId }, headers, body: bytes ? (body as RequestInit['body']) : JSON.stringify(body), signal })
      : await this.send('I1', { params: { functionId }, headers, body: bytes ? (body as RequestInit['body']) : JSON.stringify(body), signal });
    return outcomeOf(response);
  }

  /** I3: a stored call's state, waiting up to `pollSeconds` (the server's default 5) for news. */
  async status(requestId: string, options: { pollSeconds?: number; signal?: AbortSignal } = {}): Promise<InvocationOutcome> {
    const headers: Record<string, string> = options.pollSeconds === undefined ? {} : { 'nvcf-poll-seconds': String(options.pollSeconds) };
    return outcomeOf(await this.send('I3', { params: { requestId }, headers, signal: options.signal }));
  }

  /** Polls a pending call until it is over, calling `onProgress` with every 202; answers the final outcome. */
  async awaitOutcome(outcome: InvocationOutcome, onProgress: (pending: Extract<InvocationOutcome, { kind: 'pending' }>) => void = () => {}, options: { pollSeconds?: number; signal?: AbortSignal } = {}): Promise<InvocationOutcome> {
    let current = outcome;
    while (current.kind === 'pending') {
      onProgress(current);
      current = await this.status(current.requestId, options);
    }
    return current;
  }

  /** I6: cancels a stored call (again on a cancelled one: fine; on one that is over: NvcfError 409). */
  async cancel(requestId: string): Promise<void> {
    await this.send('I6', { params: { requestId } });
  }

  /** The zip of a large output (a presigned URL: no API key goes with it), as a stream of bytes. */
  async downloadLargeOutput(location: string): Promise<{ size?: number; body: AsyncIterable<Uint8Array> }> {
    let response: Response;
    try {
      response = await fetch(location);
    } catch (error) {
      throw new NvcfConnectionError(new URL(location).origin, error);
    }
    if (!response.ok || !response.body) throw await errorOf(response);
    const size = Number(response.headers.get('content-length') ?? Number.NaN);
    return { size: Number.isFinite(size) ? size : undefined, body: response.body };
  }

  // Assets (A1–A4)

  async createAsset(request: CreateAssetRequest): Promise<CreatedAssetAnswer> {
    return this.json<CreatedAssetAnswer>('A1', { json: request });
  }

  /**
   * Uploads an asset's bytes to its presigned `uploadUrl` (no API key goes
   * there), `size` bytes from `source`, calling `onProgress` as they are sent.
   * Plain node:http: S3 needs the Content-Length of a streamed PUT, which fetch does not send.
   */
  async uploadAsset(asset: CreatedAssetAnswer, source: Readable, size: number, onProgress: (sentBytes: number) => void = () => {}): Promise<void> {
    const url = new URL(asset.uploadUrl);
    const send = url.protocol === 'https:' ? httpsRequest : httpRequest;
    const headers = { 'content-type': asset.contentType, [DESCRIPTION_HEADER]: asset.description, 'content-length': String(size) };
    const response = await new Promise<IncomingMessage>((resolve, reject) => {
      const request = send(url, { method: 'PUT', headers }, resolve);
      request.on('error', (error) => reject(new NvcfConnectionError(url.origin, error)));
      let sent = 0;
      source.on('data', (chunk: Buffer) => {
        sent += chunk.length;
        onProgress(sent);
      });
      source.on('error', reject);
      source.pipe(request);
    });
    const chunks: Buffer[] = [];
    for await (const chunk of response) chunks.push(chunk as Buffer);
    if ((response.statusCode ?? 500) >= 300) {
      const text = Buffer.concat(chunks).toString('utf8');
      const detail = /<Message>([^<]*)<\/Message>/.exec(text)?.[1] ?? (text.trim() || '(no detail)');
      throw new NvcfError({ status: response.statusCode ?? 500, title: `asset upload failed: ${reasonPhrase(response.statusCode ?? 500)}`, detail });
    }
  }

  async listAssets(): Promise<AssetSummary[]> {
    return (await this.json<{ assets: AssetSummary[] }>('A2')).assets;
  }

  async getAsset(assetId: string): Promise<AssetDetails> {
    return (await this.json<{ asset: AssetDetails }>('A3', { params: { assetId } })).asset;
  }

  async deleteAsset(assetId: string): Promise<void> {
    await this.send('A4', { params: { assetId } });
  }

  // Registry credentials (R1–R6)

  async addRegistryCredential(request: AddRegistryCredentialRequest): Promise<RegistryCredential> {
    return (await this.json<{ registryCredential: RegistryCredential }>('R1', { json: request })).registryCredential;
  }

  async listRegistryCredentials(options: { artifactTypes?: readonly string[] } = {}): Promise<RegistryCredential[]> {
    return (await this.json<{ registryCredentials: RegistryCredential[] }>('R2', { query: { artifactType: options.artifactTypes?.join(',') } })).registryCredentials;
  }

  async getRegistryCredential(registryCredentialId: string): Promise<RegistryCredential> {
    return (await this.json<{ registryCredential: RegistryCredential }>('R3', { params: { registryCredentialId } })).registryCredential;
  }

  /** Replaces the secret and/or adds artifact types. */
  async updateRegistryCredential(registryCredentialId: string, update: UpdateRegistryCredentialRequest): Promise<RegistryCredential> {
    return (await this.json<{ registryCredential: RegistryCredential }>('R4', { params: { registryCredentialId }, json: update })).registryCredential;
  }

  async deleteRegistryCredential(registryCredentialId: string): Promise<void> {
    await this.send('R5', { params: { registryCredentialId } });
  }

  async recognizedRegistries(): Promise<RecognizedRegistries> {
    return (await this.json<{ recognizedRegistries: RecognizedRegistries }>('R6')).recognizedRegistries;
  }

  // Authorizations (Z1–Z10): a function shared with other accounts, or one version (when `functionVersionId` is given)

  /** Z1: the parties of every version of the function (inherited ones included). */
  async listAuthorizations(functionId: string): Promise<AuthFn[]> {
    return (await this.json<{ functions: AuthFn[] }>('Z1', { params: { functionId } })).functions;
  }

  /** Z6: one version's parties, its own and the function's. */
  async getVersionAuthorizations(functionId: string, functionVersionId: string): Promise<AuthFn> {
    return (await this.json<{ function: AuthFn }>('Z6', { params: { functionId, functionVersionId } })).function;
  }

  /** Z2/Z7: shares with exactly these accounts (replacing the set). */
  async authorize(functionId: string, ncaIds: readonly string[], functionVersionId?: string): Promise<AuthFn> {
    const json = { authorizedParties: ncaIds.map((ncaId) => ({ ncaId })) };
    return (await this.json<{ function: AuthFn }>(functionVersionId ? 'Z7' : 'Z2', { params: versionParams(functionId, functionVersionId), json })).function;
  }

  /** Z4/Z9: adds one account to an existing set. */
  async addAuthorization(functionId: string, ncaId: string, functionVersionId?: string): Promise<AuthFn> {
    return (await this.json<{ function: AuthFn }>(functionVersionId ? 'Z9' : 'Z4', { params: versionParams(functionId, functionVersionId), json: { authorizedParty: { ncaId } } })).function;
  }

  /** Z5/Z10: removes one account from a set. */
  async removeAuthorization(functionId: string, ncaId: string, functionVersionId?: string): Promise<AuthFn> {
    return (await this.json<{ function: AuthFn }>(functionVersionId ? 'Z10' : 'Z5', { params: versionParams(functionId, functionVersionId), json: { authorizedParty: { ncaId } } })).function;
  }

  /** Z3/Z8: deletes the set (Z3: the function's and every version's own). */
  async deleteAuthorizations(functionId: string, functionVersionId?: string): Promise<AuthFn> {
    return (await this.json<{ function: AuthFn }>(functionVersionId ? 'Z8' : 'Z3', { params: versionParams(functionId, functionVersionId) })).function;
  }

  // API keys (K1–K4)

  /** K1: a key for the caller's account; its `value` is in this answer only. */
  async createKey(request: CreateKeyRequest): Promise<ApiKey> {
    const json = { description: request.description, expires_at: request.expiresAt, ...(request.scopes ? { authorizations: { policies: [{ scopes: request.scopes }] } } : {}) };
    return this.json('K1', { json });
  }

  async listKeys(): Promise<ApiKey[]> {
    return (await this.json<{ keys: ApiKey[] }>('K2')).keys;
  }

  async getKey(keyId: string): Promise<ApiKey> {
    return this.json('K3', { params: { keyId } });
  }

  async revokeKey(keyId: string): Promise<void> {
    await this.send('K4', { params: { keyId } });
  }

  // Queues (Q1–Q3) and GPUs (G1, G2)

  async functionQueues(functionId: string): Promise<{ functionId: string; queues: QueueEntry[] }> {
    return this.json('Q1', { params: { functionId } });
  }

  async versionQueue(functionId: string, functionVersionId: string): Promise<{ functionId: string; queues: QueueEntry[] }> {
    return this.json('Q2', { params: { functionId, functionVersionId } });
  }

  async queuePosition(requestId: string): Promise<QueuePosition> {
    return this.json('Q3', { params: { requestId } });
  }

  async clusterGroups(): Promise<ClusterGroups['clusterGroups']> {
    return (await this.json<ClusterGroups>('G1')).clusterGroups;
  }

  async supportedGpus(): Promise<SupportedGpu[]> {
    return this.json('G2');
  }
}

function versionParams(functionId: string, functionVersionId: string | undefined): Record<string, string> {
  return functionVersionId ? { functionId, functionVersionId } : { functionId };
}

/** Reads an invocation's answer (2xx/3xx; failures were thrown already). */
async function outcomeOf(response: Response): Promise<InvocationOutcome> {
  const requestId = response.headers.get('nvcf-reqid') ?? undefined;
  const contentType = response.headers.get('content-type') ?? undefined;
  if (response.status === 202) {
    const text = await response.text();
    const percent = response.headers.get('nvcf-percent-complete');
    let partialResponse: unknown = text || undefined;
    if (text && JSON_TYPE.test(contentType ?? '')) {
      try {
        partialResponse = JSON.parse(text);
      } catch {
        // kept as text
      }
    }
    return {
      kind: 'pending',
      requestId: requestId!,
      invocationStatus: response.headers.get('nvcf-status') ?? 'pending-evaluation',
      ...(percent !== null ? { percentComplete: Number(percent) } : {}),
      ...(partialResponse !== undefined ? { partialResponse } : {}),
    };
  }
  const location = response.headers.get('location');
  if (response.status === 302 && location) {
    await response.body?.cancel();
    return { kind: 'large-output', requestId, location };
  }
  if (/^text\/event-stream\b/i.test(contentType ?? '') && response.body) {
    return { kind: 'stream', requestId, events: readServerSentEvents(response.body) };
  }
  return { kind: 'result', requestId, status: response.status, contentType, headers: response.headers, body: Buffer.from(await response.arrayBuffer()) };
}
