/**
 * A worker whose every move a test scripts: it long-polls a deployment's
 * queue with the real SQS client, parses the message as the gpu-agent does,
 * and attaches back to the invocation service, either with the worker's own
 * client (gpu-agent/worker/attach.ts) or over a raw HTTP/2 session the test
 * can kill like a dying process. Plus an HTTP caller that records when each
 * chunk of an answer arrived.
 */
import { connect, type ClientHttp2Session, type ClientHttp2Stream, type IncomingHttpHeaders as Http2Headers } from 'node:http2';
import { request as httpRequest, type ClientRequest, type IncomingHttpHeaders } from 'node:http';
import { DeleteMessageCommand, ReceiveMessageCommand } from '@aws-sdk/client-sqs';
import { ATTACH_STATE_HEADER, ATTACH_TOKEN_HEADER, FRAME, FrameDecoder, attachPath, encodeFrame, type Frame, type FrameType } from '../../core/attach';
import { sqs } from '../../core/aws';
import { invocationMessageSchema, type InvocationMessage } from '../../core/invocation-message';
import type { FunctionVersionRecord } from '../../core/model';

/** One received delivery. */
export interface Job {
  message: InvocationMessage;
  receipt: string;
  /** Deletes the message, as a worker does once the job is over. */
  done(): Promise<void>;
}

/** Receives up to `count` messages of the version's queue (long polls of up to `waitSeconds` until that many came). */
export async function receiveJobs(version: FunctionVersionRecord, count: number, waitSeconds = 5): Promise<Job[]> {
  const queueUrl = version.deployment!.queueUrl;
  const jobs: Job[] = [];
  const until = Date.now() + waitSeconds * 1000;
  do {
    const { Messages = [] } = await sqs().send(
      new ReceiveMessageCommand({
        QueueUrl: queueUrl,
        MaxNumberOfMessages: Math.min(10, count - jobs.length),
        WaitTimeSeconds: Math.max(0, Math.min(20, Math.ceil((until - Date.now()) / 1000))),
        MessageSystemAttributeNames: ['ApproximateReceiveCount'],
      }),
    );
    for (const received of Messages) {
      const receipt = received.ReceiptHandle!;
      jobs.push({
        message: invocationMessageSchema.parse(JSON.parse(received.Body!)),
        receipt,
        done: async () => void (await sqs().send(new DeleteMessageCommand({ QueueUrl: queueUrl, ReceiptHandle: receipt }))),
      });
    }
  } while (jobs.length < count && Date.now() < until);
  return jobs;
}

/** Receives the next message of the version's queue; fails if none comes within `waitSeconds`. */
export async function receiveJob(version: FunctionVersionRecord, waitSeconds = 5): Promise<Job> {
  const [job] = await receiveJobs(version, 1, waitSeconds);
  if (!job) throw new Error(`no message on the queue of version ${version.versionId} within ${waitSeconds} s`);
  return job;
}

/** Whether the version's queue has a message visible within `waitSeconds` (0: now; it is left in flight if so). */
export async function queueHasMessage(version: FunctionVersionRecord, waitSeconds = 0): Promise<boolean> {
  return (await receiveJobs(version, 1, waitSeconds)).length > 0;
}

/** An attach over its own HTTP/2 session: frames as they came, and the session to destroy as a killed worker's would be. */
export interface RawAttach {
  status: number;
  state: string;
  session: ClientHttp2Session;
  stream: ClientHttp2Stream;
  /** Resolves with the next frame of `type` from the service (seen frames are kept). */
  frame(type: FrameType): Promise<Frame>;
  send(type: FrameType, payload?: Buffer | string): void;
  /** The worker process dies: its TCP connection closes with no goodbye. */
  kill(): void;
}

/** Attaches to the reply address of `message` without the worker's client. */
export async function rawAttach(message: InvocationMessage): Promise<RawAttach> {
  const { host, port, token } = message.replyTo!;
  const session = connect(`http://${host}:${port}`);
  session.on('error', () => undefined);
  const stream = session.request({ ':method': 'POST', ':path': attachPath(message.requestId), [ATTACH_TOKEN_HEADER]: token });
  stream.on('error', () => undefined);
  const headers = await new Promise<Http2Headers>((resolve, reject) => {
    stream.once('response', resolve);
    stream.once('error', reject);
  });
  const seen: Frame[] = [];
  const waiting: { type: number; resolve: (frame: Frame) => void }[] = [];
  const decoder = new FrameDecoder();
  stream.pipe(decoder);
  decoder.on('error', () => undefined);
  decoder.on('data', (frame: Frame) => {
    const index = waiting.findIndex((waiter) => waiter.type === frame.type);
    if (index >= 0) waiting.splice(index, 1)[0]!.resolve(frame);
    else seen.push(frame);
  });
  return {
    status: Number(headers[':status']),
    state: String(headers[ATTACH_STATE_HEADER]),
    session,
    stream,
    frame(type) {
      const index = seen.findIndex((frame) => frame.type === type);
      if (index >= 0) return Promise.resolve(seen.splice(index, 1)[0]!);
      return new Promise((resolve) => waiting.push({ type, resolve }));
    },
    send(type, payload) {
      stream.write(encodeFrame(type, payload));
    },
    kill() {
      session.destroy();
    },
  };
}

export { FRAME };

/** What a caller saw of its answer. */
export interface Reply {
  status: number;
  headers: IncomingHttpHeaders;
  body: Buffer;
  /** Each chunk as it arrived, with its arrival time (epoch ms). */
  chunks: { at: number; data: Buffer }[];
  /** Set when the answer was cut or the request failed. */
  error?: Error;
  /** The body parsed as JSON, when it is. */
  json: any;
}

export interface CallerRequest {
  method?: string;
  path: string;
  headers?: Record<string, string>;
  body?: Buffer | string;
}

/** Sends one HTTP request on a fresh connection; `reply` resolves with what came back, even when cut. */
export function callService(baseUrl: string, call: CallerRequest): { request: ClientRequest; reply: Promise<Reply> } {
  const url = new URL(call.path, baseUrl);
  const request = httpRequest(url, { method: call.method ?? 'POST', headers: call.headers, agent: false });
  const reply = new Promise<Reply>((resolve) => {
    let status = 0;
    let headers: IncomingHttpHeaders = {};
    const chunks: { at: number; data: Buffer }[] = [];
    let settled = false;
    const settle = (error?: Error) => {
      if (settled) return;
      settled = true;
      const body = Buffer.concat(chunks.map((chunk) => chunk.data));
      let json: unknown;
      try {
        json = body.length > 0 ? JSON.parse(body.toString('utf8')) : undefined;
      } catch {
        json = undefined;
      }
      resolve({ status, headers, body, chunks, json, ...(error ? { error } : {}) });
    };
    request.on('response', (response) => {
      status = response.statusCode ?? 0;
      headers = response.headers;
      response.on('data', (data: Buffer) => chunks.push({ at: Date.now(), data }));
      response.on('end', () => settle());
      response.on('aborted', () => settle(new Error('aborted')));
      response.on('error', (error) => settle(error));
      response.on('close', () => settle(response.complete ? undefined : new Error('closed before the end')));
    });
    request.on('error', (error) => settle(error));
  });
  request.end(call.body);
  return { request, reply };
}
