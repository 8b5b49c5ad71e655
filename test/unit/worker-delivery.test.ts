import { describe, expect, it } from 'vitest';
import { MAX_DELAY_SECONDS, MAX_VISIBILITY_SECONDS, ORPHAN_AFTER_MS, afterAttach, afterClaim, afterFailure, whileHeld, type DeliveryFacts } from '../../gpu-agent/worker/delivery';

const facts = (attempt: number, maxReceiveCount = 3): DeliveryFacts => ({ attempt, maxReceiveCount, leaseSeconds: 30 });
const now = 1_000_000;
const context = { storeDecides: false, messageAgeMs: 1000, messageId: 'm1', now };

describe('after attaching to the invocation service', () => {
  it('runs a live call on the attach channel', () => {
    expect(afterAttach('live', 10)).toEqual({ kind: 'run-live' });
  });

  it('drops a call that is finished or was cancelled, so it never runs twice or at all', () => {
    expect(afterAttach('finished', 10).kind).toBe('drop');
    expect(afterAttach('canceled', 10).kind).toBe('drop');
  });

  it('asks the store, which then decides alone, for a durable call or one the service does not know', () => {
    expect(afterAttach('durable', 10)).toEqual({ kind: 'claim', storeDecides: true });
    expect(afterAttach('unknown', 10)).toEqual({ kind: 'claim', storeDecides: true });
  });

  it('treats a call another delivery of the same message runs like a claim held by it (waited for, never run twice)', () => {
    expect(afterAttach('held', 10)).toEqual({ kind: 'claim', storeDecides: false });
  });

  it('looks again once the caller’s window is over when the service cannot be reached, then asks the store', () => {
    expect(afterAttach('unreachable', 42)).toEqual({ kind: 'wait', seconds: 42 });
    expect(afterAttach('unreachable', 0)).toEqual({ kind: 'claim', storeDecides: true });
  });
});

describe('after claiming in the store', () => {
  it('runs a claimed invocation and drops a finished one', () => {
    expect(afterClaim({ kind: 'claimed', leaseUntil: now + 30_000 }, facts(1), context)).toEqual({ kind: 'run' });
    expect(afterClaim({ kind: 'finished' }, facts(1), context).kind).toBe('drop');
  });

  it('drops at once a sync call the store does not know once the service no longer holds it: its caller is gone', () => {
    expect(afterClaim({ kind: 'missing' }, facts(1), { ...context, storeDecides: true }).kind).toBe('drop');
  });

  it('leaves a young message whose invocation is missing (its item may be on the way) and drops an old one', () => {
    expect(afterClaim({ kind: 'missing' }, facts(1), context)).toEqual({ kind: 'leave' });
    expect(afterClaim({ kind: 'missing' }, facts(1), { ...context, messageAgeMs: ORPHAN_AFTER_MS + 1 }).kind).toBe('drop');
  });
});

describe('while another delivery holds the invocation', () => {
  it('drops a duplicate message of a running invocation', () => {
    expect(whileHeld({ kind: 'held', leaseUntil: now + 5000, messageId: 'other' }, facts(1), context).kind).toBe('drop');
  });

  it('keeps a fresh copy that stands for the owner’s message', () => {
    expect(whileHeld({ kind: 'held', leaseUntil: now + 5000, messageId: 'owner' }, facts(1), { ...context, copyOf: 'owner' })).toEqual({ kind: 'wait', seconds: 6 });
  });

  it('waits out the owner’s lease (plus a second) on its own message redelivered early', () => {
    expect(whileHeld({ kind: 'held', leaseUntil: now + 5000, messageId: 'm1' }, facts(1), context)).toEqual({ kind: 'wait', seconds: 6 });
    expect(whileHeld({ kind: 'held', messageId: 'm1' }, facts(1), context)).toEqual({ kind: 'wait', seconds: 1 });
    expect(whileHeld({ kind: 'held', leaseUntil: now + 10 ** 9, messageId: 'm1' }, facts(1), context)).toEqual({ kind: 'wait', seconds: MAX_VISIBILITY_SECONDS });
  });

  it('replaces the message with a delayed copy on the last allowed delivery, so a running job is never dead-lettered', () => {
    expect(whileHeld({ kind: 'held', leaseUntil: now + 5000, messageId: 'm1' }, facts(3), context)).toEqual({ kind: 'copy', delaySeconds: 6 });
    expect(whileHeld({ kind: 'held', leaseUntil: now + 10 ** 9, messageId: 'm1' }, facts(3), context)).toEqual({ kind: 'copy', delaySeconds: MAX_DELAY_SECONDS });
  });
});

describe('after a run without an outcome', () => {
  it('hands a job back with exponential backoff, at most a lease, while deliveries remain', () => {
    expect(afterFailure('transient', facts(1, 10))).toEqual({ kind: 'hand-back', delaySeconds: 1 });
    expect(afterFailure('transient', facts(3, 10))).toEqual({ kind: 'hand-back', delaySeconds: 4 });
    expect(afterFailure('transient', facts(9, 10))).toEqual({ kind: 'hand-back', delaySeconds: 30 });
  });

  it('records the failure on the last allowed delivery, for the dead-letter queue', () => {
    expect(afterFailure('transient', facts(3))).toEqual({ kind: 'dead-letter' });
  });

  it('hands a job back at once when the worker shuts down, drops a cancelled one and leaves a lost one to its owner', () => {
    expect(afterFailure('released', facts(3))).toEqual({ kind: 'hand-back', delaySeconds: 0 });
    expect(afterFailure('canceled', facts(1)).kind).toBe('drop');
    expect(afterFailure('lost', facts(1))).toEqual({ kind: 'leave' });
  });
});
