/**
 * Scheduled every minute: errors the invocations no worker will ever answer
 * and deletes the queues no deployment uses (core/sweeper.ts). A failed pass
 * is simply repeated by the next one.
 */
import type { Context } from 'aws-lambda';
import { sweepQueues, type SweepReport } from '../core/sweeper';
import { logger } from './http/logger';

/** Time kept back from the Lambda's timeout, so that a pass ends by itself rather than being cut off. */
const SAFETY_MARGIN_MS = 5_000;

export async function handler(_event: unknown, context: Pick<Context, 'getRemainingTimeInMillis'>): Promise<Omit<SweepReport, 'nodegroupError'>> {
  const { nodegroupError, ...report } = await sweepQueues({ deadline: Date.now() + context.getRemainingTimeInMillis() - SAFETY_MARGIN_MS });
  if (nodegroupError) logger.warn('GPU nodegroups not sized; retried next minute', { error: nodegroupError as Error });
  if (report.errored > 0 || report.deleted.length > 0) logger.info('swept', { ...report });
  return report;
}
