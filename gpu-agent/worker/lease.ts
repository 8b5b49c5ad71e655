/**
 * A delivery's hold on its job: its SQS message (visibility, deletion, a
 * fresh copy) and the claim's lease on the invocation item, renewed together
 * every third of the lease (DESIGN.md "Invocation path", step 2); the claim
 * itself, and the outcome written as its owner.
 *
 * Ownership: the delivery claims the invocation under a fresh owner token and
 * a lease (core/invocations.ts), renewed together with the message's
 * visibility. A delivery that finds the invocation held by a live lease waits
 * for the lease (its message's visibility is pushed to the lease's end), or,
 * when its message is a duplicate of the owner's, deletes it. An owner that
 * finds its lease lost stops the container call and leaves everything it does
 * not own alone. The terminal write is conditional on the owner: a delivery
 * that lost the invocation never records an outcome, and its S3 objects have
 * keys of their own.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { ChangeMessageVisibilityCommand, DeleteMessageCommand, SendMessageCommand, type Message } from '@aws-sdk/client-sqs';
import { sqs } from '../../core/aws';
import { claimInvocation, finishInvocation, renewLease, type Claim, type ClaimRequest, type Outcome } from '../../core/invocations';
import { logger } from './config';
import { workerProblem } from './errors';

/** Attempts at the writes that end a delivery (outcome, message delete) before it is left to redelivery. */
export const FINAL_WRITE_ATTEMPTS = 4;

/** Waits before retry `attempt` of a final write. */
export function finalWriteBackoff(attempt: number): Promise<void> {
  return sleep(250 * 2 ** attempt);
}

/** One received invocation message. */
export class DeliveryMessage {
  constructor(
    private readonly queueUrl: string,
    readonly message: Message,
  ) {}

  get id(): string | undefined {
    return this.message.MessageId;
  }

  /** Hides the message for `seconds` more (0: visible now, or to the dead-letter queue at the next receive). */
  async changeVisibility(seconds: number): Promise<void> {
    await sqs().send(new ChangeMessageVisibilityCommand({ QueueUrl: this.queueUrl, ReceiptHandle: this.message.ReceiptHandle, VisibilityTimeout: seconds }));
  }

  async delete(): Promise<void> {
    await sqs().send(new DeleteMessageCommand({ QueueUrl: this.queueUrl, ReceiptHandle: this.message.ReceiptHandle }));
  }

  /** Deletes the message, retrying; a message that cannot be deleted is logged and left to come back. */
  deleteFinally(what = 'delete the message'): Promise<void> {
    return this.finalWrite(what, () => this.delete());
  }

  /** Sends a fresh copy of the message (receive count 0) standing for message `copyOf`; its id. */
  async sendCopy(requestId: string, copyOf: string | undefined, delaySeconds: number): Promise<string | undefined> {
    const copy = { ...(JSON.parse(this.message.Body ?? '{}') as object), copyOf };
    const { MessageId } = await sqs().send(new SendMessageCommand({ QueueUrl: this.queueUrl, MessageBody: JSON.stringify(copy), DelaySeconds: delaySeconds }));
    logger.info('a fresh copy of the message carries the job on (last allowed delivery)', { requestId, copy: MessageId });
    return MessageId;
  }

  /** Runs a write that ends the delivery, retrying with backoff; after FINAL_WRITE_ATTEMPTS it is logged and given up. */
  async finalWrite(what: string, write: () => Promise<void>): Promise<void> {
    for (let attempt = 1; ; attempt += 1) {
      try {
        return await write();
      } catch (error) {
        if (attempt >= FINAL_WRITE_ATTEMPTS) {
          logger.error(`could not ${what}`, { messageId: this.message.MessageId, error: error as Error });
          return;
        }
        await finalWriteBackoff(attempt);
      }
    }
  }
}

export interface LeaseHolder {
  requestId: string;
  /** Token of the delivery's claim. */
  owner: string;
  leaseSeconds: number;
  message: DeliveryMessage;
  /** Whether there is an item to renew: a live call not (yet) durable has none, only its message is kept hidden. */
  holdsItem(): boolean;
  /** Whether the claim is already known lost (renewal stops). */
  isLost(): boolean;
  /** Told once when a renewal finds the claim lost. */
  onLost(): void;
}

/** The claim's lease and the message's visibility, renewed together while the job runs. */
export class Lease {
  private timer: NodeJS.Timeout | undefined;
  private renewing = false;
  /** Our own estimate of when the lease ends: at most what the item holds. */
  until = 0;

  constructor(private readonly holder: LeaseHolder) {}

  /** Renews every third of the lease until stopped. */
  start(): void {
    const { leaseSeconds } = this.holder;
    this.timer = setInterval(() => void this.renew(), (leaseSeconds * 1000) / 3);
  }

  stop(): void {
    clearInterval(this.timer);
    this.timer = undefined;
  }

  private async renew(): Promise<void> {
    const { requestId, owner, leaseSeconds, message } = this.holder;
    // A job being handed back may still be storing its result: its claim is renewed until it is done.
    if (this.renewing || this.holder.isLost()) return;
    this.renewing = true;
    try {
      const leaseMs = leaseSeconds * 1000;
      const asked = Date.now();
      const [owned] = await Promise.all([
        (this.holder.holdsItem() ? renewLease(requestId, owner, leaseMs) : Promise.resolve(true)).then(
          (renewed) => {
            if (renewed) this.until = asked + leaseMs;
            return renewed;
          },
          (error: Error) => {
            logger.warn('could not renew the claim', { requestId, error });
            // Unsure: ours until the lease we know of runs out; past that, another delivery may have taken over.
            return Date.now() < this.until;
          },
        ),
        message.changeVisibility(leaseSeconds).catch((error: Error) => logger.warn('could not extend the message visibility', { requestId, error })),
      ]);
      if (!owned && this.timer) {
        logger.warn('the claim on the invocation was lost; stopping the job', { requestId });
        this.stop();
        this.holder.onLost();
      }
    } finally {
      this.renewing = false;
    }
  }
}

/** Claims the invocation; a claim held with no lease (handed back between the claim's write and its read) is tried once more. */
export async function claim(requestId: string, request: ClaimRequest): Promise<Claim> {
  const result = await claimInvocation(requestId, request);
  return result.kind === 'held' && result.leaseUntil === undefined ? claimInvocation(requestId, request) : result;
}

/** Writes the outcome as owner `owner`, retrying transient failures; false when the claim was lost. */
export async function recordOutcome(requestId: string, outcome: Outcome, owner: string, isLost: () => boolean): Promise<boolean> {
  let stored = outcome;
  for (let attempt = 1; ; attempt += 1) {
    if (isLost()) return false;
    try {
      return await finishInvocation(requestId, stored, owner);
    } catch (error) {
      // The item cannot hold this outcome (too large): record why instead of failing every redelivery the same way.
      if ((error as Error).name === 'ValidationException' && 'result' in stored) {
        logger.error('the result does not fit the invocation record', { requestId, error: error as Error });
        stored = { error: workerProblem(`Internal error while storing the result: ${(error as Error).message}`) };
        continue;
      }
      if (attempt >= FINAL_WRITE_ATTEMPTS) throw error;
      logger.warn('could not record the outcome; retrying', { requestId, error: error as Error });
      await finalWriteBackoff(attempt);
    }
  }
}
