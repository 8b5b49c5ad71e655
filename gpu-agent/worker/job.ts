/**
 * One delivery of one invocation message, from claim to deleted message
 * (DESIGN.md "Invocation path", step 2): the orchestration. What to do at
 * each turn is decided in delivery.ts (pure); the claim, its lease and the
 * message are in lease.ts, the container call as the store's owner in run.ts,
 * a sync call answered over the attach channel in live.ts, S3 in objects.ts,
 * directories in request-dirs.ts, the container's headers in
 * container-headers.ts, problems in errors.ts.
 *
 * Ownership (who may run and record an invocation) is told in lease.ts;
 * what each failure leads to, in delivery.ts.
 */
import type { Message } from '@aws-sdk/client-sqs';
import { invocationMessageSchema, type InvocationMessage } from '../../core/invocation-message';
import { finishInvocation, getInvocation, newOwnerToken, releaseInvocation, type Claim, type Outcome } from '../../core/invocations';
import { isTerminal, type FunctionVersionRecord } from '../../core/model';
import { GRPC_SESSION_KIND } from '../../core/grpc';
import { attach } from './attach';
import { afterAttach, afterClaim, afterFailure, whileHeld, type DeliveryFacts, type Step } from './delivery';
import { ContainerUnreachable } from './container';
import { logger, type WorkerConfig } from './config';
import { Interrupted, lastDeliveryProblem } from './errors';
import { serveGrpcSession } from './grpc-session';
import { DeliveryMessage, Lease, claim, recordOutcome } from './lease';
import { LiveDelivery, secondsLeftOfLiveWindow } from './live';
import { deleteObject, deleteUnrecordedResult, spilledBodyKey } from './objects';
import { runDurable, type RunContext } from './run';
import { removeRequestDirs, requestDirs, type RequestDirs } from './request-dirs';

/** What every job of a worker shares. */
export interface JobRuntime {
  config: WorkerConfig;
  version: FunctionVersionRecord;
  queueUrl: string;
  /** Deliveries SQS allows before the dead-letter queue (the queue's RedrivePolicy). */
  maxReceiveCount: number;
  /** Full URL of the container's inference endpoint. */
  inferenceUrl: string;
  /** Base URL of the container (scheme, host and inference port): gRPC sessions speak HTTP/2 to it. */
  containerBaseUrl: string;
  /** Aborted when the worker starts to stop: gRPC sessions then tell the service GOAWAY, so their callers move on. */
  stopping: AbortSignal;
  /** Told when the container could not be reached, so the worker checks its health before taking more work. */
  onContainerUnreachable(): void;
}

export class Job implements RunContext {
  /** Token of this delivery's claim. */
  readonly owner = newOwnerToken();
  /** ApproximateReceiveCount of this delivery. */
  readonly attempt: number;
  readonly delivery: DeliveryMessage;
  // Shared with live.ts, which runs a sync call on this job's behalf.
  readonly interrupt = new AbortController();
  lease: Lease | undefined;
  /** This delivery owns the invocation item. */
  claimed = false;
  releaseRequested = false;
  /** The attach channel of a live call (the caller waits on the invocation service). */
  private live: LiveDelivery | undefined;
  private done: Promise<void> | undefined;

