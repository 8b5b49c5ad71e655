/**
 * The worker's end of the attach channel (core/attach.ts): one HTTP/2
 * session per invocation service instance, one stream per job.
 */
import { connect, constants, type ClientHttp2Session, type ClientHttp2Stream } from 'node:http2';
import { PassThrough, type Readable } from 'node:stream';
import {
  ATTACH_STATE_HEADER,
  ATTACH_TOKEN_HEADER,
  ATTACH_WORKER_HEADER,
  FRAME,
  FrameDecoder,
  MAX_FRAME_PAYLOAD,
  attachPath,
  encodeFrame,
  type AttachState,
  type Frame,
  type ProgressUpdate,
  type ResponseHead,
} from '../../core/attach';
import type { ReplyAddress } from '../../core/invocation-message';
import type { InvocationError } from '../../core/invocations';

/** How long an attach may take to be answered before the service counts as unreachable. */
const ATTACH_TIMEOUT_MS = 5000;

/** Why the service ended a live call: the call became durable, the caller cancelled, or the service went away. */
export type LiveEnd = 'durable' | 'canceled' | 'gone';

export type AttachResult = { state: 'live'; channel: LiveChannel } | { state: Exclude<AttachState, 'live'> } | { state: 'unreachable'; reason: string };

const sessions = new Map<string, ClientHttp2Session>();

function sessionFor(address: ReplyAddress): ClientHttp2Session {
  const origin = `http://${address.host.includes(':') ? `[${address.host}]` : address.host}:${address.port}`;
  const open = sessions.get(origin);
  if (open && !open.closed && !open.destroyed) return open;
  const session = connect(origin);
  session.on('error', () => undefined);
  session.on('close', () => sessions.get(origin) === session && sessions.delete(origin));
  // An idle session must not keep the worker process alive.
  session.unref();
  sessions.set(origin, session);
  return session;
}

/** Closes every attach session (worker shutdown, tests). */
export function closeAttachSessions(): void {
  for (const session of sessions.values()) session.close();
  sessions.clear();
}

/** Attaches to the instance that holds the caller of `requestId`. */
export function attach(address: ReplyAddress, requestId: string, workerId: string): Promise<AttachResult> {
  return openAttach(address, requestId, workerId, (stream) => ({ state: 'live', channel: new LiveChannel(stream) }));
}

export type TunnelResult = { state: 'live'; stream: ClientHttp2Stream } | { state: Exclude<AttachState, 'live'> } | { state: 'unreachable'; reason: string };

/** Attaches to the instance that holds a gRPC session (core/grpc.ts): a live attach stream is the session's tunnel. */
export function attachTunnel(address: ReplyAddress, sessionId: string, workerId: string): Promise<TunnelResult> {
  return openAttach(address, sessionId, workerId, (stream) => ({ state: 'live', stream }));
}

function openAttach<Live>(
  address: ReplyAddress,
  requestId: string,
  workerId: string,
  live: (stream: ClientHttp2Stream) => Live,
): Promise<Live | { state: Exclude<AttachState, 'live'> } | { state: 'unreachable'; reason: string }> {
  return new Promise((resolve) => {
    let stream: ClientHttp2Stream;
    try {
      stream = sessionFor(address).request({
        ':method': 'POST',
        ':path': attachPath(requestId),
        [ATTACH_TOKEN_HEADER]: address.token,
        [ATTACH_WORKER_HEADER]: workerId,
      });
    } catch (error) {
      resolve({ state: 'unreachable', reason: (error as Error).message });
      return;
    }
    const timer = setTimeout(() => {
      stream.close(constants.NGHTTP2_CANCEL);
      resolve({ state: 'unreachable', reason: `no answer to the attach within ${ATTACH_TIMEOUT_MS} ms` });
    }, ATTACH_TIMEOUT_MS);
    stream.on('error', (error) => {
      clearTimeout(timer);
      resolve({ state: 'unreachable', reason: error.message });
    });
    stream.on('response', (headers) => {
      clearTimeout(timer);
      const state = String(headers[ATTACH_STATE_HEADER] ?? 'unknown') as AttachState;
      if (state === 'live') return resolve(live(stream));
      stream.resume();
      resolve({ state: state === 'held' || state === 'finished' || state === 'canceled' || state === 'durable' ? state : 'unknown' });
    });
  });
}

