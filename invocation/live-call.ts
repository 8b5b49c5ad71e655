/**
 * One call held by this service instance, from the queued message to its
 * answer: the meeting point of the caller's connection and the worker's
 * attach stream (core/attach.ts).
 *
 * Phases (each change happens synchronously in one event handler, so there is
 * no moment two of them race):
 *   queued ─attach→ attached ─HEAD/FAIL→ responding → done
 *   attached ─worker gone / RELEASE→ queued (a redelivery attaches again)
 *   queued | attached ─deadline or PROGRESS→ persisting → durable
 *   any live phase ─caller gone / cancel→ canceled
 * Once `persisting` starts, a HEAD or FAIL from the worker is no longer passed
 * on: the worker waits for the verdict (ACCEPT or DURABLE) before it sends a
 * body, so a result in flight at the moment of the 202 is stored by the worker,
 * never dropped and never answered twice.
 */
import type { ServerHttp2Stream } from 'node:http2';
import type { Writable } from 'node:stream';
import { bodyFrames, encodeFrame, FRAME, FrameDecoder, type Frame, type ProgressUpdate, type ResponseHead } from '../core/attach';
import type { InvocationError } from '../core/invocations';

export type CallPhase = 'queued' | 'attached' | 'responding' | 'persisting' | 'durable' | 'done' | 'canceled';

/** What the caller is answered with first. */
export type FirstAnswer =
  | { kind: 'head'; head: ResponseHead }
  | { kind: 'fail'; error: InvocationError }
  /** Stored for polling; `running` when a worker had the call. */
  | { kind: 'durable'; progress?: ProgressUpdate; running: boolean }
  | { kind: 'unavailable'; detail: string }
  /** The caller went away, or the call was cancelled (I6) before an answer. */
  | { kind: 'canceled' };

export interface LiveCallOptions {
  requestId: string;
  token: string;
  accountId: string;
  /** The body bytes the worker fetches over the attach stream (empty when the message carries it inline). */
  attachedBody: Buffer;
  /** Whether a PROGRESS before the answer turns the call durable with a 202 (pexec); direct calls ignore progress. */
  answersProgress: boolean;
  /** Makes the call durable: stores what a redelivery needs (the Invocations item, a held body); rejects if it could not. */
  persist(progress: ProgressUpdate | undefined, running: boolean): Promise<void>;
  /** Told once the call is over, whatever its end, so the registry can keep a tombstone. */
  onSettled(call: LiveCall): void;
}

export class LiveCall {
  phase: CallPhase = 'queued';
  private stream: ServerHttp2Stream | undefined;
  private decoder: FrameDecoder | undefined;
  private sink: Writable | undefined;
  private sinkDone: ((outcome: 'complete' | 'truncated') => void) | undefined;
  private deadlineTimer: NodeJS.Timeout | undefined;
  private answerFirst!: (answer: FirstAnswer) => void;
  /** Resolves with the caller's first answer. */
  readonly first: Promise<FirstAnswer>;

  constructor(readonly options: LiveCallOptions) {
    this.first = new Promise((resolve) => (this.answerFirst = resolve));
  }

  get requestId(): string {
    return this.options.requestId;
  }

  /** The call becomes durable at `deadline` (epoch ms) unless answered by then. */
  startDeadline(deadline: number): void {
    this.deadlineTimer = setTimeout(() => this.goDurable(), Math.max(0, deadline - Date.now()));
  }

  /**
   * A worker attaches: the call is its if it waits for one. Returns the
   * phase the worker is told about; when `live`, the stream is now this call's.
   */
  attach(stream: ServerHttp2Stream): CallPhase | 'live' {
    if (this.phase !== 'queued') return this.phase;
    this.phase = 'attached';
    this.stream = stream;
    const decoder = new FrameDecoder();
    this.decoder = decoder;
    stream.pipe(decoder);
    decoder.on('data', (frame: Frame) => this.onFrame(stream, frame));
    decoder.on('error', () => stream.close());
    stream.on('close', () => this.onWorkerGone(stream));
    stream.on('error', () => undefined);
    for (const frame of bodyFrames(this.options.attachedBody)) stream.write(frame);
    stream.write(encodeFrame(FRAME.bodyEnd));
    return 'live';
  }

