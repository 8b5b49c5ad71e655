/**
 * gRPC invocation (issue 15; nvcf-api.md §3.5): callers speak HTTP/2 to the
 * invocation service (cleartext with prior knowledge on its port, found by
 * the connection preface; TLS ends at the front on AWS) with metadata
 * `authorization: Bearer <key>`, `function-id` and optional
 * `function-version-id`. Each call is authenticated like any invocation
 * (key cache, scope invoke_function, the caller's access to the function);
 * the calls of one caller connection to one version share a session
 * (core/grpc.ts): one queue message, one worker slot, one tunnel dialled
 * back by the worker, each call one stream through it. A session with no
 * open call for `grpcIdleSeconds` ends and frees its worker.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { connect, createServer, type ClientHttp2Session, type Http2Server, type Http2Session, type IncomingHttpHeaders, type ServerHttp2Session, type ServerHttp2Stream } from 'node:http2';
import type { Duplex } from 'node:stream';
import { SendMessageCommand } from '@aws-sdk/client-sqs';
import * as z from 'zod';
import type { ApiKeyRecord } from '../core/api-keys';
import { sqs } from '../core/aws';
import { isGrpcInferenceUrl } from '../core/function-schemas';
import { GRPC_SESSION_KIND, GRPC_STATUS, HEALTH_CHECK_METHOD, answerGrpcStatus, forwardStream, isGrpcRequest, type GrpcStatus } from '../core/grpc';
import { WORKER_OWNED_HEADERS, type InvocationMessage } from '../core/invocation-message';
import { GRPC_SESSION_ATTACH_SECONDS } from '../core/limits';
import type { FunctionVersionRecord } from '../core/model';
import { Problem } from '../core/problem';
import type { CallRegistry } from './attach-server';
import type { ServiceCaches } from './caches';
import { authenticate, logger } from './http';

const uuid = z.uuid();

/** Metadata the platform reads and the container never sees. */
const CONSUMED_METADATA: ReadonlySet<string> = new Set(['authorization', 'function-id', 'function-version-id', 'host', ...WORKER_OWNED_HEADERS]);

export interface GrpcFrontDeps {
  caches: ServiceCaches;
  registry: CallRegistry;
  /** InvocationService.versionFor: the version a call of this caller goes to. */
  versionFor(caller: ApiKeyRecord, functionId: string, versionId?: string): Promise<FunctionVersionRecord>;
  /** InvocationAdmission.admit: a session counts as one call against rate limits and concurrency quotas; resolves with its release. */
  admit(callerAccountId: string, version: FunctionVersionRecord): Promise<() => Promise<void>>;
  attachHost: string;
  attachPort: () => number;
  idleSeconds: number;
  /** The instance is draining: its own gRPC health check fails, so the load balancer stops sending. */
  draining(): boolean;
  /** Counts a call against the instance's NVCF_MAX_IN_FLIGHT; why not, when the instance is full. */
  hold(): string | undefined;
  /** A held call is over. */
  letGo(): void;
  /** How long calls wait for a worker to take a new session; default GRPC_SESSION_ATTACH_SECONDS. */
  attachWaitSeconds?: number;
}

/** A refusal of a call before it reaches a session. */
class GrpcRefusal extends Error {
  constructor(
    readonly status: GrpcStatus,
    message: string,
  ) {
    super(message);
  }
}

/** The gRPC status of a problem the shared invocation checks raise. */
function statusOfProblem(problem: Problem): GrpcStatus {
  switch (problem.status) {
    case 401:
      return GRPC_STATUS.unauthenticated;
    case 403:
      return GRPC_STATUS.permissionDenied;
    case 404:
      return GRPC_STATUS.notFound;
    case 400:
      // invocableVersion's 400s: the function has no ACTIVE version, or the pinned one is not ACTIVE.
      return GRPC_STATUS.failedPrecondition;
    case 429:
      return GRPC_STATUS.resourceExhausted;
    case 503:
      return GRPC_STATUS.unavailable;
    default:
      return GRPC_STATUS.internal;
  }
}