/**
 * A live call as the worker sees it: the rest of the request body, and the
 * way back for progress, the answer and its body. `ended` resolves when the
 * service ends the live call (DURABLE, CANCEL, or the stream's loss).
 */
export class LiveChannel {
  /** The request body bytes the service sends (BODY frames until BODY_END). */
  readonly body: Readable = new PassThrough();
  readonly ended: Promise<LiveEnd>;
  private endedAs: LiveEnd | undefined;
  private resolveEnded!: (end: LiveEnd) => void;
  private accepted!: () => void;
  private readonly acceptance: Promise<'accepted'>;
  private bodyDone = false;

  constructor(private readonly stream: ClientHttp2Stream) {
    this.ended = new Promise((resolve) => (this.resolveEnded = resolve));
    this.acceptance = new Promise((resolve) => (this.accepted = () => resolve('accepted')));
    // A body cut short fails whoever reads it; one nobody reads yet must not crash the worker as an unhandled 'error'.
    this.body.on('error', () => undefined);
    const decoder = new FrameDecoder();
    stream.pipe(decoder);
    decoder.on('data', (frame: Frame) => this.onFrame(frame));
    decoder.on('error', () => stream.close(constants.NGHTTP2_PROTOCOL_ERROR));
    stream.on('close', () => this.end('gone'));
  }

  /** How the live call ended, once it has. */
  get endReason(): LiveEnd | undefined {
    return this.endedAs;
  }

  private onFrame(frame: Frame): void {
    switch (frame.type) {
      case FRAME.body:
        (this.body as PassThrough).write(frame.payload);
        return;
      case FRAME.bodyEnd:
        this.bodyDone = true;
        (this.body as PassThrough).end();
        return;
      case FRAME.accept:
        this.accepted();
        return;
      case FRAME.durable:
        return this.end('durable');
      case FRAME.cancel:
        return this.end('canceled');
    }
  }

  private end(how: LiveEnd): void {
    if (this.endedAs) return;
    this.endedAs = how;
    if (!this.bodyDone) (this.body as PassThrough).destroy(new Error(`the live call ended (${how}) before its body arrived`));
    this.resolveEnded(how);
    if (how !== 'gone') this.stream.close();
  }

  progress(update: ProgressUpdate): void {
    if (!this.endedAs) this.stream.write(encodeFrame(FRAME.progress, JSON.stringify(update)));
  }

  /** Sends the answer's head (or a failure) and waits for the verdict: `accepted`, or how the live call ended. */
  async answer(head: ResponseHead | { fail: InvocationError }): Promise<'accepted' | LiveEnd> {
    if (this.endedAs) return this.endedAs;
    const frame = 'fail' in head ? encodeFrame(FRAME.fail, JSON.stringify(head.fail)) : encodeFrame(FRAME.head, JSON.stringify(head));
    this.stream.write(frame);
    const verdict = await Promise.race([this.acceptance, this.ended]);
    // A failure or a zip is the whole answer (no body follows): END closes the stream instead of leaving it open on the session.
    if (verdict === 'accepted' && ('fail' in head || head.zipKey)) this.stream.end(encodeFrame(FRAME.end));
    return verdict;
  }

  /**
   * Sends the body once accepted, as fast as the caller takes it: resolves
   * true when all was sent, false when the live call ended first.
   */
  async sendBody(source: Readable | Buffer): Promise<boolean> {
    const chunks: AsyncIterable<Buffer> | Buffer[] = Buffer.isBuffer(source) ? [source] : (source as AsyncIterable<Buffer>);
    for await (const chunk of chunks) {
      for (let offset = 0; offset < chunk.length; offset += MAX_FRAME_PAYLOAD) {
        if (this.endedAs) return false;
        if (!this.stream.write(encodeFrame(FRAME.body, chunk.subarray(offset, offset + MAX_FRAME_PAYLOAD)))) {
          const drained = await Promise.race([new Promise<'drain'>((resolve) => this.stream.once('drain', () => resolve('drain'))), this.ended]);
          if (drained !== 'drain') return false;
        }
      }
    }
    if (this.endedAs) return false;
    this.stream.end(encodeFrame(FRAME.end));
    return true;
  }

  /** Hands the job back: the service waits for another delivery. */
  release(): void {
    if (this.endedAs) return;
    this.stream.end(encodeFrame(FRAME.release));
    this.endedAs = 'gone';
    this.resolveEnded('gone');
  }
}
