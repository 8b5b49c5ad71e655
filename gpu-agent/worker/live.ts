/**
 * A live call: a sync call whose caller waits on the invocation service
 * (DESIGN.md "Invocation path"). The answer goes back over the attach channel
 * as the container gives it. Should the service turn the call durable (its
 * poll window ended, or progress made it answer 202), the delivery claims the
 * stored call and records the outcome as a durable delivery does (job.ts).
 */
import { createReadStream } from 'node:fs';
import type { Readable } from 'node:stream';
import type { InvocationMessage } from '../../core/invocation-message';
import { finishInvocation, getInvocation, recordProgress, type InvocationError, type Outcome } from '../../core/invocations';
import type { LiveChannel, LiveEnd } from './attach';
import { openContainer, readResponse, type ContainerResponse, type RequestBody } from './container';
import { isEventStream } from './container-headers';
import { logger } from './config';
import { Interrupted, containerError, unretriableCallProblem } from './errors';
import type { Job } from './job';
import { deleteObject, storeResult, storedRequestBody } from './objects';
import { mirrorProgress, type ProgressSink } from './progress';
import { containerCall, durableOutcome, prepareRequest, throwIfInterrupted } from './run';
import { finishedFiles, removeRequestDirs, requestDirs, type RequestDirs } from './request-dirs';

/** Seconds after a live call's poll window ends that its caller may still be answered (the service turns it durable at the window's end). */
const LIVE_WINDOW_GRACE_SECONDS = 10;

/** Seconds until a live call's caller can no longer be waiting; ≤ 0 once the call is durable or gone. */
export function secondsLeftOfLiveWindow(invocation: InvocationMessage): number {
  return Math.ceil((Date.parse(invocation.acceptedAt) + (invocation.pollSeconds + LIVE_WINDOW_GRACE_SECONDS) * 1000 - Date.now()) / 1000);
}

