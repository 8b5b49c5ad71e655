/**
 * Counts the AWS SDK commands a process sends, by service and command, on the
 * shared clients of core/aws.ts. The bench uses it in its own process
 * (`countAwsCommands()`) and preloads it into the worker processes it starts
 * (`--import bench/aws-counter.ts` with BENCH_AWS_COUNTS=<file>): there, each
 * SIGUSR2 writes `{"snapshot": n, "counts": {...}}` to that file, so the bench
 * can read a child's counts between its phases.
 */
import { renameSync, writeFileSync } from 'node:fs';
import { dynamo, s3, sqs } from '../core/aws';

/** Command counts of this process, as `Service.Command` → count. */
export const awsCommandCounts: Record<string, number> = {};

let installed = false;

/** Adds the counting middleware to this process's DynamoDB, SQS and S3 clients (once). */
export function countAwsCommands(): Record<string, number> {
  if (installed) return awsCommandCounts;
  installed = true;
  const counting = (service: string) => (next: (args: unknown) => Promise<unknown>, context: { commandName?: string }) => async (args: unknown) => {
    const name = `${service}.${context.commandName ?? 'unknown'}`;
    awsCommandCounts[name] = (awsCommandCounts[name] ?? 0) + 1;
    return next(args);
  };
  dynamo().middlewareStack.add(counting('DynamoDB') as never, { step: 'initialize', name: 'bench-count-DynamoDB' });
  sqs().middlewareStack.add(counting('SQS') as never, { step: 'initialize', name: 'bench-count-SQS' });
  s3().middlewareStack.add(counting('S3') as never, { step: 'initialize', name: 'bench-count-S3' });
  return awsCommandCounts;
}

const countsFile = process.env.BENCH_AWS_COUNTS;
if (countsFile) {
  countAwsCommands();
  let snapshot = 0;
  process.on('SIGUSR2', () => {
    snapshot += 1;
    // Written aside and renamed, so the bench never reads half a snapshot.
    writeFileSync(`${countsFile}.tmp`, JSON.stringify({ snapshot, counts: awsCommandCounts }));
    renameSync(`${countsFile}.tmp`, countsFile);
  });
}