  private onFrame(stream: ServerHttp2Stream, frame: Frame): void {
    if (stream !== this.stream) return;
    switch (frame.type) {
      case FRAME.head:
      case FRAME.fail:
        if (this.phase !== 'attached') return; // persisting: the worker hears DURABLE instead
        this.phase = 'responding';
        this.clearDeadline();
        stream.write(encodeFrame(FRAME.accept));
        if (frame.type === FRAME.fail) {
          this.answerFirst({ kind: 'fail', error: JSON.parse(frame.payload.toString('utf8')) as InvocationError });
          this.finish('done');
          // A failure is the whole answer: this side of the stream ends, so it does not linger on the worker's session.
          stream.end();
          return;
        }
        const head = JSON.parse(frame.payload.toString('utf8')) as ResponseHead;
        if (head.zipKey) {
          // A zip is the whole answer (a 302 to it): no body follows.
          this.answerFirst({ kind: 'head', head });
          this.finish('done');
          stream.end();
          return;
        }
        // Body frames wait until the caller's side is ready for them.
        this.decoder?.pause();
        this.answerFirst({ kind: 'head', head });
        return;
      case FRAME.progress:
        if (this.phase === 'attached' && this.options.answersProgress) this.goDurable(JSON.parse(frame.payload.toString('utf8')) as ProgressUpdate);
        return;
      case FRAME.release:
        if (this.phase === 'attached') this.detach();
        return;
      case FRAME.body:
        if (this.phase === 'responding' && this.sink && !this.sink.write(frame.payload)) {
          this.decoder?.pause();
          this.sink.once('drain', () => this.decoder?.resume());
        }
        return;
      case FRAME.end:
        if (this.phase !== 'responding') return;
        this.sink?.end();
        this.sinkDone?.('complete');
        this.finish('done');
        stream.end();
        return;
      default:
        stream.close();
    }
  }

  /**
   * Passes the response body on to `sink` as the worker sends it, at the pace
   * the sink takes it. Resolves `complete`, or `truncated` when the worker
   * went away mid-body (the sink is then left open for the caller to end).
   */
  relayBody(sink: Writable): Promise<'complete' | 'truncated'> {
    this.sink = sink;
    const done = new Promise<'complete' | 'truncated'>((resolve) => (this.sinkDone = resolve));
    this.decoder?.resume();
    return done;
  }

  /** The worker's stream closed. Before an answer the call waits for a redelivery; mid-body the answer is cut. */
  private onWorkerGone(stream: ServerHttp2Stream): void {
    if (stream !== this.stream) return;
    if (this.phase === 'attached') return this.detach();
    if (this.phase === 'responding') {
      this.sinkDone?.('truncated');
      this.finish('done');
    }
  }

  private detach(): void {
    this.stream?.unpipe(this.decoder!);
    this.stream?.close();
    this.stream = undefined;
    this.decoder = undefined;
    this.phase = 'queued';
  }

  /** The poll window is over, or progress must reach the caller as a 202: the call is stored and answered 202. */
  goDurable(progress?: ProgressUpdate): void {
    if (this.phase !== 'queued' && this.phase !== 'attached') return;
    const running = this.phase === 'attached';
    this.phase = 'persisting';
    this.clearDeadline();
    this.options.persist(progress, running).then(
      () => {
        if (this.phase !== 'persisting') return;
        this.phase = 'durable';
        this.stream?.end(encodeFrame(FRAME.durable));
        this.answerFirst({ kind: 'durable', progress, running });
        this.finish('durable');
      },
      (error: Error) => {
        if (this.phase !== 'persisting') return;
        this.answerFirst({ kind: 'unavailable', detail: `the call could not be stored to wait longer (${error.message}); retry` });
        this.stream?.end(encodeFrame(FRAME.cancel));
        this.finish('canceled');
      },
    );
  }

  /**
   * The caller is gone or asked to cancel: a queued call never runs, a
   * running one is stopped. No-op once over, and while it is being stored:
   * once stored it is a durable call, cancelled only by the cancel route.
   */
  cancel(): void {
    if (this.phase === 'done' || this.phase === 'durable' || this.phase === 'canceled' || this.phase === 'persisting') return;
    this.stream?.end(encodeFrame(FRAME.cancel));
    this.sinkDone?.('truncated');
    // The caller's handler waits on `first`: it must end too, or the request stays in flight for ever.
    this.answerFirst({ kind: 'canceled' });
    this.finish('canceled');
  }

  private finish(phase: 'done' | 'durable' | 'canceled'): void {
    this.phase = phase;
    this.clearDeadline();
    this.options.onSettled(this);
  }

  private clearDeadline(): void {
    clearTimeout(this.deadlineTimer);
  }
}
