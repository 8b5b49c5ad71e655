/**
 * Invocations whose messages will never be run: waiting in the queue of a
 * deployment that is gone, or moved to a dead-letter queue after every
 * delivery failed. They become ERRORED (conditionally: a terminal invocation
 * keeps its outcome), so that nobody polls a 202 until the record expires.
 */
import { DeleteMessageBatchCommand, ReceiveMessageCommand, type Message } from '@aws-sdk/client-sqs';
import { PutCommand, UpdateCommand } from '@aws-sdk/lib-dynamodb';
import { conditionalWrite, dynamo, sqs } from './aws';
import { tableName } from './config';
import { invocationMessageSchema } from './invocation-message';
import type { InvocationError, InvocationRecord } from './invocations';
import { INVOCATION_TTL_SECONDS } from './limits';

/** Detail stored on invocations that were still queued when their version was undeployed. */
export const UNDEPLOYED_DETAIL = 'the function version was undeployed before the request was processed';

/** Outcome of an invocation still waiting when its deployment went away: the function can no longer serve it. */
export const UNDEPLOYED_ERROR: InvocationError = { status: 503, detail: UNDEPLOYED_DETAIL };

/** Outcome of an invocation whose message went to the dead-letter queue. */
export function deadLetteredError(deliveries: number): InvocationError {
  return {
    status: 500,
    type: 'urn:nvcf-worker-service:problem-details:internal-server-error',
    title: 'Internal Server Error',
    detail: `the request was delivered ${deliveries} times and never completed (the container crashed, timed out or could not be reached each time); it was moved to the dead-letter queue`,
  };
}

/** The request id a message carries, or undefined for a message that is not an invocation. */
export function requestIdOf(message: Pick<Message, 'Body'>): string | undefined {
  try {
    const requestId = (JSON.parse(message.Body ?? '') as { requestId?: unknown }).requestId;
    return typeof requestId === 'string' && requestId ? requestId : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Marks a QUEUED or IN_PROGRESS invocation ERRORED; false when it is terminal
 * already or missing. With `messageId`, only while no other message carries
 * the invocation (a worker that hands a job back on its last delivery sends a
 * fresh copy and records its id): a stale copy never ends a live job.
 */
export async function errorInvocation(requestId: string, error: InvocationError, messageId?: string): Promise<boolean> {
  return conditionalWrite(() =>
    dynamo().send(
      new UpdateCommand({
        TableName: tableName('invocations'),
        Key: { requestId },
        UpdateExpression: 'SET #status = :errored, #error = :error, #updatedAt = :now REMOVE partialResponse, queuedVersion',
        ConditionExpression:
          'attribute_exists(requestId) AND #status IN (:queued, :inProgress)' + (messageId ? ' AND (attribute_not_exists(messageId) OR messageId = :messageId)' : ''),
        ExpressionAttributeNames: { '#status': 'status', '#error': 'error', '#updatedAt': 'updatedAt' },
        ExpressionAttributeValues: {
          ':errored': 'ERRORED',
          ':queued': 'QUEUED',
          ':inProgress': 'IN_PROGRESS',
          ':error': error,
          ':now': new Date().toISOString(),
          ...(messageId ? { ':messageId': messageId } : {}),
        },
      }),
    ),
  );
}

/**
 * Errors the invocation a message carries. A call whose caller still waits on
 * the invocation service has no item yet (the sync path writes none): it gets
 * an ERRORED one, which the service finds when the call turns durable, so the
 * caller's poll learns why. False when nothing changed.
 */
async function errorMessageInvocation(message: Message, error: InvocationError): Promise<boolean> {
  const requestId = requestIdOf(message);
  if (!requestId) return false;
  const parsed = invocationMessageSchema.safeParse(JSON.parse(message.Body!));
  if (!parsed.success || !parsed.data.replyTo) return errorInvocation(requestId, error, message.MessageId);
  const { accountId, functionId, versionId, acceptedAt } = parsed.data;
  const now = new Date();
  const record: InvocationRecord = {
    requestId,
    accountId,
    functionId,
    versionId,
    status: 'ERRORED',
    error,
    createdAt: acceptedAt,
    updatedAt: now.toISOString(),
    expiresAt: Math.floor(now.getTime() / 1000) + INVOCATION_TTL_SECONDS,
  };
  const created = await conditionalWrite(() =>
    dynamo().send(new PutCommand({ TableName: tableName('invocations'), Item: record, ConditionExpression: 'attribute_not_exists(requestId)' })),
  );
  // The call turned durable meanwhile: its item is there now.
  return created || errorInvocation(requestId, error, message.MessageId);
}

/**
 * Receives what waits in `queueUrl` and errors each message's invocation,
 * until the queue answers empty or `deadline` (epoch ms) passes. With
 * `keepMessages` the messages stay in the queue, hidden for 12 hours (a
 * dead-letter queue keeps them for inspection); otherwise they are deleted.
 * The receives wait `waitSeconds` (default 1): a zero wait samples only some
 * SQS servers and may miss messages, which a caller that comes back soon can
 * afford.
 * Returns how many invocations changed to ERRORED, and whether the queue was
 * seen empty.
 */
export async function drainQueue(
  queueUrl: string,
  error: InvocationError,
  options: { deadline: number; keepMessages?: boolean; waitSeconds?: number },
): Promise<{ errored: number; empty: boolean }> {
  let errored = 0;
  while (Date.now() < options.deadline) {
    const { Messages = [] } = await sqs().send(
      new ReceiveMessageCommand({
        QueueUrl: queueUrl,
        MaxNumberOfMessages: 10,
        WaitTimeSeconds: options.waitSeconds ?? 1,
        VisibilityTimeout: options.keepMessages ? 43_200 : 60,
      }),
    );
    if (Messages.length === 0) return { errored, empty: true };
    const changed = await Promise.all(Messages.map((message) => errorMessageInvocation(message, error)));
    errored += changed.filter(Boolean).length;
    if (!options.keepMessages) {
      await sqs().send(
        new DeleteMessageBatchCommand({ QueueUrl: queueUrl, Entries: Messages.map((message, i) => ({ Id: String(i), ReceiptHandle: message.ReceiptHandle })) }),
      );
    }
  }
  return { errored, empty: false };
}
