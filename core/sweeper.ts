/**
 * Housekeeping of the deployments' queues, run every minute (the `sweeper`
 * Lambda on AWS, a timer of `npm start` locally). Each pass is idempotent:
 * - an invocation whose message moved to a deployed version's dead-letter
 *   queue (every delivery failed, or its worker died each time) becomes
 *   ERRORED; the message stays there for inspection;
 * - a queue no deployment refers to (undeployed, its version deleted, or made
 *   by a deploy that lost a race or crashed) is drained, its waiting
 *   invocations becoming ERRORED, and deleted once it has been retired for
 *   SWEEPER.quietMs and holds nothing (a message in flight belongs to a worker
 *   that still finishes or hands back its job). A dead-letter queue goes after
 *   its queue, so that no message is redriven into a deleted one;
 * - on EKS, every GPU nodegroup is sized for what is deployed, repairing a
 *   sizing that failed when a deployment changed.
 */
import { maxReceiveCount } from './config';
import { listDeployedVersions, sizeAllGpuNodegroups } from './deployments';
import { UNDEPLOYED_ERROR, deadLetteredError, drainQueue } from './drain';
import type { InvocationError } from './invocations';
import { DEAD_LETTER_SUFFIX } from './names';
import { UNDEPLOYED_AT_TAG, deleteQueue, listPlatformQueues, queueCounts, queueTags, tagQueue } from './queues';

export const SWEEPER = {
  /** A queue this young with no deployment may belong to a deploy still writing its record. */
  deployGraceMs: 120_000,
  /**
   * How long a retired queue stays before it is deleted, even when empty: an
   * invocation that read its version as deployed may still send to it (the
   * invocations Lambda runs for at most 30 s), and is then errored here.
   */
  quietMs: 60_000,
  /** A retired queue whose messages stay in flight this long is deleted all the same. */
  drainLimitMs: 3_600_000,
  /** Share of a pass one queue may spend receiving. */
  drainBudgetMs: 5_000,
  /** Retired queues swept side by side. */
  parallelQueues: 10,
} as const;

export interface SweepReport {
  /** Invocations turned ERRORED: dead-lettered, or waiting in a retired queue. */
  errored: number;
  /** Queues deleted in this pass. */
  deleted: string[];
  /** Why a GPU nodegroup could not be sized (EKS only); the next pass tries again. */
  nodegroupError?: unknown;
}

export interface SweepOptions {
  /** The pass's idea of the current time, epoch milliseconds (tests move it forward). */
  now?: number;
  /** Epoch milliseconds by which the pass stops starting work; what is left waits for the next pass. */
  deadline?: number;
}

/** One pass over every queue of the installation. */
export async function sweepQueues({ now = Date.now(), deadline = Infinity }: SweepOptions = {}): Promise<SweepReport> {
  const budget = () => Math.min(Date.now() + SWEEPER.drainBudgetMs, deadline);
  const [versions, urls] = await Promise.all([listDeployedVersions(), listPlatformQueues()]);
  const report: SweepReport = { errored: 0, deleted: [] };
  const deadLetterError = deadLetteredError(maxReceiveCount());

  const referenced = new Set(versions.flatMap(({ deployment }) => [deployment.queueUrl, deployment.deadLetterQueueUrl]));
  const deadLetterQueues = versions.map(({ deployment }) => deployment.deadLetterQueueUrl).filter((url) => urls.includes(url));
  const deadLettered = await Promise.all(
    deadLetterQueues.map((url) => drainQueue(url, deadLetterError, { deadline: budget(), keepMessages: true, waitSeconds: 0 })),
  );
  report.errored += deadLettered.reduce((sum, drained) => sum + drained.errored, 0);

  // Queues first, then the dead-letter queues whose queue is gone; the queues of one round side by side.
  const retired = urls.filter((url) => !referenced.has(url));
  const remaining = new Set(urls);
  for (const deadLetterRound of [false, true]) {
    const round = retired.filter((url) => url.endsWith(DEAD_LETTER_SUFFIX) === deadLetterRound && !(deadLetterRound && remaining.has(url.slice(0, -DEAD_LETTER_SUFFIX.length))));
    for (let i = 0; i < round.length && Date.now() < deadline; i += SWEEPER.parallelQueues) {
      const batch = round.slice(i, i + SWEEPER.parallelQueues);
      // Only its own queue's redrive sends to a dead-letter queue, and that queue is gone: no quiet period.
      const options = { quietMs: deadLetterRound ? 0 : SWEEPER.quietMs, now, deadline: budget() };
      const outcomes = await Promise.all(batch.map((url) => sweepRetiredQueue(url, deadLetterRound ? deadLetterError : UNDEPLOYED_ERROR, options)));
      outcomes.forEach((outcome, j) => {
        report.errored += outcome.errored;
        if (!outcome.deleted) return;
        report.deleted.push(batch[j]!);
        remaining.delete(batch[j]!);
      });
    }
  }
  if (Date.now() < deadline) report.nodegroupError = await sizeAllGpuNodegroups();
  return report;
}

async function sweepRetiredQueue(
  url: string,
  error: InvocationError,
  { quietMs, now, deadline }: { quietMs: number; now: number; deadline: number },
): Promise<{ errored: number; deleted: boolean }> {
  const [counts, tags] = await Promise.all([queueCounts(url), queueTags(url)]);
  if (!counts || !tags) return { errored: 0, deleted: false };
  let retiredAt = Number(tags[UNDEPLOYED_AT_TAG]);
  if (!retiredAt) {
    if (now - counts.createdAt < SWEEPER.deployGraceMs) return { errored: 0, deleted: false };
    retiredAt = now;
    await tagQueue(url, { [UNDEPLOYED_AT_TAG]: String(retiredAt) });
  }
  const quiet = now - retiredAt >= quietMs;
  // A zero-wait receive asks only some SQS servers and may miss a message: before a deletion, a long poll asks them all.
  const { errored, empty } = await drainQueue(url, error, { deadline, waitSeconds: quiet ? 1 : 0 });
  if (!empty || !quiet) return { errored, deleted: false };
  const after = await queueCounts(url);
  const idle = !after || after.waiting + after.inFlight + after.delayed === 0;
  if (!idle && now - retiredAt < SWEEPER.drainLimitMs) return { errored, deleted: false };
  await deleteQueue(url);
  return { errored, deleted: true };
}
