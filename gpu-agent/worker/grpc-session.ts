/**
 * The worker's end of a gRPC session (core/grpc.ts): it attaches back to the
 * invocation service instance holding the caller's connection, serves HTTP/2
 * over the attach stream (the service is the client), and passes each stream
 * to the container over cleartext HTTP/2, headers, messages, trailers and
 * resets as they come. The session holds one of the worker's slots until the
 * service ends it (idle, or the caller gone); its message stays hidden while
 * it lasts and is deleted after, since a session cannot move to another worker.
 * A worker that starts to stop sends GOAWAY on the tunnel: calls under way
 * finish, then the session ends and the caller's next call opens a new one
 * elsewhere.
 */
import { connect, createServer, type ClientHttp2Session, type IncomingHttpHeaders, type ServerHttp2Session, type ServerHttp2Stream } from 'node:http2';
import { forwardStream } from '../../core/grpc';
import type { InvocationMessage } from '../../core/invocation-message';
import { attachTunnel } from './attach';
import { logger } from './config';
import type { Job } from './job';

/** How often the session's message has its visibility renewed, as a share of the lease. */
const RENEW_SHARE = 1 / 3;

/** The container's cleartext HTTP/2 connection, opened again after it fails. */
class ContainerConnection {
  private session: ClientHttp2Session | undefined;

  constructor(
    private readonly baseUrl: string,
    private readonly onUnreachable: () => void,
  ) {}

  get(): ClientHttp2Session {
    if (this.session && !this.session.closed && !this.session.destroyed) return this.session;
    const session = connect(this.baseUrl);
    session.on('error', (error: NodeJS.ErrnoException) => {
      logger.warn('the container\'s HTTP/2 connection failed', { error });
      if (error.code === 'ECONNREFUSED') this.onUnreachable();
    });
    this.session = session;
    return session;
  }

  close(): void {
    this.session?.close();
  }
}

/** Serves a gRPC session message to its end; never throws. */
export async function serveGrpcSession(job: Job, invocation: InvocationMessage): Promise<void> {
  const { requestId: sessionId } = invocation;
  const { config } = job.runtime;
  const attached = await attachTunnel(invocation.replyTo!, sessionId, config.instanceId);
  if (attached.state !== 'live') {
    // Sessions do not outlive the caller's connection to that instance: nothing to retry elsewhere.
    logger.info('gRPC session not served', { sessionId, state: attached.state, ...('reason' in attached ? { reason: attached.reason } : {}) });
    return job.delivery.deleteFinally();
  }
  const tunnel = attached.stream;
  const container = new ContainerConnection(job.runtime.containerBaseUrl, () => job.runtime.onContainerUnreachable());
  const platformMetadata = {
    'nvcf-reqid': sessionId,
    'nvcf-ncaid': invocation.accountId,
    'nvcf-function-id': invocation.functionId,
    'nvcf-function-version-id': invocation.versionId,
  };
  const server = createServer();
  server.on('stream', (stream: ServerHttp2Stream, headers: IncomingHttpHeaders) =>
    forwardStream(stream, headers, container.get(), { add: platformMetadata, unavailable: 'the function container could not be reached' }),
  );
  server.on('sessionError', () => undefined);
  const goAway = () => tunnelSession?.close();
  let tunnelSession: ServerHttp2Session | undefined;
  server.on('session', (session: ServerHttp2Session) => {
    tunnelSession = session;
    if (job.runtime.stopping.aborted) goAway();
  });
  job.runtime.stopping.addEventListener('abort', goAway, { once: true });
  const renew = setInterval(
    () => void job.delivery.changeVisibility(config.leaseSeconds).catch((error: Error) => logger.warn('could not extend the gRPC session message visibility', { sessionId, error })),
    config.leaseSeconds * RENEW_SHARE * 1000,
  );
  logger.info('gRPC session started', { sessionId });
  try {
    await new Promise<void>((resolve) => {
      tunnel.once('close', () => resolve());
      // Worker shutdown, once the grace period is over: the caller's open calls are reset.
      job.interrupt.signal.addEventListener('abort', () => tunnel.close(), { once: true });
      server.emit('connection', tunnel);
    });
  } finally {
    job.runtime.stopping.removeEventListener('abort', goAway);
    clearInterval(renew);
    container.close();
    server.close();
    logger.info('gRPC session ended', { sessionId });
    await job.delivery.deleteFinally();
  }
}
