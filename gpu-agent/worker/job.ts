/**
 * One delivery of one invocation message, from claim to deleted message
 * (DESIGN.md "Invocation path", step 2).
 *
 * Ownership: the delivery claims the invocation under a fresh owner token and
 * a lease (core/invocations.ts), renewed together with the message's
 * visibility. A delivery that finds the invocation held by a live lease waits
 * for the lease (its message's visibility is pushed to the lease's end), or,
 * when its message is a duplicate of the owner's, deletes it. An owner that
 * finds its lease lost stops the container call and leaves everything it does
 * not own alone.
 *
 * Failure handling:
 * - the container answers ≥ 400 → the invocation is ERRORED with its status;
 * - a referenced asset is gone → ERRORED 500 (retrying cannot help);
 * - the container answered but its result cannot be stored (disk, zip limits,
 *   unreadable output files, S3 after the SDK's retries) → ERRORED 500:
 *   running the GPU job again would not help;
 * - the container is unreachable or times out, or AWS fails before the
 *   container answered → the job is handed back to come again after a short
 *   backoff; on the last delivery SQS allows (the queue's maxReceiveCount)
 *   the invocation becomes ERRORED 500 and the message is released, so SQS
 *   moves it to the dead-letter queue where it is kept for inspection;
 * - the worker dies → the lease lapses and the next delivery takes over;
 * - the worker shuts down → the job is handed back (QUEUED, visibility 0), or,
 *   on the last allowed delivery, carried on by a fresh copy of the message.
 * The terminal write is conditional on the owner: a delivery that lost the
 * invocation never records an outcome, and its S3 objects have keys of their own.
 */
