/**
 * The invocation service (DESIGN.md "Invocation path"): pexec I1/I2, status
 * I3, cancel I6 and direct invocation I5, for callers; the attach server, for
 * workers. `handle` serves one caller request; `listen` gives it an HTTP
 * server of its own (on EKS), while local/ mounts `handle` beside its gateway.
 *
 * Direct invocation is addressed by Host `{functionId}.invocation.<domain>` or
 * `{versionId}.{functionId}.invocation.<domain>`, or by a `function-id` (and
 * optional `function-version-id`) header on any other host; the method, path
 * and query reach the container verbatim.
 */
import { randomUUID } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Duplex } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import * as z from 'zod';
import { invocableVersion } from '../core/access';
import { isGrpcInferenceUrl } from '../core/function-schemas';
import type { ApiKeyRecord } from '../core/api-keys';
import {
  API_GATEWAY_POLL_CAP_SECONDS,
  INVOCATION_DRAIN_SECONDS,
  INVOCATION_URL_POLL_CAP_SECONDS,
  POLL_SECONDS_DEFAULT,
  POLL_SECONDS_MAX,
  POLL_SECONDS_STREAM_DEFAULT,
  SATURATED_RETRY_AFTER_SECONDS,
} from '../core/limits';
import type { FunctionVersionRecord } from '../core/model';
import { FRONT_HEADER, FRONTS, INVOCATION_SERVICE_PATHS } from '../core/names';
import { Problem, badRequest, notFound } from '../core/problem';
import { INVOCATION_SERVICE, matchRoute, type RouteMatch } from '../core/routes';
import { CallRegistry, serveAttach, type AttachServer } from './attach-server';
import { ServiceCaches } from './caches';
import { GrpcFront } from './grpc';
import { serveHttp2Too } from './preface';
import { BodyBudget, acceptsEventStream, authenticate, header, logger, pollSecondsOf, sendProblem } from './http';
import { Invoker, type InvocationTarget } from './invoke';
import { InvocationAdmission } from './rate-limits';
import type { InvocationSettings } from './settings';
import { serveCancel, serveStatus } from './status';

const uuid = z.uuid();

/** A direct call's address: the function, and the version when pinned. */
interface DirectAddress {
  functionId: string;
  versionId?: string;
}

function validId(value: string, what: string): string {
  if (!uuid.safeParse(value).success) throw badRequest(`${what} must be a function${what.includes('version') ? ' version' : ''} id (a UUID), got "${value}"`);
  return value.toLowerCase();
}

export class InvocationService {
  readonly registry = new CallRegistry();
  readonly caches = new ServiceCaches();
  /** Rate limits and concurrency quotas; the gRPC path admits each session through it too. */
  readonly admission = new InvocationAdmission();
  private readonly invoker: Invoker;
  private attachServer: AttachServer | undefined;
  private server: Server | undefined;
  private readonly grpc: GrpcFront;
  private boundAttachPort = 0;
  private inFlight = 0;
  private draining = false;

  constructor(private readonly settings: InvocationSettings) {
    this.invoker = new Invoker({
      registry: this.registry,
      attachHost: settings.attachHost,
      attachPort: () => this.boundAttachPort,
      maxRequestBytes: settings.maxRequestBytes,
      bodies: new BodyBudget(settings.maxHeldRequestBytes),
    });
    this.grpc = new GrpcFront({
      caches: this.caches,
      registry: this.registry,
      versionFor: (caller, functionId, versionId) => this.versionFor(caller, functionId, versionId),
      admit: (callerAccountId, version) => this.admission.admit(callerAccountId, version),
      attachHost: settings.attachHost,
      attachPort: () => this.boundAttachPort,
      idleSeconds: settings.grpcIdleSeconds,
      draining: () => this.draining,
      hold: () => {
        if (this.inFlight >= this.settings.maxInFlight) return `this invocation service instance holds ${this.inFlight} calls, its limit; retry shortly`;
        this.inFlight += 1;
        return undefined;
      },
      letGo: () => (this.inFlight -= 1),
    });
  }

  /** Serves a caller connection that opened with the HTTP/2 preface: gRPC calls (invocation/grpc.ts). */
  acceptHttp2(connection: Duplex): void {
    this.grpc.accept(connection);
  }

  /** Starts the attach server (workers); callers are served through `handle`. */
  async start(): Promise<void> {
    // On loopback (local stack) the attach port stays on loopback; on EKS it listens on the pod's addresses.
    this.attachServer = await serveAttach(this.registry, this.settings.attachHost === '127.0.0.1' ? '127.0.0.1' : '0.0.0.0', this.settings.attachPort);
    this.boundAttachPort = this.attachServer.port;
  }

  get attachPort(): number {
    return this.boundAttachPort;
  }

  /** Whether a request is this service's: an invocation route, or a direct invocation. */
  handles(req: IncomingMessage): boolean {
    try {
      if (this.directAddress(req) !== undefined) return true;
    } catch {
      return true; // a malformed direct address: handle() answers the 4xx
    }
    const match = matchRoute(req.method ?? 'GET', new URL(req.url ?? '/', 'http://localhost').pathname);
    return match !== undefined && 'route' in match && match.route.handler === INVOCATION_SERVICE;
  }