  constructor(
    readonly runtime: JobRuntime,
    readonly message: Message,
  ) {
    this.attempt = Number(message.Attributes?.ApproximateReceiveCount ?? 1);
    this.delivery = new DeliveryMessage(runtime.queueUrl, message);
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

  get lost(): boolean {
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
      this.lease?.stop();
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
        return this.delivery.deleteFinally();
      case 'wait':
        return this.delivery.changeVisibility(step.seconds);
      case 'copy':
        // The next receive would dead-letter the message of a job that still runs (its owner's visibility lapsed).
        await this.delivery.sendCopy(invocation.requestId, copyOf ?? this.message.MessageId, step.delaySeconds);
        return this.delivery.deleteFinally('delete the replaced message');
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
    if (invocation.session === GRPC_SESSION_KIND && invocation.replyTo) return serveGrpcSession(this, invocation);
    const { leaseSeconds } = this.runtime.config;
    const holder = { requestId, owner: this.owner, leaseSeconds, message: this.delivery, isLost: () => this.lost };
    this.lease = new Lease({ ...holder, holdsItem: () => this.claimed || !this.live, onLost: () => this.interrupt.abort(new Interrupted('lost')) });
    // A sync call: the service holding the caller says what to do; only a durable (or forgotten) call goes to the store.
    let storeDecides = false;
    if (invocation.replyTo) {
      const attached = await attach(invocation.replyTo, requestId, this.runtime.config.instanceId);
      if (attached.state === 'live') {
        this.live = new LiveDelivery(this, attached.channel);
        return this.live.run(invocation);
      }
      if (attached.state === 'held') {
        // Another delivery of this message runs it (a lapsed visibility): wait as for a held claim.
        const held = { kind: 'held' as const, leaseUntil: Date.now() + leaseSeconds * 1000, messageId: this.message.MessageId };
        return this.take(whileHeld(held, this.facts, { messageId: this.message.MessageId, copyOf: invocation.copyOf, now: Date.now() }), invocation);
      }
      if (attached.state === 'unreachable') logger.warn('could not attach to the invocation service', { requestId, reason: attached.reason });
      const step = afterAttach(attached.state, secondsLeftOfLiveWindow(invocation));
      if (step.kind !== 'claim') return this.take(step, invocation);
      storeDecides = step.storeDecides;
    }
    const claim = await this.claim(requestId);
    const step = afterClaim(claim, this.facts, { storeDecides, messageAgeMs: Date.now() - Date.parse(invocation.acceptedAt), messageId: this.message.MessageId, copyOf: invocation.copyOf, now: Date.now() });
    if (step.kind !== 'run' || claim.kind !== 'claimed') return this.take(step, invocation, claim.kind === 'held' ? claim.messageId : undefined);

    this.claimed = true;
    this.lease.until = claim.leaseUntil;
    this.lease.start();
    const dirs = requestDirs(this.runtime.config, requestId, this.owner);
    let outcome: Outcome;
    try {
      outcome = await runDurable(this, invocation, dirs);
    } catch (error) {
      return this.afterRunFailure(invocation, dirs, error);
    }
    return this.finishDurable(invocation, outcome, dirs);
  }

  /** A run ended without an outcome: what delivery.ts decides for the failure. */
  async afterRunFailure(invocation: InvocationMessage, dirs: RequestDirs, error: unknown): Promise<void> {
    const { requestId } = invocation;
    this.lease?.stop();
    const reason = (this.interrupt.signal.reason as Interrupted | undefined)?.reason;
    if (reason === 'lost') return this.afterLoss(requestId, dirs);
    await removeRequestDirs(dirs);
    if (error instanceof ContainerUnreachable) this.runtime.onContainerUnreachable();
    const step = afterFailure(reason ?? (this.releaseRequested ? 'released' : 'transient'), this.facts);
    if (step.kind === 'dead-letter') {
      logger.error('last delivery failed; the invocation errors', { requestId, attempt: this.attempt, error: error as Error });
      const failure = { error: lastDeliveryProblem(error, this.attempt) };
      if (this.live && !this.claimed) return this.live.end(requestId, failure);
      if (!(await finishInvocation(requestId, failure, this.owner))) return this.afterLoss(requestId, dirs);
      // Released, the message goes to the dead-letter queue at its next receive.
      return this.delivery.changeVisibility(0);
    }
    if (step.kind === 'hand-back') {
      if (this.live && !this.claimed) this.live.channel.release();
      logger.warn('delivery failed; the job is handed back for another delivery', { requestId, attempt: this.attempt, error: error as Error });
    }
    return this.take(step, invocation);
  }

  /** Records the outcome as the owner, then ends the delivery. */
  async finishDurable(invocation: InvocationMessage, outcome: Outcome, dirs: RequestDirs): Promise<void> {
    const { requestId } = invocation;
    // The lease keeps running while the outcome is written: a slow write must not let another delivery in.
    const recorded = await recordOutcome(requestId, outcome, this.owner, () => this.lost);
    this.lease?.stop();
    if (!recorded) {
      logger.info('the invocation is no longer ours; this outcome is dropped', { requestId });
      await deleteUnrecordedResult(outcome);
      return this.afterLoss(requestId, dirs);
    }
    await removeRequestDirs(dirs);
    await this.delivery.deleteFinally();
    const spilled = spilledBodyKey(invocation.body, requestId);
    if (spilled) await deleteObject(spilled, 'the spilled request body');
  }

  /** Claims the invocation for this delivery. */
  claim(requestId: string): Promise<Claim> {
    return claim(requestId, { owner: this.owner, attempt: this.attempt, instanceId: this.runtime.config.instanceId, messageId: this.message.MessageId, leaseMs: this.runtime.config.leaseSeconds * 1000 });
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
      await this.delivery.changeVisibility(delaySeconds);
      return;
    }
    const copy = await this.delivery.sendCopy(requestId, this.message.MessageId, delaySeconds);
    // Should this fail, the copy finds the invocation held by a lapsing lease and waits for it.
    const released = this.claimed ? await releaseInvocation(requestId, this.owner, copy).catch((error: Error) => logger.warn('could not hand the invocation back', { requestId, error })) : true;
    if (released === false) logger.warn('lost the invocation while handing it back', { requestId, attempt });
    // The old message must not reach the dead-letter queue, where the invocation would be errored.
    await this.delivery.deleteFinally('delete the replaced message');
  }

  /**
   * The claim was lost. If the invocation is over, the message and the
   * directories are done with; otherwise they are the new owner's business
   * (it may run on this worker, in the same directories).
   */
  async afterLoss(requestId: string, dirs?: RequestDirs): Promise<void> {
    const current = await getInvocation(requestId);
    if (current && !isTerminal(current.status)) return;
    if (dirs) await removeRequestDirs(dirs);
    await this.delivery.delete();
  }
}