function metadataValue(headers: IncomingHttpHeaders, name: string): string | undefined {
  const value = headers[name];
  return (Array.isArray(value) ? value[0] : value)?.trim() || undefined;
}

function validId(value: string, what: string): string {
  if (!uuid.safeParse(value).success) throw new GrpcRefusal(GRPC_STATUS.invalidArgument, `metadata ${what} must be a ${what === 'function-id' ? 'function' : 'function version'} id (a UUID), got "${value}"`);
  return value.toLowerCase();
}

/** One caller connection's calls to one version, served by one worker through its tunnel. */
class GrpcSession {
  readonly id = randomUUID();
  private readonly token = randomBytes(24).toString('base64url');
  private readonly tunnel: Promise<ClientHttp2Session>;
  private client: ClientHttp2Session | undefined;
  private attachStream: ServerHttp2Stream | undefined;
  private open = 0;
  private idleTimer: NodeJS.Timeout | undefined;
  private attachTimer: NodeJS.Timeout | undefined;
  private closed = false;
  private fail!: (error: GrpcRefusal) => void;

  constructor(
    private readonly deps: GrpcFrontDeps,
    private readonly caller: ApiKeyRecord,
    private readonly version: FunctionVersionRecord,
    private readonly release: () => Promise<void>,
    private readonly onClosed: () => void,
  ) {
    this.tunnel = new Promise<ClientHttp2Session>((resolve, reject) => {
      this.fail = reject;
      const waitSeconds = deps.attachWaitSeconds ?? GRPC_SESSION_ATTACH_SECONDS;
      this.attachTimer = setTimeout(
        () => reject(new GrpcRefusal(GRPC_STATUS.unavailable, `no instance of function ${version.functionId} version ${version.versionId} took the call within ${waitSeconds} s; retry`)),
        waitSeconds * 1000,
      );
      deps.registry.addTunnel(this.id, {
        token: this.token,
        onAttach: (stream) => {
          clearTimeout(this.attachTimer);
          if (this.closed) return void stream.close();
          this.attachStream = stream;
          // The worker's end of the attach stream is an HTTP/2 server; this side is its client.
          const client = connect('http://nvcf-grpc-session', { createConnection: () => stream });
          client.on('error', (error) => logger.warn('gRPC session tunnel failed', { sessionId: this.id, error }));
          client.on('close', () => this.close());
          // The worker is stopping: calls under way finish; the next ones open a session elsewhere.
          client.on('goaway', () => this.close({ graceful: true }));
          stream.on('close', () => this.close());
          this.client = client;
          resolve(client);
        },
      });
    });
    // Refusals reach each waiting call; unobserved they must not crash the process.
    this.tunnel.catch(() => this.close());
  }

  /** Queues the session's message: the worker that takes it attaches back here. */
  async queue(): Promise<void> {
    const queueUrl = this.version.deployment!.queueUrl!;
    const message: InvocationMessage = {
      requestId: this.id,
      accountId: this.caller.accountId,
      functionId: this.version.functionId,
      versionId: this.version.versionId,
      headers: {},
      body: { kind: 'inline', encoding: 'utf8', data: '' },
      assetIds: [],
      pollSeconds: this.deps.attachWaitSeconds ?? GRPC_SESSION_ATTACH_SECONDS,
      acceptedAt: new Date().toISOString(),
      replyTo: { host: this.deps.attachHost, port: this.deps.attachPort(), token: this.token },
      session: GRPC_SESSION_KIND,
    };
    try {
      await sqs().send(new SendMessageCommand({ QueueUrl: queueUrl, MessageBody: JSON.stringify(message) }));
    } catch (error) {
      logger.error('could not queue a gRPC session', { sessionId: this.id, error: error as Error });
      this.fail(new GrpcRefusal(GRPC_STATUS.unavailable, 'the call could not be queued for the function; retry'));
    }
  }

