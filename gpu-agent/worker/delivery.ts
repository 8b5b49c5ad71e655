/**
 * The delivery decision (pure): given what one delivery of an invocation
 * message has learnt — from the invocation service that holds the caller,
 * from the store, or from a failed run — what the worker does next. job.ts
 * carries the decisions out; nothing here does I/O.
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
 */
import type { AttachState } from '../../core/attach';
import type { Claim } from '../../core/invocations';

/** SQS's longest visibility timeout. */
export const MAX_VISIBILITY_SECONDS = 43_200;
/** SQS's longest message delay. */
export const MAX_DELAY_SECONDS = 900;
/** A message older than this whose invocation is missing belongs to an expired or never-stored request. */
export const ORPHAN_AFTER_MS = 60_000;

/** What a delivery knows of itself. */
export interface DeliveryFacts {
  /** ApproximateReceiveCount of this delivery. */
  attempt: number;
  /** Deliveries SQS allows before the dead-letter queue. */
  maxReceiveCount: number;
  leaseSeconds: number;
}

export type Step =
  /** Run the call live: the answer goes back over the attach channel. */
  | { kind: 'run-live' }
  /** Ask the store (claim the invocation item). */
  | { kind: 'claim'; storeDecides: boolean }
  /** Run the call as the store's owner. */
  | { kind: 'run' }
  /** Nothing is left to do: delete the message. */
  | { kind: 'drop'; why: string }
  /** Leave the message alone (it comes back after its visibility, or goes to the dead-letter queue). */
  | { kind: 'leave' }
  /** Keep the message hidden this long, then look again. */
  | { kind: 'wait'; seconds: number }
  /** The next receive would dead-letter a call that still runs: a fresh copy (delayed) carries it on, and this message goes. */
  | { kind: 'copy'; delaySeconds: number }
  /** Give the job back for another delivery, visible again after `delaySeconds`. */
  | { kind: 'hand-back'; delaySeconds: number }
  /** The last allowed delivery failed: record the failure; the message goes to the dead-letter queue. */
  | { kind: 'dead-letter' };

/** How a run ended without an outcome. */
export type RunFailure =
  /** The claim was lost to another delivery: leave what it owns alone. */
  | 'lost'
  /** The worker shuts down and hands the job back. */
  | 'released'
  /** The caller cancelled (or left) the call. */
  | 'canceled'
  /** The container could not be reached, or AWS failed before the container answered. */
  | 'transient';

/**
 * After attaching to the service named in the message's reply address.
 * `secondsLeftOfWindow`: how long the caller may still be waiting there.
 */
export function afterAttach(answer: AttachState | 'unreachable', secondsLeftOfWindow: number): Step {
  switch (answer) {
    case 'live':
      return { kind: 'run-live' };
    case 'finished':
    case 'canceled':
      return { kind: 'drop', why: `the call is ${answer}` };
    case 'unreachable':
      // The caller may still wait there: look again once its window is surely over, when the store decides.
      if (secondsLeftOfWindow > 0) return { kind: 'wait', seconds: Math.min(secondsLeftOfWindow, MAX_VISIBILITY_SECONDS) };
      return { kind: 'claim', storeDecides: true };
    case 'held':
      // Handled as a claim held by this message's own other delivery (whileHeld).
      return { kind: 'claim', storeDecides: false };
    case 'durable':
    case 'unknown':
      return { kind: 'claim', storeDecides: true };
  }
}

/**
 * After claiming the invocation in the store. `storeDecides`: the service
 * no longer holds the caller, so a missing item means the caller is gone.
 */
export function afterClaim(claim: Claim, facts: DeliveryFacts, context: { storeDecides: boolean; messageAgeMs: number; messageId?: string; copyOf?: string; now: number }): Step {
  switch (claim.kind) {
    case 'claimed':
      return { kind: 'run' };
    case 'finished':
      return { kind: 'drop', why: 'the invocation has its outcome' };
    case 'missing':
      if (context.storeDecides) return { kind: 'drop', why: 'a sync call that never became durable: its caller is gone' };
      return context.messageAgeMs > ORPHAN_AFTER_MS ? { kind: 'drop', why: 'the invocation does not exist' } : { kind: 'leave' };
    case 'held':
      return whileHeld(claim, facts, context);
  }
}

/**
 * A live claim holds the invocation. A duplicate of its message (a retried
 * send) is dropped: the owner's own message comes back if the owner dies.
 * The owner's message itself, redelivered early, waits out the lease — or,
 * on the last allowed delivery, is replaced by a fresh copy.
 */
export function whileHeld(held: Extract<Claim, { kind: 'held' }>, facts: DeliveryFacts, context: { messageId?: string; copyOf?: string; now: number }): Step {
  const duplicate = held.messageId !== undefined && held.messageId !== context.messageId && context.copyOf !== held.messageId;
  if (duplicate) return { kind: 'drop', why: 'a duplicate message of a running invocation' };
  const seconds = Math.min(MAX_VISIBILITY_SECONDS, Math.max(1, Math.ceil(((held.leaseUntil ?? context.now) - context.now) / 1000) + 1));
  if (facts.attempt < facts.maxReceiveCount) return { kind: 'wait', seconds };
  return { kind: 'copy', delaySeconds: Math.min(MAX_DELAY_SECONDS, seconds) };
}

/** After a run that ended without an outcome. */
export function afterFailure(failure: RunFailure, facts: DeliveryFacts): Step {
  switch (failure) {
    case 'lost':
      return { kind: 'leave' };
    case 'canceled':
      return { kind: 'drop', why: 'the caller cancelled the call' };
    case 'released':
      return { kind: 'hand-back', delaySeconds: 0 };
    case 'transient':
      if (facts.attempt >= facts.maxReceiveCount) return { kind: 'dead-letter' };
      // Exponential back-off, never longer than a lease.
      return { kind: 'hand-back', delaySeconds: Math.min(facts.leaseSeconds, 2 ** (facts.attempt - 1)) };
  }
}
