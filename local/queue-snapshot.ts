/**
 * fauxqs keeps queues in memory only. With NVCF_DATA_DIR the local stack
 * saves the waiting messages of the platform's queues on shutdown (after the
 * workers have released their jobs) and, on the next start, recreates the
 * queues of every deployed version, points the versions at the new queue URLs
 * (the emulator's port changes) and sends the saved messages again.
 */
import { readFile, rm, writeFile } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { GetQueueUrlCommand, ListQueuesCommand, ReceiveMessageCommand, SendMessageBatchCommand } from '@aws-sdk/client-sqs';
import { sqs } from '../core/aws';
import { queuePrefix } from '../core/config';
import { listDeployedVersions } from '../core/deployments';
import { changeStatus } from '../core/functions';
import { ensureVersionQueues, queueCounts } from '../core/queues';

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
  const { QueueUrls = [] } = await sqs().send(new ListQueuesCommand({ QueueNamePrefix: queuePrefix() }));
  const snapshot: Snapshot = { queues: [] };
  const deadline = Date.now() + (leaseSeconds + 1) * 1000;
  for (const queueUrl of QueueUrls) {
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
    snapshot.queues.push({ name: decodeURIComponent(queueUrl.split('/').pop()!), bodies });
  }
  await writeFile(file, JSON.stringify(snapshot));
  return snapshot.queues.reduce((sum, queue) => sum + queue.bodies.length, 0);
}

/** Recreates the deployed versions' queues, updates their URLs and re-sends what `file` saved; returns how many messages. */
export async function restoreQueues(file: string): Promise<number> {
  for (const version of await listDeployedVersions()) {
    const queues = await ensureVersionQueues(version.versionId);
    if (queues.queueUrl === version.deployment.queueUrl && queues.deadLetterQueueUrl === version.deployment.deadLetterQueueUrl) continue;
    await changeStatus({ functionId: version.functionId, versionId: version.versionId, from: [version.status], to: version.status, set: { deployment: { ...version.deployment, ...queues } } });
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
    // Queues of versions undeployed meanwhile are gone; their messages were errored on undeploy.
    const queueUrl = await sqs().send(new GetQueueUrlCommand({ QueueName: queue.name })).then((out) => out.QueueUrl, () => undefined);
    if (!queueUrl) continue;
    for (let i = 0; i < queue.bodies.length; i += 10) {
      const batch = queue.bodies.slice(i, i + 10);
      await sqs().send(new SendMessageBatchCommand({ QueueUrl: queueUrl, Entries: batch.map((body, j) => ({ Id: String(j), MessageBody: body })) }));
      restored += batch.length;
    }
  }
  await rm(file, { force: true });
  return restored;
}