import { createReadStream, createWriteStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { DeleteObjectCommand, GetObjectCommand, PutObjectCommand } from '@aws-sdk/client-s3';
import { ChangeMessageVisibilityCommand, DeleteMessageCommand, SendMessageCommand, type Message } from '@aws-sdk/client-sqs';
import { s3, sqs } from '../../core/aws';
import { bucketName } from '../../core/config';
import { invocationMessageSchema, lambdaBodyBytes, type InvocationMessage, type MessageBody } from '../../core/invocation-message';
import {
  claimInvocation,
  finishInvocation,
  getInvocation,
  isMissingObjectError,
  newOwnerToken,
  recordProgress,
  releaseInvocation,
  renewLease,
  resultBodyKey,
  resultZipKey,
  type Claim,
  type InvocationError,
  type InvocationResult,
  type Outcome,
} from '../../core/invocations';
import { MAX_DIRECT_RESPONSE_PAYLOAD_BYTES, MAX_INLINE_RESULT_BYTES, MAX_RESPONSE_BYTES } from '../../core/limits';
import { isTerminal, type FunctionVersionRecord } from '../../core/model';
import { assetObjectKey, inputObjectKey } from '../../core/names';
import { reasonPhrase } from '../../core/problem';
import { attach, type LiveChannel, type LiveEnd } from './attach';
import { afterAttach, afterClaim, afterFailure, whileHeld, type DeliveryFacts, type Step } from './delivery';
import { ContainerUnreachable, ResponseNotStored, callContainer, openContainer, readResponse, type ContainerResponse, type RequestBody } from './container';
import { logger, type WorkerConfig } from './config';
import { mirrorProgress, type ProgressSink } from './progress';
import { CONNECTION_ERROR_TYPE, containerError, workerProblem } from './errors';
import { finishedFiles, freshDir, removeDir } from './request-dirs';
import { writeZip, type ZipEntry } from './zip';

/** What every job of a worker shares. */
export interface JobRuntime {
  config: WorkerConfig;
  version: FunctionVersionRecord;
  queueUrl: string;
  /** Deliveries SQS allows before the dead-letter queue (the queue's RedrivePolicy). */
  maxReceiveCount: number;
  /** Full URL of the container's inference endpoint. */
  inferenceUrl: string;
  /** Told when the container could not be reached, so the worker checks its health before taking more work. */
  onContainerUnreachable(): void;
}

/** Attempts at the writes that end a delivery (outcome, message delete) before it is left to redelivery. */
const FINAL_WRITE_ATTEMPTS = 4;

/** A referenced object (an asset, the spilled request body) does not exist (any more): retrying cannot help. */
class ObjectMissing extends Error {}

/** Why a job stopped early: its claim was lost, or the worker hands it back. */
class Interrupted extends Error {
  constructor(readonly reason: 'lost' | 'released' | 'canceled') {
    super(reason === 'lost' ? 'the claim on the invocation was lost' : reason === 'released' ? 'the worker hands the job back' : 'the caller cancelled the call');
  }
}

/** Seconds after a live call's poll window ends that its caller may still be answered (the service turns it durable at the window's end). */
const LIVE_WINDOW_GRACE_SECONDS = 10;

/** Seconds until a live call's caller can no longer be waiting; ≤ 0 once the call is durable or gone. */
function secondsLeftOfLiveWindow(invocation: InvocationMessage): number {
  return Math.ceil((Date.parse(invocation.acceptedAt) + (invocation.pollSeconds + LIVE_WINDOW_GRACE_SECONDS) * 1000 - Date.now()) / 1000);
}

function isEventStream(headers: Record<string, string>): boolean {
  return /^text\/event-stream\b/i.test(headers['content-type'] ?? '');
}

async function readAll(stream: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}



type Dirs = ReturnType<Job['dirs']>;

export class Job {
  /** Token of this delivery's claim. */
  readonly owner = newOwnerToken();
  private readonly interrupt = new AbortController();
  private leaseTimer: NodeJS.Timeout | undefined;
  private renewing = false;
  /** Our own estimate of when the lease ends: at most what the item holds. */
  private leaseUntil = 0;
  private claimed = false;
  private releaseRequested = false;
  /** The attach channel of a live call (the caller waits on the invocation service). */
  private live: LiveChannel | undefined;
  /** The live caller took the answer: whatever the channel does next, the job is over. */
  private liveAnswered = false;
  /** Set when a live call turned durable (or its service went away): resolves true once this delivery owns the stored call. */
  private turnedDurable: Promise<boolean> | undefined;
  /** ApproximateReceiveCount of this delivery. */
  private readonly attempt: number;
  /** The request body of a live call, fetched once over the attach channel (a retried container call sends it again). */
  private attachedBody: Promise<Buffer> | undefined;
  private done: Promise<void> | undefined;

  constructor(
    private readonly runtime: JobRuntime,
    readonly message: Message,
  ) {
    this.attempt = Number(message.Attributes?.ApproximateReceiveCount ?? 1);
  }

  /** Runs the delivery to its end; never throws. */
  run(): Promise<void> {
    this.done ??= this.runOnce();
    return this.done;
  }

  /**
   * Hands the job back (worker shutting down): stops the container call if it
   * still runs and returns the invocation to the queue. A result already being
   * stored is stored. Resolves once the delivery is over.
   */
  async release(): Promise<void> {
    this.releaseRequested = true;
    if (!this.interrupt.signal.aborted) this.interrupt.abort(new Interrupted('released'));
    await this.run();
  }

  private get lost(): boolean {
    return (this.interrupt.signal.reason as Interrupted | undefined)?.reason === 'lost';
  }

  private async runOnce(): Promise<void> {
    let invocation: InvocationMessage;
    try {
      invocation = invocationMessageSchema.parse(JSON.parse(this.message.Body ?? ''));
    } catch (error) {
      // Left alone it comes back maxReceiveCount times and ends in the dead-letter queue.
      logger.error('malformed invocation message', { messageId: this.message.MessageId, error: error as Error });
      return;
    }
    try {
      await this.deliver(invocation);
    } catch (error) {
      logger.error('job failed', { requestId: invocation.requestId, attempt: this.attempt, error: error as Error });
    } finally {
      this.stopLease();
    }
  }

  private get facts(): DeliveryFacts {
    return { attempt: this.attempt, maxReceiveCount: this.runtime.maxReceiveCount, leaseSeconds: this.runtime.config.leaseSeconds };
  }

  /** Carries out a step of delivery.ts that ends the delivery without running it. */
  private async take(step: Step, invocation: InvocationMessage, copyOf?: string): Promise<void> {
    switch (step.kind) {
      case 'drop':
        logger.info(`dropping the message: ${step.why}`, { requestId: invocation.requestId, messageId: this.message.MessageId });
        return this.finalWrite('delete the message', () => this.deleteMessage());
      case 'wait':
        return this.changeVisibility(step.seconds);
      case 'copy':
        // The next receive would dead-letter the message of a job that still runs (its owner's visibility lapsed).
        await this.sendCopy(invocation, copyOf ?? this.message.MessageId, step.delaySeconds);
        return this.finalWrite('delete the replaced message', () => this.deleteMessage());
      case 'hand-back':
        return this.handBack(invocation, this.attempt, step.delaySeconds);
      case 'leave':
        return;
      default:
        throw new Error(`step ${step.kind} is not an ending`);
    }
  }

  private async deliver(invocation: InvocationMessage): Promise<void> {
    const { requestId } = invocation;
    if (this.releaseRequested) return this.handBack(invocation, this.attempt);
    // A sync call: the service holding the caller says what to do; only a durable (or forgotten) call goes to the store.
    let storeDecides = false;
    if (invocation.replyTo) {
      const attached = await attach(invocation.replyTo, requestId, this.runtime.config.instanceId);
      if (attached.state === 'live') return this.deliverLive(invocation, attached.channel);
      if (attached.state === 'held') {
        // Another delivery of this message runs it (a lapsed visibility): wait as for a held claim.
        const held = { kind: 'held' as const, leaseUntil: Date.now() + this.runtime.config.leaseSeconds * 1000, messageId: this.message.MessageId };
        return this.take(whileHeld(held, this.facts, { messageId: this.message.MessageId, copyOf: invocation.copyOf, now: Date.now() }), invocation);
      }
      if (attached.state === 'unreachable') logger.warn('could not attach to the invocation service', { requestId, reason: attached.reason });
      const step = afterAttach(attached.state, secondsLeftOfLiveWindow(invocation));
      if (step.kind !== 'claim') return this.take(step, invocation);
      storeDecides = step.storeDecides;
    }
    const claim = await this.claim(requestId, this.attempt);
    const step = afterClaim(claim, this.facts, { storeDecides, messageAgeMs: Date.now() - Date.parse(invocation.acceptedAt), messageId: this.message.MessageId, copyOf: invocation.copyOf, now: Date.now() });
    if (step.kind !== 'run' || claim.kind !== 'claimed') return this.take(step, invocation, claim.kind === 'held' ? claim.messageId : undefined);

    this.claimed = true;
    this.leaseUntil = claim.leaseUntil;
    this.startLease(requestId);
    const dirs = this.dirs(requestId);
    let outcome: Outcome;
    try {
      outcome = await this.execute(invocation, dirs);
    } catch (error) {
      return this.afterRunFailure(invocation, dirs, error);
    }
    return this.finishDurable(invocation, outcome, dirs);
  }

  /** A run ended without an outcome: what delivery.ts decides for the failure. */
  private async afterRunFailure(invocation: InvocationMessage, dirs: Dirs, error: unknown): Promise<void> {
    const { requestId } = invocation;
    this.stopLease();
    const reason = (this.interrupt.signal.reason as Interrupted | undefined)?.reason;
    if (reason === 'lost') return this.afterLoss(requestId, dirs);
    await this.cleanUp(dirs);
    if (error instanceof ContainerUnreachable) this.runtime.onContainerUnreachable();
    const step = afterFailure(reason ?? (this.releaseRequested ? 'released' : 'transient'), this.facts);
    if (step.kind === 'dead-letter') {
      logger.error('last delivery failed; the invocation errors', { requestId, attempt: this.attempt, error: error as Error });
      const failure = { error: this.failure(error, this.attempt) };
      if (this.live && !this.claimed) return this.endLive(requestId, failure);
      if (!(await finishInvocation(requestId, failure, this.owner))) return this.afterLoss(requestId, dirs);
      // Released, the message goes to the dead-letter queue at its next receive.
      return this.changeVisibility(0);
    }
    if (step.kind === 'hand-back') {
      if (this.live && !this.claimed) this.live.release();
      logger.warn('delivery failed; the job is handed back for another delivery', { requestId, attempt: this.attempt, error: error as Error });
    }
    return this.take(step, invocation);
  }

  /** Records the outcome as the owner, then ends the delivery. */
  private async finishDurable(invocation: InvocationMessage, outcome: Outcome, dirs: Dirs): Promise<void> {
    const { requestId } = invocation;
    // The lease keeps running while the outcome is written: a slow write must not let another delivery in.
    const recorded = await this.record(requestId, outcome);
    this.stopLease();
    if (!recorded) {
      logger.info('the invocation is no longer ours; this outcome is dropped', { requestId });
      await this.deleteOwnObjects(outcome);
      return this.afterLoss(requestId, dirs);
    }
    await this.cleanUp(dirs);
    await this.finalWrite('delete the message', () => this.deleteMessage());
    if (invocation.body.kind !== 'inline') await this.deleteObject(invocation.body.kind === 's3' ? invocation.body.key : inputObjectKey(requestId), 'the spilled request body');
  }

  /**
   * A live call: the answer goes back over the attach channel as the
   * container gives it. Should the service turn the call durable (its poll
   * window ended, or progress made it answer 202), this delivery claims the
   * stored call and records the outcome as a durable delivery does.
   */
  private async deliverLive(invocation: InvocationMessage, channel: LiveChannel): Promise<void> {
    const { requestId } = invocation;
    this.live = channel;
    void channel.ended.then((end) => this.onLiveEnd(requestId, end));
    // Until the call is durable the lease keeps only the message hidden (there is no item to hold).
    this.startLease(requestId);
    const dirs = this.dirs(requestId);
    let outcome: Outcome | 'answered';
    try {
      outcome = await this.executeLive(invocation, dirs, channel);
    } catch (error) {
      return this.afterRunFailure(invocation, dirs, error);
    }
    if (outcome === 'answered') {
      this.stopLease();
      await this.cleanUp(dirs);
      return this.finalWrite('delete the message', () => this.deleteMessage());
    }
    return this.finishDurable(invocation, outcome, dirs);
  }

  /** Ends a live call with a failure: told to the caller, or recorded if the call turned durable. */
  private async endLive(requestId: string, outcome: { error: InvocationError }): Promise<void> {
    const verdict = this.claimed ? 'durable' : await this.live!.answer({ fail: outcome.error });
    if (verdict === 'accepted' || !(await this.turnedDurable)) return this.finalWrite('delete the message', () => this.deleteMessage());
    if (!(await finishInvocation(requestId, outcome, this.owner))) return this.afterLoss(requestId);
    await this.finalWrite('delete the message', () => this.deleteMessage());
  }

  /** The service ended the live call: cancel stops the job; durable (or the service's loss, once stored) makes this delivery the store's owner. */
  private onLiveEnd(requestId: string, end: LiveEnd): void {
    if (this.liveAnswered || this.releaseRequested) return;
    if (end === 'canceled') {
      this.interrupt.abort(new Interrupted('canceled'));
      return;
    }
    this.turnedDurable = (async () => {
      try {
        if (end === 'gone' && !(await getInvocation(requestId))) {
          logger.warn('the invocation service holding the caller went away; the call is dropped', { requestId });
          this.interrupt.abort(new Interrupted('canceled'));
          return false;
        }
        const claim = await this.claim(requestId, this.attempt);
        if (claim.kind !== 'claimed') {
          this.interrupt.abort(new Interrupted(claim.kind === 'finished' ? 'canceled' : 'lost'));
          return false;
        }
        this.claimed = true;
        this.leaseUntil = claim.leaseUntil;
        return true;
      } catch (error) {
        logger.error('could not take over the call that turned durable', { requestId, error: error as Error });
        this.interrupt.abort(new Interrupted('lost'));
        return false;
      }
    })();
  }

  /** After a verdict other than ACCEPT: continues as the stored call's owner, or throws why the job stops. */
  private async continueDurable(verdict: 'accepted' | LiveEnd): Promise<void> {
    if (verdict !== 'canceled' && (await this.turnedDurable)) return;
    this.throwIfInterrupted();
    throw new Interrupted('canceled');
  }

  /**
   * Runs a live call: the container's answer head goes to the service, which
   * relays it (ACCEPT: the body follows as it comes) or turned the call
   * durable first (the outcome is then returned, to be recorded).
   */
  private async executeLive(invocation: InvocationMessage, dirs: Dirs, channel: LiveChannel): Promise<Outcome | 'answered'> {
    const { requestId } = invocation;
    await Promise.all([freshDir(dirs.assets), freshDir(dirs.output)]);
    try {
      await Promise.all(invocation.assetIds.map((assetId) => this.downloadAsset(invocation.accountId, assetId, join(dirs.assets, assetId))));
    } catch (error) {
      if (!(error instanceof ObjectMissing)) throw error;
      return this.liveFailure(channel, workerProblem(`Internal error while downloading assets: ${error.message}`));
    }
    this.throwIfInterrupted();
    const sink = (): ProgressSink =>
      this.claimed ? (percent, partial) => recordProgress(requestId, this.owner, percent, partial) : async (percent, partial) => channel.progress({ percentComplete: percent, partialResponse: partial });
    const mirror = mirrorProgress(requestId, dirs.output, this.runtime.config.progressIntervalMs, sink);
    let response: ContainerResponse;
    try {
      const open = await openContainer({
        url: invocation.route ? new URL(invocation.route.path, this.runtime.inferenceUrl).toString() : this.runtime.inferenceUrl,
        method: invocation.route?.method ?? 'POST',
        headers: this.containerHeaders(invocation, dirs),
        body: this.requestBody(invocation.body, invocation.requestId),
        timeoutMs: this.runtime.config.inferenceTimeoutSeconds * 1000,
        spillFile: dirs.spill,
        signal: this.interrupt.signal,
      });
      // Direct invocation and SSE pass through as the container writes them.
      if (!this.claimed && (invocation.route !== undefined || (invocation.stream && isEventStream(open.headers)))) {
        const verdict = await channel.answer({ status: open.status, headers: open.headers });
        if (verdict === 'accepted') {
          this.liveAnswered = true;
          if (!(await channel.sendBody(open.body))) open.body.destroy();
          return 'answered';
        }
        await this.continueDurable(verdict);
      }
      response = await readResponse(open, dirs.spill);
    } catch (error) {
      if (error instanceof ObjectMissing) return this.liveFailure(channel, workerProblem(`Internal error while reading the request: ${error.message}`));
      if (!(error instanceof ResponseNotStored)) throw error;
      return this.liveFailure(channel, workerProblem(`Internal error while storing the result: ${error.message}`));
    } finally {
      await mirror.stop();
    }
    // The container has answered: from here on nothing is retried, since a redelivery would run the job again.
    if (this.claimed) return this.durableOutcome(requestId, response, dirs);
    let zipKey: string | undefined;
    if (response.status < 400 && (!response.body || (await finishedFiles(dirs.output)).length > 0)) {
      zipKey = (await this.storeResult(requestId, response, dirs)).zipKey;
    }
    const head = zipKey ? { status: response.status, headers: response.headers, zipKey } : { status: response.status, headers: response.headers, bytes: response.size };
    const verdict = await channel.answer(head);
    if (verdict === 'accepted') {
      this.liveAnswered = true;
      if (!zipKey) await channel.sendBody(response.body ?? createReadStream(response.file!));
      return 'answered';
    }
    try {
      await this.continueDurable(verdict);
    } catch (error) {
      if (zipKey) await this.deleteObject(zipKey, 'an unanswered result');
      throw error;
    }
    if (response.status >= 400) return { error: containerError(response) };
    return zipKey ? { result: { status: response.status, headers: response.headers, zipKey } } : this.durableOutcome(requestId, response, dirs);
  }

  /** A failure that is the call's answer (no retry can help): to the live caller, or recorded once durable. */
  private async liveFailure(channel: LiveChannel, error: InvocationError): Promise<Outcome | 'answered'> {
    if (this.claimed) return { error };
    const verdict = await channel.answer({ fail: error });
    if (verdict === 'accepted') {
      this.liveAnswered = true;
      return 'answered';
    }
    await this.continueDurable(verdict);
    return { error };
  }

  private async claim(requestId: string, attempt: number): Promise<Claim> {
    const request = { owner: this.owner, attempt, instanceId: this.runtime.config.instanceId, messageId: this.message.MessageId, leaseMs: this.runtime.config.leaseSeconds * 1000 };
    const claim = await claimInvocation(requestId, request);
    // Held with no lease: it was handed back between the claim's write and its read; try once more.
    return claim.kind === 'held' && claim.leaseUntil === undefined ? claimInvocation(requestId, request) : claim;
  }

  /** Sends a fresh copy of this delivery's message (receive count 0) standing for message `copyOf`; its id. */
  private async sendCopy(invocation: InvocationMessage, copyOf: string | undefined, delaySeconds: number): Promise<string | undefined> {
    const copy = { ...(JSON.parse(this.message.Body ?? '{}') as object), copyOf };
    const { MessageId } = await sqs().send(new SendMessageCommand({ QueueUrl: this.runtime.queueUrl, MessageBody: JSON.stringify(copy), DelaySeconds: delaySeconds }));
    logger.info('a fresh copy of the message carries the job on (last allowed delivery)', { requestId: invocation.requestId, copy: MessageId });
    return MessageId;
  }

  /**
   * Returns the job to the queue: the invocation QUEUED again (when we own it)
   * and the message visible after `delaySeconds`. On the last delivery SQS
   * allows, another receive would dead-letter the message, so a fresh copy
   * (receive count 0) carries the job on and the old message is deleted.
   */
  private async handBack(invocation: InvocationMessage, attempt: number, delaySeconds = 0): Promise<void> {
    const { requestId } = invocation;
    if (attempt < this.runtime.maxReceiveCount) {
      if (this.claimed && !(await releaseInvocation(requestId, this.owner))) return this.afterLoss(requestId);
      await this.changeVisibility(delaySeconds);
      return;
    }
    const copy = await this.sendCopy(invocation, this.message.MessageId, delaySeconds);
    // Should this fail, the copy finds the invocation held by a lapsing lease and waits for it.
    const released = this.claimed ? await releaseInvocation(requestId, this.owner, copy).catch((error: Error) => logger.warn('could not hand the invocation back', { requestId, error })) : true;
    if (released === false) logger.warn('lost the invocation while handing it back', { requestId, attempt });
    // The old message must not reach the dead-letter queue, where the invocation would be errored.
    await this.finalWrite('delete the replaced message', () => this.deleteMessage());
  }

  /**
   * The claim was lost. If the invocation is over, the message and the
   * directories are done with; otherwise they are the new owner's business
   * (it may run on this worker, in the same directories).
   */
  private async afterLoss(requestId: string, dirs?: Dirs): Promise<void> {
    const current = await getInvocation(requestId);
    if (current && !isTerminal(current.status)) return;
    if (dirs) await this.cleanUp(dirs);
    await this.deleteMessage();
  }

  /** Writes the outcome as the owner, retrying transient failures; false when the claim was lost. */
  private async record(requestId: string, outcome: Outcome): Promise<boolean> {
    let stored = outcome;
    for (let attempt = 1; ; attempt += 1) {
      if (this.lost) return false;
      try {
        return await finishInvocation(requestId, stored, this.owner);
      } catch (error) {
        // The item cannot hold this outcome (too large): record why instead of failing every redelivery the same way.
        if ((error as Error).name === 'ValidationException' && 'result' in stored) {
          logger.error('the result does not fit the invocation record', { requestId, error: error as Error });
          stored = { error: workerProblem(`Internal error while storing the result: ${(error as Error).message}`) };
          continue;
        }
        if (attempt >= FINAL_WRITE_ATTEMPTS) throw error;
        logger.warn('could not record the outcome; retrying', { requestId, error: error as Error });
        await sleep(250 * 2 ** attempt);
      }
    }
  }

  private async finalWrite(what: string, write: () => Promise<void>): Promise<void> {
    for (let attempt = 1; ; attempt += 1) {
      try {
        return await write();
      } catch (error) {
        if (attempt >= FINAL_WRITE_ATTEMPTS) {
          logger.error(`could not ${what}`, { messageId: this.message.MessageId, error: error as Error });
          return;
        }
        await sleep(250 * 2 ** attempt);
      }
    }
  }

  /** Per-delivery paths: the request's directories (NVCF layout) and this claim's own spill and zip files. */
  private dirs(requestId: string) {
    const { assetDir, outputDir } = this.runtime.config;
    return {
      assets: join(assetDir, requestId),
      output: join(outputDir, requestId),
      spill: join(outputDir, `${requestId}.${this.owner}.response`),
      zip: join(outputDir, `${requestId}.${this.owner}.zip`),
    };
  }

  /** Removes the delivery's directories and files; failures (a root container's files) are logged, never thrown. */
  private async cleanUp(dirs: Dirs): Promise<void> {
    await Promise.all(Object.values(dirs).map((path) => removeDir(path)));
  }

  private failure(error: unknown, attempt: number): InvocationError {
    const reason = (error as Error).message;
    if (error instanceof ContainerUnreachable) {
      return { status: 500, type: CONNECTION_ERROR_TYPE, title: reasonPhrase(500), detail: `Internal error while making inference request (${attempt} attempts): ${reason}` };
    }
    return workerProblem(`Internal error while processing the request (${attempt} attempts): ${reason}`);
  }

  private async execute(invocation: InvocationMessage, dirs: Dirs): Promise<Outcome> {
    const { requestId } = invocation;
    await Promise.all([freshDir(dirs.assets), freshDir(dirs.output)]);
    try {
      await Promise.all(invocation.assetIds.map((assetId) => this.downloadAsset(invocation.accountId, assetId, join(dirs.assets, assetId))));
    } catch (error) {
      if (!(error instanceof ObjectMissing)) throw error;
      return { error: workerProblem(`Internal error while downloading assets: ${error.message}`) };
    }
    this.throwIfInterrupted();
    const mirror = mirrorProgress(requestId, dirs.output, this.runtime.config.progressIntervalMs, () => (percent, partial) => recordProgress(requestId, this.owner, percent, partial));
    let response: ContainerResponse;
    try {
      response = await callContainer({
        url: this.runtime.inferenceUrl,
        headers: this.containerHeaders(invocation, dirs),
        body: this.requestBody(invocation.body, invocation.requestId),
        timeoutMs: this.runtime.config.inferenceTimeoutSeconds * 1000,
        spillFile: dirs.spill,
        signal: this.interrupt.signal,
      });
    } catch (error) {
      if (error instanceof ObjectMissing) return { error: workerProblem(`Internal error while reading the request: ${error.message}`) };
      if (!(error instanceof ResponseNotStored)) throw error;
      return { error: workerProblem(`Internal error while storing the result: ${error.message}`) };
    } finally {
      await mirror.stop();
    }
    // The container has answered: from here on nothing is retried, since a redelivery would run the job again.
    return this.durableOutcome(requestId, response, dirs);
  }

  /** The outcome to record for a container's answer: its error, or its result stored in the item or S3. */
  private async durableOutcome(requestId: string, response: ContainerResponse, dirs: Dirs): Promise<Outcome> {
    if (response.status >= 400) return { error: containerError(response) };
    try {
      return { result: await this.storeResult(requestId, response, dirs) };
    } catch (error) {
      if (this.lost) throw error;
      logger.error('the container answered but its result could not be stored', { requestId, error: error as Error });
      return { error: workerProblem(`Internal error while storing the result: ${(error as Error).message}`) };
    }
  }

  private throwIfInterrupted(): void {
    if (this.interrupt.signal.aborted) throw this.interrupt.signal.reason as Error;
  }

  /** Every NVCF-* header of nvcf-api.md §4.2 we can fill, over the client's forwarded headers. */
  private containerHeaders(invocation: InvocationMessage, dirs: Dirs): Record<string, string> {
    const { config, version } = this.runtime;
    const elapsed = Math.floor((Date.now() - Date.parse(invocation.acceptedAt)) / 1000);
    const platform: [string, string | undefined][] = [
      ['NVCF-BACKEND', config.backend],
      ['NVCF-INSTANCETYPE', config.instanceType],
      ['NVCF-REGION', config.region],
      ['NVCF-ENV', config.environment],
      // The API and its queues live in the worker's region. NVCF-NSPECTID (NVIDIA's scan id) has no counterpart here.
      ['NVCF-INVOCATION-REGION', config.region],
      ['NVCF-FUNCTION-ASSET-IDS', invocation.assetIds.length > 0 ? invocation.assetIds.join(',') : undefined],
    ];
    return {
      ...invocation.headers,
      'content-type': invocation.headers['content-type'] ?? 'application/json',
      'NVCF-REQID': invocation.requestId,
      'NVCF-NCAID': invocation.accountId,
      // API keys name an account, not a user: the account is the caller's subject.
      'NVCF-SUB': invocation.accountId,
      'NVCF-FUNCTION-NAME': version.name,
      'NVCF-FUNCTION-ID': version.functionId,
      'NVCF-FUNCTION-VERSION-ID': version.versionId,
      'NVCF-ASSET-DIR': dirs.assets,
      'NVCF-LARGE-OUTPUT-DIR': dirs.output,
      'NVCF-MAX-RESPONSE-SIZE-BYTES': String(MAX_RESPONSE_BYTES),
      // What is left of the client's wait; pollSeconds is already cut to what the API really waits.
      'NVCF-POLL-SECONDS': String(Math.max(0, invocation.pollSeconds - elapsed)),
      ...Object.fromEntries(platform.filter((entry): entry is [string, string] => entry[1] !== undefined)),
    };
  }

  private async downloadAsset(accountId: string, assetId: string, target: string): Promise<void> {
    let body: Readable;
    try {
      const object = await s3().send(new GetObjectCommand({ Bucket: bucketName(), Key: assetObjectKey(accountId, assetId) }), { abortSignal: this.interrupt.signal });
      body = object.Body as Readable;
    } catch (error) {
      if (isMissingObjectError(error)) throw new ObjectMissing(`asset ${assetId} has no content (never uploaded, or deleted)`);
      throw error;
    }
    await pipeline(body, createWriteStream(target, { mode: 0o644 }));
  }

  /** The body to send: inline bytes, or the spilled object streamed from S3 (never held in memory). */
  private requestBody(body: MessageBody, requestId: string): RequestBody {
    if (body.kind === 'inline') {
      const data = Buffer.from(body.data, body.encoding);
      return async () => ({ data, length: data.length });
    }
    const live = this.live;
    if (body.kind === 'attach' && live && !this.claimed) {
      // Kept in memory once read: a container call retried on a fresh connection sends it again.
      return async () => {
        this.attachedBody ??= readAll(live.body);
        const data = await this.attachedBody;
        return { data, length: data.length };
      };
    }
    // Spilled by the API (s3), or by the service when the call turned durable (attach).
    const key = body.kind === 's3' ? body.key : inputObjectKey(requestId);
    return async () => {
      try {
        const object = await s3().send(new GetObjectCommand({ Bucket: bucketName(), Key: key }), { abortSignal: this.interrupt.signal });
        return { data: object.Body as Readable, length: object.ContentLength ?? body.bytes };
      } catch (error) {
        if (isMissingObjectError(error)) throw new ObjectMissing(`the request body (${key}) is no longer stored`);
        throw error;
      }
    };
  }

  /**
   * Inline in the item when small; in S3 when larger; as a zip of the
   * response and the finished output files (answered with 302) when there are
   * files, the body exceeds MAX_RESPONSE_BYTES, or it would not fit Lambda's
   * response once JSON-escaped or base64-encoded. Keys carry the owner token.
   */
  private async storeResult(requestId: string, response: ContainerResponse, dirs: Dirs): Promise<InvocationResult> {
    const files = await finishedFiles(dirs.output);
    const { status, headers, body } = response;
    if (body && files.length === 0 && lambdaBodyBytes(body) <= MAX_DIRECT_RESPONSE_PAYLOAD_BYTES) {
      if (body.length <= MAX_INLINE_RESULT_BYTES) return { status, headers, body };
      const key = resultBodyKey(requestId, this.owner);
      await s3().send(new PutObjectCommand({ Bucket: bucketName(), Key: key, Body: body, ContentLength: body.length }));
      return { status, headers, bodyKey: key };
    }
    const entries: ZipEntry[] = [
      { name: `${requestId}.response`, source: body ?? { file: response.file! } },
      ...files.map((name) => ({ name, source: { file: join(dirs.output, name) } })),
    ];
    await writeZip(dirs.zip, entries);
    const key = resultZipKey(requestId, this.owner);
    await s3().send(
      new PutObjectCommand({
        Bucket: bucketName(),
        Key: key,
        Body: createReadStream(dirs.zip),
        ContentLength: (await stat(dirs.zip)).size,
        ContentType: 'application/zip',
      }),
    );
    return { status, headers, zipKey: key };
  }

  /** Renews the claim and the message's visibility together, every third of the lease. */
  private startLease(requestId: string): void {
    const { leaseSeconds } = this.runtime.config;
    this.leaseTimer = setInterval(() => void this.renew(requestId, leaseSeconds), (leaseSeconds * 1000) / 3);
  }

  private async renew(requestId: string, leaseSeconds: number): Promise<void> {
    // A job being handed back may still be storing its result: its claim is renewed until it is done.
    if (this.renewing || this.lost) return;
    this.renewing = true;
    try {
      const leaseMs = leaseSeconds * 1000;
      const asked = Date.now();
      const [owned] = await Promise.all([
        // A live call not (yet) durable has no item to hold: only its message is kept hidden.
        (!this.claimed && this.live ? Promise.resolve(true) : renewLease(requestId, this.owner, leaseMs)).then(
          (renewed) => {
            if (renewed) this.leaseUntil = asked + leaseMs;
            return renewed;
          },
          (error: Error) => {
            logger.warn('could not renew the claim', { requestId, error });
            // Unsure: ours until the lease we know of runs out; past that, another delivery may have taken over.
            return Date.now() < this.leaseUntil;
          },
        ),
        this.changeVisibility(leaseSeconds).catch((error: Error) => logger.warn('could not extend the message visibility', { requestId, error })),
      ]);
      if (!owned && this.leaseTimer) {
        logger.warn('the claim on the invocation was lost; stopping the job', { requestId });
        this.stopLease();
        this.interrupt.abort(new Interrupted('lost'));
      }
    } finally {
      this.renewing = false;
    }
  }

  private stopLease(): void {
    clearInterval(this.leaseTimer);
    this.leaseTimer = undefined;
  }

  private async changeVisibility(seconds: number): Promise<void> {
    await sqs().send(new ChangeMessageVisibilityCommand({ QueueUrl: this.runtime.queueUrl, ReceiptHandle: this.message.ReceiptHandle, VisibilityTimeout: seconds }));
  }

  private async deleteMessage(): Promise<void> {
    await sqs().send(new DeleteMessageCommand({ QueueUrl: this.runtime.queueUrl, ReceiptHandle: this.message.ReceiptHandle }));
  }

  /** Result objects of an outcome that was not recorded: nothing points at them. */
  private async deleteOwnObjects(outcome: Outcome): Promise<void> {
    if (!('result' in outcome)) return;
    for (const key of [outcome.result.bodyKey, outcome.result.zipKey]) if (key) await this.deleteObject(key, 'an unrecorded result');
  }

  private async deleteObject(key: string, what: string): Promise<void> {
    await s3()
      .send(new DeleteObjectCommand({ Bucket: bucketName(), Key: key }))
      .catch((error: Error) => logger.warn(`could not delete ${what}; the lifecycle rule will`, { key, error }));
  }
}
