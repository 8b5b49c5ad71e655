/**
 * Scheduled every minute: errors the invocations no worker will ever answer
 * and deletes the queues no deployment uses (core/sweeper.ts). A failed pass
 * is simply repeated by the next one.
 */
import { sweepQueues, type SweepReport } from '../core/sweeper';
import { logger } from './http/logger';

export async function handler(): Promise<Omit<SweepReport, 'nodegroupError'>> {
  const { nodegroupError, ...report } = await sweepQueues();
  if (nodegroupError) logger.warn('GPU nodegroups not sized; retried next minute', { error: nodegroupError as Error });
  if (report.errored > 0 || report.deleted.length > 0) logger.info('swept', { ...report });
  return report;
}
