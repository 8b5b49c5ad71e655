/**
 * fauxqs keeps queues in memory only. With NVCF_DATA_DIR the local stack
 * saves the waiting messages of the platform's queues on shutdown (after the
 * workers have released their jobs) and, on the next start, recreates the
 * queues of every deployed version, points the versions at the new queue URLs
 * (the emulator's port changes) and sends the saved messages again.
 */
import { readFile, rm, writeFile } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { GetQueueUrlCommand, ReceiveMessageCommand, SendMessageBatchCommand } from '@aws-sdk/client-sqs';
import { sqs } from '../core/aws';
import { maxReceiveCount } from '../core/config';
import { listDeployedVersions } from '../core/deployments';
import { changeStatus } from '../core/functions';
import { ensureDeploymentQueues, listPlatformQueues, queueCounts } from '../core/queues';
import { UNDEPLOYED_ERROR, deadLetteredError, errorInvocation, requestIdOf } from '../core/drain';
import { DEAD_LETTER_SUFFIX, queueNameOf } from '../core/names';

interface Snapshot {
  queues: { name: string; bodies: string[] }[];
}

/**
 * Takes every message out of the platform's queues and writes them to `file`;
 * returns how many. The workers are stopped by then, so a message still in
 * flight belongs to a worker that crashed: its lease runs out within
 * `leaseSeconds` and it is taken then.
 */
export async function saveQueues(file: string, leaseSeconds: number): Promise<number> {
  const queueUrls = await listPlatformQueues();
  const snapshot: Snapshot = { queues: [] };
  const deadline = Date.now() + (leaseSeconds + 1) * 1000;
  for (const queueUrl of queueUrls) {
    const bodies: string[] = [];
    for (;;) {
      // Nobody else receives any more; a long visibility keeps each message read once. No long poll:
      // the version queues wait 20 s by default when empty.
      const { Messages = [] } = await sqs().send(new ReceiveMessageCommand({ QueueUrl: queueUrl, MaxNumberOfMessages: 10, VisibilityTimeout: 3600, WaitTimeSeconds: 0 }));
      bodies.push(...Messages.map((message) => message.Body ?? ''));
      if (Messages.length > 0) continue;
      const counts = await queueCounts(queueUrl);
      // In flight beyond what this loop took: a crashed worker's lease, not over yet.
      if (!counts || counts.inFlight <= bodies.length || Date.now() > deadline) break;
      await sleep(250);
    }
    snapshot.queues.push({ name: queueNameOf(queueUrl), bodies });
  }
  await writeFile(file, JSON.stringify(snapshot));
  return snapshot.queues.reduce((sum, queue) => sum + queue.bodies.length, 0);
}

/**
 * Recreates the deployed versions' queues (same names), updates their URLs and
 * re-sends what `file` saved; returns how many messages. Messages of queues no
 * deployment uses any more are not sent again: their invocations are errored,
 * as the sweeper would have done.
 */
export async function restoreQueues(file: string): Promise<number> {
  for (const version of await listDeployedVersions()) {
    const { deployment } = version;
    const names = { queueName: queueNameOf(deployment.queueUrl), deadLetterQueueName: queueNameOf(deployment.deadLetterQueueUrl) };
    const queues = await ensureDeploymentQueues(names, { 'nvcf:function-id': version.functionId, 'nvcf:version-id': version.versionId });
    if (queues.queueUrl === deployment.queueUrl && queues.deadLetterQueueUrl === deployment.deadLetterQueueUrl) continue;
    await changeStatus({ functionId: version.functionId, versionId: version.versionId, from: [version.status], to: version.status, set: { deployment: { ...deployment, ...queues } } });
  }
  let snapshot: Snapshot;
  try {
    snapshot = JSON.parse(await readFile(file, 'utf8')) as Snapshot;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return 0;
    throw error;
  }
  let restored = 0;
  for (const queue of snapshot.queues) {
    if (queue.bodies.length === 0) continue;
    const queueUrl = await sqs().send(new GetQueueUrlCommand({ QueueName: queue.name })).then((out) => out.QueueUrl, () => undefined);
    if (!queueUrl) {
      const error = queue.name.endsWith(DEAD_LETTER_SUFFIX) ? deadLetteredError(maxReceiveCount()) : UNDEPLOYED_ERROR;
      await Promise.all(queue.bodies.map((Body) => requestIdOf({ Body })).map((requestId) => (requestId ? errorInvocation(requestId, error) : undefined)));
      continue;
    }
    for (let i = 0; i < queue.bodies.length; i += 10) {
      const batch = queue.bodies.slice(i, i + 10);
      await sqs().send(new SendMessageBatchCommand({ QueueUrl: queueUrl, Entries: batch.map((body, j) => ({ Id: String(j), MessageBody: body })) }));
      restored += batch.length;
    }
  }
  await rm(file, { force: true });
  return restored;
}
