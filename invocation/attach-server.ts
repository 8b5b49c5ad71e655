/**
 * The calls this instance holds, and the HTTP/2 server workers attach to
 * (core/attach.ts). A call that is over is remembered for a while as a
 * tombstone, so that a late or duplicate delivery learns it has nothing to do;
 * past that, `unknown` sends the worker to the durable store, which decides.
 */
import { timingSafeEqual } from 'node:crypto';
import { createServer, type Http2Server, type IncomingHttpHeaders, type ServerHttp2Session, type ServerHttp2Stream } from 'node:http2';
import type { AddressInfo } from 'node:net';
import { ATTACH_STATE_HEADER, ATTACH_TOKEN_HEADER, type AttachState } from '../core/attach';
import { INVOCATION_SERVICE_PATHS } from '../core/names';
import type { CallPhase, LiveCall } from './live-call';

/** How long a settled call is remembered. */
const TOMBSTONE_MS = 15 * 60_000;
const MAX_TOMBSTONES = 100_000;

const STATUS_OF: Record<AttachState, number> = { live: 200, held: 409, finished: 410, canceled: 410, durable: 410, unknown: 404 };

/** What a worker attaching to a call in this phase is told (a queued call is attached to instead). */
function stateOf(phase: CallPhase): AttachState {
  switch (phase) {
    case 'queued':
    case 'attached':
    case 'responding':
    case 'persisting':
      return 'held';
    case 'done':
      return 'finished';
    default:
      return phase;
  }
}

function sameToken(a: string, b: string): boolean {
  const left = Buffer.from(a);
  const right = Buffer.from(b);
  return left.length === right.length && timingSafeEqual(left, right);
}

/** A gRPC session waiting for its worker (invocation/grpc.ts): takes the attach stream as its tunnel. */
export interface TunnelWaiter {
  token: string;
  /** The worker attached: the stream is the session's tunnel from now on. */
  onAttach(stream: ServerHttp2Stream): void;
}

export class CallRegistry {
  private readonly live = new Map<string, LiveCall>();
  private readonly tunnels = new Map<string, TunnelWaiter>();
  private readonly tombstones = new Map<string, { state: AttachState; token: string; until: number }>();

  /** A gRPC session waits for its worker under `sessionId`. */
  addTunnel(sessionId: string, waiter: TunnelWaiter): void {
    this.tunnels.set(sessionId, waiter);
  }

  /** The session is over (or attached): a later attach learns it has nothing to do. */
  settleTunnel(sessionId: string): void {
    const waiter = this.tunnels.get(sessionId);
    if (!waiter) return;
    this.tunnels.delete(sessionId);
    this.tombstones.set(sessionId, { state: 'finished', token: waiter.token, until: Date.now() + TOMBSTONE_MS });
  }

  add(call: LiveCall): void {
    this.live.set(call.requestId, call);
  }

  get(requestId: string): LiveCall | undefined {
    return this.live.get(requestId);
  }

  get size(): number {
    return this.live.size;
  }

  all(): LiveCall[] {
    return [...this.live.values()];
  }

  /** The call is over: keep what a later attach must be told. */
  settle(call: LiveCall): void {
    if (this.live.get(call.requestId) !== call) return;
    this.live.delete(call.requestId);
    const state = stateOf(call.phase);
    this.tombstones.set(call.requestId, { state, token: call.options.token, until: Date.now() + TOMBSTONE_MS });
    if (this.tombstones.size > MAX_TOMBSTONES) this.tombstones.delete(this.tombstones.keys().next().value!);
  }

  /** Serves one attach stream. */
  attach(requestId: string, token: string, stream: ServerHttp2Stream): void {
    if (stream.destroyed) return;
    const tunnel = this.tunnels.get(requestId);
    if (tunnel && sameToken(tunnel.token, token)) {
      this.settleTunnel(requestId);
      stream.respond({ ':status': 200, [ATTACH_STATE_HEADER]: 'live' });
      tunnel.onAttach(stream);
      return;
    }
    const call = this.live.get(requestId);
    let state: AttachState;
    if (call && sameToken(call.options.token, token)) {
      if (call.phase === 'queued') {
        // The head goes first: attach() writes the body frames at once, and a write would send a bare 200 head.
        stream.respond({ ':status': 200, [ATTACH_STATE_HEADER]: 'live' });
        call.attach(stream);
        return;
      }
      state = stateOf(call.phase);
    } else {
      const tombstone = this.tombstones.get(requestId);
      state = tombstone && tombstone.until > Date.now() && sameToken(tombstone.token, token) ? tombstone.state : 'unknown';
    }
    stream.respond({ ':status': STATUS_OF[state], [ATTACH_STATE_HEADER]: state }, { endStream: true });
    stream.resume();
  }
}

const ATTACH_PREFIX = `${INVOCATION_SERVICE_PATHS.attach}/`;

export interface AttachServer {
  port: number;
  /** Stops listening and ends every worker session. */
  close(): Promise<void>;
}

/** Listens for workers on host:port (0: any free port). */
export async function serveAttach(registry: CallRegistry, host: string, port: number): Promise<AttachServer> {
  const server: Http2Server = createServer();
  const sessions = new Set<ServerHttp2Session>();
  server.on('session', (session: ServerHttp2Session) => {
    sessions.add(session);
    session.on('close', () => sessions.delete(session));
  });
  server.on('stream', (stream: ServerHttp2Stream, headers: IncomingHttpHeaders) => {
    stream.on('error', () => undefined);
    const path = String(headers[':path'] ?? '');
    const token = headers[ATTACH_TOKEN_HEADER];
    if (headers[':method'] !== 'POST' || !path.startsWith(ATTACH_PREFIX) || typeof token !== 'string') {
      stream.respond({ ':status': 400 }, { endStream: true });
      return;
    }
    registry.attach(path.slice(ATTACH_PREFIX.length), token, stream);
  });
  // A worker that stops reading must not hold the session's memory: HTTP/2 flow control bounds each stream.
  server.on('sessionError', () => undefined);
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => resolve());
  });
  return {
    port: (server.address() as AddressInfo).port,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        for (const session of sessions) session.destroy();
      }),
  };
}
