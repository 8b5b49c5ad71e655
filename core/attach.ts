/**
 * The attach channel between a worker and the invocation service instance
 * that holds the caller (DESIGN.md "Invocation path", steps 2–5).
 *
 * The worker opens one HTTP/2 stream, `POST /attach/{requestId}` with the
 * request's token from the message's reply address. The answer's
 * `nvcf-attach-state` says what became of the call:
 * - `live` (200): this worker runs it; the stream stays open both ways;
 * - `held` (409): another worker is attached (a lapsed visibility): wait;
 * - `finished` / `canceled` (410): nothing left to do: drop the message;
 * - `durable` (410): the caller got 202; run it as a durable call (DynamoDB/S3);
 * - `unknown` (404): this instance does not know the call (it restarted).
 *
 * On a live stream both sides send frames (1 byte type, 4 bytes big-endian
 * length, payload). The service sends the rest of the body (BODY… BODY_END)
 * first, then at most one of ACCEPT (the worker's HEAD is relayed to the
 * caller), DURABLE (the call became durable before a HEAD was relayed: store
 * the outcome), CANCEL (the caller is gone: stop). The worker sends HEAD
 * (status and headers), then body chunks and END once ACCEPTed; PROGRESS
 * (JSON) at any time before HEAD; FAIL (a problem, JSON) as a terminal answer
 * instead of HEAD; RELEASE when it hands the job back for another delivery.
 * HTTP/2 flow control carries backpressure: neither side reads more than the
 * other can pass on.
 */
import { Transform, type TransformCallback } from 'node:stream';
import { INVOCATION_SERVICE_PATHS } from './names';

export const ATTACH_STATE_HEADER = 'nvcf-attach-state';
export const ATTACH_TOKEN_HEADER = 'nvcf-attach-token';
export const ATTACH_WORKER_HEADER = 'nvcf-attach-worker';

export type AttachState = 'live' | 'held' | 'finished' | 'canceled' | 'durable' | 'unknown';

export const FRAME = {
  /** service → worker: a chunk of the request body; worker → service: a chunk of the response body. */
  body: 0x42,
  /** service → worker: the request body is complete. */
  bodyEnd: 0x45,
  /** service → worker: the HEAD was passed on; send the body. */
  accept: 0x41,
  /** service → worker: the call became durable; record its outcome in the store. */
  durable: 0x44,
  /** service → worker: the caller is gone or cancelled; stop. */
  cancel: 0x58,
  /** worker → service: the response head, JSON ResponseHead. */
  head: 0x48,
  /** worker → service: the response body is complete. */
  end: 0x5a,
  /** worker → service: a progress update, JSON ProgressUpdate. */
  progress: 0x50,
  /** worker → service: the call failed, JSON InvocationError; terminal. */
  fail: 0x46,
  /** worker → service: the job goes back to the queue for another delivery. */
  release: 0x52,
} as const;
export type FrameType = (typeof FRAME)[keyof typeof FRAME];

/** What a worker tells the service about the container's answer. */
export interface ResponseHead {
  status: number;
  /** Container headers, already stripped of hop-by-hop and nvcf-* names. */
  headers: Record<string, string>;
  /** Exact body size when the worker holds the whole body; absent for a stream. */
  bytes?: number;
  /** S3 key of a result zip (large result): the service answers 302 to it, and no body follows. */
  zipKey?: string;
}

export interface ProgressUpdate {
  percentComplete: number;
  /** JSON text of the progress file's partialResponse. */
  partialResponse?: string;
}

export interface Frame {
  type: number;
  payload: Buffer;
}

/** Largest payload of one frame; body chunks are cut to it. */
export const MAX_FRAME_PAYLOAD = 64 * 1024;
const HEADER_BYTES = 5;
/** Frames carrying JSON (head, progress, fail) may be larger than body chunks (a partialResponse is up to ~250 KB). */
const MAX_CONTROL_PAYLOAD = 1024 * 1024;

/** One frame as bytes. */
export function encodeFrame(type: FrameType, payload: Buffer | string = Buffer.alloc(0)): Buffer {
  const data = typeof payload === 'string' ? Buffer.from(payload) : payload;
  const header = Buffer.allocUnsafe(HEADER_BYTES);
  header.writeUInt8(type, 0);
  header.writeUInt32BE(data.length, 1);
  return Buffer.concat([header, data]);
}

/** Body bytes as BODY frames of at most MAX_FRAME_PAYLOAD each. */
export function bodyFrames(data: Buffer): Buffer[] {
  const frames: Buffer[] = [];
  for (let offset = 0; offset < data.length; offset += MAX_FRAME_PAYLOAD) frames.push(encodeFrame(FRAME.body, data.subarray(offset, offset + MAX_FRAME_PAYLOAD)));
  return frames;
}

/** A stream of bytes in, frames out (object mode); a frame over the size limits is a protocol error. */
export class FrameDecoder extends Transform {
  private pending: Buffer = Buffer.alloc(0);

  constructor() {
    super({ readableObjectMode: true });
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, done: TransformCallback): void {
    this.pending = this.pending.length === 0 ? chunk : Buffer.concat([this.pending, chunk]);
    while (this.pending.length >= HEADER_BYTES) {
      const type = this.pending.readUInt8(0);
      const length = this.pending.readUInt32BE(1);
      if (length > (type === FRAME.body ? MAX_FRAME_PAYLOAD : MAX_CONTROL_PAYLOAD)) return done(new Error(`attach frame of ${length} bytes (type ${type}) exceeds the limit`));
      if (this.pending.length < HEADER_BYTES + length) break;
      this.push({ type, payload: this.pending.subarray(HEADER_BYTES, HEADER_BYTES + length) } satisfies Frame);
      this.pending = this.pending.subarray(HEADER_BYTES + length);
    }
    done();
  }

  override _flush(done: TransformCallback): void {
    done(this.pending.length > 0 ? new Error('attach stream ended inside a frame') : undefined);
  }
}

/** The attach path of one request. */
export function attachPath(requestId: string): string {
  return `${INVOCATION_SERVICE_PATHS.attach}/${requestId}`;
}