  /** Passes one call through the session once its worker is attached. */
  async serve(stream: ServerHttp2Stream, headers: IncomingHttpHeaders, arrivedAt: number): Promise<void> {
    this.open += 1;
    clearTimeout(this.idleTimer);
    let client: ClientHttp2Session;
    try {
      client = await this.tunnel;
    } catch (error) {
      const refusal = error as GrpcRefusal;
      answerGrpcStatus(stream, refusal.status, refusal.message);
      return this.callDone();
    }
    if (stream.closed || stream.destroyed) return this.callDone();
    forwardStream(stream, headers, client, {
      drop: CONSUMED_METADATA,
      arrivedAt,
      unavailable: `the instance serving function ${this.version.functionId} went away`,
      onDone: () => this.callDone(),
    });
  }

  private callDone(): void {
    this.open -= 1;
    if (this.open > 0 || this.closed) return;
    this.idleTimer = setTimeout(() => this.close(), this.deps.idleSeconds * 1000);
    this.idleTimer.unref();
  }

  /** Ends the session: the tunnel closes, and the worker's slot is free; `graceful` lets calls under way finish. */
  close({ graceful = false } = {}): void {
    if (this.closed) return;
    this.closed = true;
    clearTimeout(this.idleTimer);
    clearTimeout(this.attachTimer);
    this.fail(new GrpcRefusal(GRPC_STATUS.unavailable, 'the session ended before an instance took it; retry'));
    this.deps.registry.settleTunnel(this.id);
    void this.release();
    this.client?.close();
    this.onClosed();
    if (graceful) return;
    // Streams still open on a closing session are the caller's (its connection went): they end with it.
    setTimeout(() => {
      this.client?.destroy();
      this.attachStream?.close();
    }, 1000).unref();
  }
}

/** The HTTP/2 (gRPC) side of the callers' port. */
export class GrpcFront {
  private readonly server: Http2Server = createServer();
  /** Each caller connection's sessions by caller and version (promised while being admitted). */
  private readonly connections = new Map<Http2Session, Map<string, Promise<GrpcSession>>>();

  constructor(private readonly deps: GrpcFrontDeps) {
    this.server.on('session', (session: ServerHttp2Session) => {
      const sessions = new Map<string, Promise<GrpcSession>>();
      this.connections.set(session, sessions);
      session.on('error', () => undefined);
      session.on('close', () => {
        this.connections.delete(session);
        closeAll(sessions);
      });
    });
    this.server.on('stream', (stream: ServerHttp2Stream, headers: IncomingHttpHeaders) => void this.call(stream, headers));
    this.server.on('sessionError', () => undefined);
  }

  /** Serves a caller connection that opened with the HTTP/2 preface. */
  accept(connection: Duplex): void {
    this.server.emit('connection', connection);
  }

  private async call(stream: ServerHttp2Stream, headers: IncomingHttpHeaders): Promise<void> {
    const full = this.deps.hold();
    if (full) return answerGrpcStatus(stream, GRPC_STATUS.resourceExhausted, full);
    stream.once('close', () => this.deps.letGo());
    try {
      await this.serve(stream, headers);
    } catch (error) {
      if (error instanceof GrpcRefusal) return answerGrpcStatus(stream, error.status, error.message);
      if (error instanceof Problem) return answerGrpcStatus(stream, statusOfProblem(error), error.message);
      logger.error('gRPC call failed before it was queued', { error: error as Error });
      answerGrpcStatus(stream, GRPC_STATUS.internal, 'internal error of the invocation service');
    }
  }

  private async serve(stream: ServerHttp2Stream, headers: IncomingHttpHeaders): Promise<void> {
    const arrivedAt = Date.now();
    // Not addressed to a function: the load balancer's gRPC health check of this instance (lib/invocation-plane.ts).
    if (headers[':path'] === HEALTH_CHECK_METHOD && metadataValue(headers, 'function-id') === undefined) return this.answerOwnHealth(stream);
    stream.on('error', () => undefined);
    if (!isGrpcRequest(headers)) {
      stream.respond({ ':status': 415, 'content-type': 'text/plain; charset=utf-8' });
      stream.end('HTTP/2 on this port is for gRPC calls (POST with content-type application/grpc); use HTTP/1.1 for the API and HTTP invocations\n');
      stream.resume();
      return;
    }
    const { caller, version } = await this.target(headers);
    const sessions = this.connections.get(stream.session!);
    if (!sessions || stream.closed) return;
    const key = JSON.stringify([caller.accountId, version.versionId]);
    let session = sessions.get(key);
    if (!session) {
      const opening: Promise<GrpcSession> = this.open(caller, version, () => sessions.get(key) === opening && sessions.delete(key));
      session = opening;
      sessions.set(key, opening);
      // A refused admission leaves no session behind: the next call asks again.
      opening.catch(() => sessions.get(key) === opening && sessions.delete(key));
    }
    await (await session).serve(stream, headers, arrivedAt);
  }