async function readAll(stream: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

/** One job's live call, over the attach channel it holds. */
export class LiveDelivery {
  /** The live caller took the answer: whatever the channel does next, the job is over. */
  private answered = false;
  /** Set when the call turned durable (or its service went away): resolves true once this delivery owns the stored call. */
  private turnedDurable: Promise<boolean> | undefined;
  /** The request body, fetched once over the attach channel (a retried container call sends it again). */
  private attachedBody: Promise<Buffer> | undefined;

  constructor(
    private readonly job: Job,
    readonly channel: LiveChannel,
  ) {}

  /** Runs the live call to the end of the delivery. */
  async run(invocation: InvocationMessage): Promise<void> {
    const { job } = this;
    const { requestId } = invocation;
    void this.channel.ended.then((end) => this.onEnd(requestId, end));
    // Until the call is durable the lease keeps only the message hidden (there is no item to hold).
    job.lease!.start();
    const dirs = requestDirs(job.runtime.config, requestId, job.owner);
    let outcome: Outcome | 'answered';
    try {
      outcome = await this.execute(invocation, dirs);
    } catch (error) {
      return job.afterRunFailure(invocation, dirs, error);
    }
    if (outcome === 'answered') {
      job.lease!.stop();
      await removeRequestDirs(dirs);
      return job.delivery.deleteFinally();
    }
    return job.finishDurable(invocation, outcome, dirs);
  }

  /** Ends the live call with a failure: told to the caller, or recorded if the call turned durable. */
  async end(requestId: string, outcome: { error: InvocationError }): Promise<void> {
    const { job } = this;
    const verdict = job.claimed ? 'durable' : await this.channel.answer({ fail: outcome.error });
    if (verdict === 'accepted' || !(await this.turnedDurable)) return job.delivery.deleteFinally();
    if (!(await finishInvocation(requestId, outcome, job.owner))) return job.afterLoss(requestId);
    await job.delivery.deleteFinally();
  }

  /** The body to send: over the attach channel while the call is live, else as stored. */
  private requestBody(invocation: InvocationMessage): RequestBody {
    const { job } = this;
    if (invocation.body.kind === 'attach' && !job.claimed) {
      // Kept in memory once read: a container call retried on a fresh connection sends it again.
      return async () => {
        this.attachedBody ??= readAll(this.channel.body);
        const data = await this.attachedBody;
        return { data, length: data.length };
      };
    }
    return storedRequestBody(invocation.body, invocation.requestId, job.interrupt.signal);
  }

  /** The service ended the live call: cancel stops the job; durable (or the service's loss, once stored) makes this delivery the store's owner. */
  private onEnd(requestId: string, end: LiveEnd): void {
    const { job } = this;
    if (this.answered || job.releaseRequested) return;
    if (end === 'canceled') {
      job.interrupt.abort(new Interrupted('canceled'));
      return;
    }
    this.turnedDurable = (async () => {
      try {
        if (end === 'gone' && !(await getInvocation(requestId))) {
          logger.warn('the invocation service holding the caller went away; the call is dropped', { requestId });
          job.interrupt.abort(new Interrupted('canceled'));
          return false;
        }
        const claim = await job.claim(requestId);
        if (claim.kind !== 'claimed') {
          job.interrupt.abort(new Interrupted(claim.kind === 'finished' ? 'canceled' : 'lost'));
          return false;
        }
        job.claimed = true;
        job.lease!.until = claim.leaseUntil;
        return true;
      } catch (error) {
        logger.error('could not take over the call that turned durable', { requestId, error: error as Error });
        job.interrupt.abort(new Interrupted('lost'));
        return false;
      }
    })();
  }

  /** After a verdict other than ACCEPT: continues as the stored call's owner, or throws why the job stops. */
  private async continueDurable(verdict: 'accepted' | LiveEnd): Promise<void> {
    if (verdict !== 'canceled' && (await this.turnedDurable)) return;
    throwIfInterrupted(this.job);
    throw new Interrupted('canceled');
  }

  /**
   * Runs the call: the container's answer head goes to the service, which
   * relays it (ACCEPT: the body follows as it comes) or turned the call
   * durable first (the outcome is then returned, to be recorded).
   */
  private async execute(invocation: InvocationMessage, dirs: RequestDirs): Promise<Outcome | 'answered'> {
    const { job, channel } = this;
    const { requestId } = invocation;
    const missing = await prepareRequest(job, invocation, dirs);
    if (missing) return this.fail(missing);
    const sink = (): ProgressSink =>
      job.claimed ? (percent, partial) => recordProgress(requestId, job.owner, percent, partial) : async (percent, partial) => channel.progress({ percentComplete: percent, partialResponse: partial });
    const mirror = mirrorProgress(requestId, dirs.output, job.runtime.config.progressIntervalMs, sink);
    let response: ContainerResponse;
    try {
      const open = await openContainer({
        url: invocation.route ? new URL(invocation.route.path, job.runtime.inferenceUrl).toString() : job.runtime.inferenceUrl,
        method: invocation.route?.method ?? 'POST',
        ...containerCall(job, invocation, dirs, this.requestBody(invocation)),
      });
      // Direct invocation and SSE pass through as the container writes them.
      if (!job.claimed && (invocation.route !== undefined || (invocation.stream && isEventStream(open.headers)))) {
        const verdict = await channel.answer({ status: open.status, headers: open.headers });
        if (verdict === 'accepted') {
          this.answered = true;
          if (!(await channel.sendBody(open.body))) open.body.destroy();
          return 'answered';
        }
        await this.continueDurable(verdict);
      }
      response = await readResponse(open, dirs.spill);
    } catch (error) {
      const problem = unretriableCallProblem(error);
      if (!problem) throw error;
      return this.fail(problem);
    } finally {
      await mirror.stop();
    }
    // The container has answered: from here on nothing is retried, since a redelivery would run the job again.
    if (job.claimed) return durableOutcome(job, requestId, response, dirs);
    let zipKey: string | undefined;
    if (response.status < 400 && (!response.body || (await finishedFiles(dirs.output)).length > 0)) {
      zipKey = (await storeResult(requestId, job.owner, response, dirs)).zipKey;
    }
    const head = zipKey ? { status: response.status, headers: response.headers, zipKey } : { status: response.status, headers: response.headers, bytes: response.size };
    const verdict = await channel.answer(head);
    if (verdict === 'accepted') {
      this.answered = true;
      if (!zipKey) await channel.sendBody(response.body ?? createReadStream(response.file!));
      return 'answered';
    }
    try {
      await this.continueDurable(verdict);
    } catch (error) {
      if (zipKey) await deleteObject(zipKey, 'an unanswered result');
      throw error;
    }
    if (response.status >= 400) return { error: containerError(response) };
    return zipKey ? { result: { status: response.status, headers: response.headers, zipKey } } : durableOutcome(job, requestId, response, dirs);
  }

  /** A failure that is the call's answer (no retry can help): to the live caller, or recorded once durable. */
  private async fail(error: InvocationError): Promise<Outcome | 'answered'> {
    if (this.job.claimed) return { error };
    const verdict = await this.channel.answer({ fail: error });
    if (verdict === 'accepted') {
      this.answered = true;
      return 'answered';
    }
    await this.continueDurable(verdict);
    return { error };
  }
}