  /** Serves one caller request; never throws. */
  async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://localhost');
    if (this.inFlight >= this.settings.maxInFlight) {
      return sendProblem(res, new Problem(429, `this invocation service instance holds ${this.inFlight} calls, its limit; retry shortly`), url.pathname, randomUUID(), {
        'retry-after': String(SATURATED_RETRY_AFTER_SECONDS),
      });
    }
    this.inFlight += 1;
    try {
      await this.dispatch(req, res, url);
    } catch (error) {
      const problem = error instanceof Problem ? error : new Problem(500, 'internal error of the invocation service');
      // Refused before it became an invocation: an id of its own, to quote when reporting it.
      const requestId = problem.headers['NVCF-REQID'] ?? randomUUID();
      if (problem.status >= 500) logger.error('request failed', { error: error as Error, path: url.pathname, requestId });
      sendProblem(res, problem, url.pathname, requestId);
      // A body left unread (413, early refusals) must not be parsed as the next request.
      if (!req.complete) req.resume();
    } finally {
      this.inFlight -= 1;
    }
  }

  private async dispatch(req: IncomingMessage, res: ServerResponse, url: URL): Promise<void> {
    const direct = this.directAddress(req);
    if (direct) {
      const caller = await authenticate(req, this.caches, 'invoke_function');
      const version = httpInvocable(await this.versionFor(caller, direct.functionId, direct.versionId));
      const stream = acceptsEventStream(req);
      const cap = this.pollCap(req);
      const waitSeconds = Math.min(pollSecondsOf(req, cap, POLL_SECONDS_MAX), cap);
      const route = { method: (req.method ?? 'GET').toUpperCase(), path: `${url.pathname}${url.search}` };
      return this.invokeAdmitted(req, res, caller, { version, route, waitSeconds, stream }, url.pathname);
    }
    const match = matchRoute(req.method ?? 'GET', url.pathname) as RouteMatch | undefined;
    if (!match || !('route' in match) || match.route.handler !== INVOCATION_SERVICE) throw notFound(`no route ${req.method} ${url.pathname}`);
    const caller = await authenticate(req, this.caches, match.route.scope);
    const params = match.pathParameters;
    const cap = this.pollCap(req);
    switch (match.route.ref) {
      case 'I1':
      case 'I2': {
        const stream = acceptsEventStream(req);
        const waitSeconds = Math.min(pollSecondsOf(req, stream ? POLL_SECONDS_STREAM_DEFAULT : POLL_SECONDS_DEFAULT, POLL_SECONDS_MAX), cap);
        const version = httpInvocable(await this.versionFor(caller, validId(params.functionId!, 'path parameter functionId'), params.functionVersionId && validId(params.functionVersionId, 'path parameter functionVersionId')));
        return this.invokeAdmitted(req, res, caller, { version, waitSeconds, stream }, url.pathname);
      }
      case 'I3': {
        const waitSeconds = Math.min(pollSecondsOf(req, POLL_SECONDS_DEFAULT, POLL_SECONDS_MAX), cap);
        return serveStatus(res, caller.accountId, validRequestId(params.requestId!), waitSeconds, url.pathname);
      }
      case 'I6':
        return serveCancel(res, this.registry, caller.accountId, validRequestId(params.requestId!));
      default:
        throw notFound(`no route ${req.method} ${url.pathname}`);
    }
  }

  /** Queues and answers a call once its rate limit and concurrency quotas admit it (invocation/rate-limits.ts). */
  private async invokeAdmitted(req: IncomingMessage, res: ServerResponse, caller: ApiKeyRecord, target: InvocationTarget, instance: string): Promise<void> {
    const { release, standing } = await this.admission.admitWithStanding(caller.accountId, target.version);
    // Set before the answer is written: whichever head the call ends with (200, 202, 302, a problem) carries them.
    if (standing) {
      res.setHeader('ratelimit-limit', String(standing.limit));
      res.setHeader('ratelimit-remaining', String(standing.remaining));
      res.setHeader('ratelimit-reset', String(standing.resetSeconds));
    }
    try {
      await this.invoker.invoke(req, res, caller, target, instance);
    } finally {
      await release();
    }
  }

  /** The longest wait the front the request came through allows (nvcf-api.md §7). */
  private pollCap(req: IncomingMessage): number {
    return header(req, FRONT_HEADER) === FRONTS.apiGateway ? API_GATEWAY_POLL_CAP_SECONDS : INVOCATION_URL_POLL_CAP_SECONDS;
  }

  /** The direct-invocation address of a request, or undefined for an API request. */
  private directAddress(req: IncomingMessage): DirectAddress | undefined {
    const host = (header(req, 'host') ?? '').replace(/:\d+$/, '').toLowerCase();
    const { invocationDomain } = this.settings;
    const functionHeader = header(req, 'function-id');
    const versionHeader = header(req, 'function-version-id');
    if (invocationDomain) {
      const base = `invocation.${invocationDomain.toLowerCase()}`;
      if (host === base) {
        if (!functionHeader) throw badRequest(`requests to ${base} name the function in a function-id header (or use the host {functionId}.${base})`);
        return { functionId: validId(functionHeader.trim(), 'header function-id'), versionId: versionHeader && validId(versionHeader.trim(), 'header function-version-id') };
      }
      if (host.endsWith(`.${base}`)) {
        const labels = host.slice(0, -base.length - 1).split('.');
        if (labels.length > 2) throw notFound(`unknown invocation host ${host}`);
        const [first, second] = labels;
        return labels.length === 2 ? { functionId: validId(second!, 'host label'), versionId: validId(first!, 'host version label') } : { functionId: validId(first!, 'host label') };
      }
    }
    if (functionHeader === undefined) return undefined;
    // An API route with a function-id header is still the API route.
    const match = matchRoute(req.method ?? 'GET', new URL(req.url ?? '/', 'http://localhost').pathname);
    if (match && 'route' in match) return undefined;
    return { functionId: validId(functionHeader.trim(), 'header function-id'), versionId: versionHeader && validId(versionHeader.trim(), 'header function-version-id') };
  }

  /**
   * The version a call goes to (core/access.ts invocableVersion), from the caller's cached access to the
   * function: what every invocation path (pexec, direct, gRPC) asks before queueing a call.
   */
  async versionFor(caller: ApiKeyRecord, functionId: string, versionId?: string): Promise<FunctionVersionRecord> {
    let access = await this.caches.accessTo(caller.accountId, functionId);
    // A version created (or a function registered or shared) since the cache was filled: read again rather than answer 404.
    if (!access || (versionId && !access.versions.some((version) => version.versionId === versionId))) {
      this.caches.forgetAccess(caller.accountId, functionId);
      access = await this.caches.accessTo(caller.accountId, functionId);
    }
    return invocableVersion(access, functionId, versionId);
  }

  /** Serves callers on their own port, with liveness and readiness (EKS). */
  async listen(): Promise<number> {
    this.server = createServer((req, res) => {
      const path = (req.url ?? '/').split('?')[0];
      if (req.method === 'GET' && path === INVOCATION_SERVICE_PATHS.health) return void res.writeHead(200, { 'content-type': 'application/json' }).end('{"status":"ok"}');
      if (req.method === 'GET' && path === INVOCATION_SERVICE_PATHS.ready) {
        return void res.writeHead(this.draining ? 503 : 200, { 'content-type': 'application/json' }).end(JSON.stringify({ status: this.draining ? 'draining' : 'ready' }));
      }
      void this.handle(req, res);
    });
    // Streams may be quiet for long; the fronts enforce their own timeouts.
    this.server.requestTimeout = 0;
    this.server.headersTimeout = 60_000;
    // One port for HTTP/1.1 and gRPC (cleartext HTTP/2 with prior knowledge), told apart by the connection preface.
    serveHttp2Too(this.server, (connection) => this.acceptHttp2(connection));
    await new Promise<void>((resolve, reject) => {
      this.server!.once('error', reject);
      this.server!.listen(this.settings.port, this.settings.listenHost, () => resolve());
    });
    return (this.server.address() as AddressInfo).port;
  }

  /**
   * Graceful stop (SIGTERM): readiness fails so the load balancer stops
   * sending; calls still waiting for an answer become durable (202, their
   * outcome stored); answers being streamed, and gRPC calls under way (their
   * connections told GOAWAY), get up to INVOCATION_DRAIN_SECONDS.
   */
  async drain(graceSeconds = INVOCATION_DRAIN_SECONDS): Promise<void> {
    this.draining = true;
    for (const call of this.registry.all()) call.goDurable();
    this.grpc.goAway();
    const deadline = Date.now() + graceSeconds * 1000;
    while ((this.inFlight > 0 || this.registry.size > 0 || this.grpc.connectionCount > 0) && Date.now() < deadline) await sleep(100);
    await this.close();
  }

  async close(): Promise<void> {
    for (const call of this.registry.all()) call.cancel();
    this.grpc.close();
    this.admission.close();
    await Promise.all([
      new Promise<void>((resolve) => (this.server ? this.server.close(() => resolve()) : resolve())),
      this.attachServer?.close(),
    ]);
    this.server?.closeAllConnections();
  }
}

/** HTTP/1.1 reaches HTTP functions only: a gRPC function's container speaks HTTP/2 gRPC. */
function httpInvocable(version: FunctionVersionRecord): FunctionVersionRecord {
  if (isGrpcInferenceUrl(version.inferenceUrl)) {
    throw badRequest(
      `function ${version.functionId} is a gRPC function (inferenceUrl ${version.inferenceUrl}): call it over gRPC (HTTP/2) on this address with metadata authorization: Bearer <key> and function-id: ${version.functionId}, not over HTTP/1.1`,
    );
  }
  return version;
}

function validRequestId(value: string): string {
  if (!uuid.safeParse(value).success) throw badRequest(`path parameter requestId must be a request id (a UUID), got "${value}"`);
  return value.toLowerCase();
}