  /** A new session, admitted and queued. */
  private async open(caller: ApiKeyRecord, version: FunctionVersionRecord, onClosed: () => void): Promise<GrpcSession> {
    const release = await this.deps.admit(caller.accountId, version);
    const session = new GrpcSession(this.deps, caller, version, release, onClosed);
    void session.queue();
    return session;
  }

  /** grpc.health.v1 SERVING while the instance takes calls; UNAVAILABLE while it drains. */
  private answerOwnHealth(stream: ServerHttp2Stream): void {
    if (this.deps.draining()) return answerGrpcStatus(stream, GRPC_STATUS.unavailable, 'this invocation service instance is draining');
    stream.respond({ ':status': 200, 'content-type': 'application/grpc' }, { waitForTrailers: true });
    stream.on('wantTrailers', () => stream.sendTrailers({ 'grpc-status': String(GRPC_STATUS.ok) }));
    // One uncompressed message: HealthCheckResponse{status: SERVING}.
    stream.end(Buffer.from([0, 0, 0, 0, 2, 0x08, 0x01]));
    stream.resume();
  }

  /** The caller and the version of a call, from its metadata; refusals as gRPC statuses. */
  private async target(headers: IncomingHttpHeaders): Promise<{ caller: ApiKeyRecord; version: FunctionVersionRecord }> {
    let caller: ApiKeyRecord;
    try {
      caller = await authenticate({ headers }, this.deps.caches, 'invoke_function');
    } catch (error) {
      if (error instanceof Problem && error.status === 401) throw new GrpcRefusal(GRPC_STATUS.unauthenticated, `${error.message} (metadata authorization)`);
      throw error;
    }
    const functionId = metadataValue(headers, 'function-id');
    if (!functionId) throw new GrpcRefusal(GRPC_STATUS.invalidArgument, 'metadata function-id must name the function to call (and function-version-id may pin a version)');
    const versionId = metadataValue(headers, 'function-version-id');
    const version = await this.deps.versionFor(caller, validId(functionId, 'function-id'), versionId && validId(versionId, 'function-version-id'));
    if (!isGrpcInferenceUrl(version.inferenceUrl)) {
      throw new GrpcRefusal(GRPC_STATUS.failedPrecondition, `function ${version.functionId} is an HTTP function (inferenceUrl ${version.inferenceUrl}): invoke it over HTTP (POST /v2/nvcf/pexec/functions/${version.functionId})`);
    }
    if (version.status !== 'ACTIVE' || !version.deployment?.queueUrl) {
      throw new GrpcRefusal(GRPC_STATUS.failedPrecondition, `Function id '${version.functionId}', version '${version.versionId}': Status ${version.status}, only ACTIVE versions can be invoked`);
    }
    return { caller, version };
  }

  /** Caller connections still open. */
  get connectionCount(): number {
    return this.connections.size;
  }

  /** Draining: every caller connection gets GOAWAY (clients reconnect elsewhere); calls under way finish first. */
  goAway(): void {
    for (const connection of this.connections.keys()) connection.close();
  }

  /** Ends every session and caller connection. */
  close(): void {
    for (const [connection, sessions] of this.connections) {
      closeAll(sessions);
      connection.destroy();
    }
    this.connections.clear();
  }
}

function closeAll(sessions: Map<string, Promise<GrpcSession>>): void {
  for (const session of sessions.values()) session.then((open) => open.close(), () => undefined);
}
