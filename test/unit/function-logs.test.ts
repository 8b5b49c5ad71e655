import { mkdtemp, mkdir, rm, writeFile, appendFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { FilterLogEventsCommand } from '@aws-sdk/client-cloudwatch-logs';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  CLOUDWATCH_SETTLE_MS,
  formatLocalLogLine,
  lineOfEvent,
  logStreamPrefix,
  parseLogStreamName,
  parseLogsQuery,
  readCloudWatchLogs,
  readLocalLogs,
  type LogsQuery,
} from '../../core/function-logs';
import { Problem } from '../../core/problem';

const FN = '11111111-1111-4111-8111-111111111111';
const VER = '22222222-2222-4222-8222-222222222222';

function refusal(query: Record<string, string>): Problem {
  try {
    parseLogsQuery(query);
  } catch (error) {
    return error as Problem;
  }
  throw new Error('accepted');
}

describe('logs query', () => {
  it('defaults to 100 lines and reads since as ISO time or epoch milliseconds', () => {
    expect(parseLogsQuery({})).toEqual({ limit: 100 });
    expect(parseLogsQuery({ since: '2026-01-31T12:00:00Z', limit: '1000', instanceId: 'local-1a2b3c4d' })).toEqual({
      since: Date.parse('2026-01-31T12:00:00Z'),
      limit: 1000,
      instanceId: 'local-1a2b3c4d',
    });
    expect(parseLogsQuery({ since: '1769860800000' }).since).toBe(1769860800000);
  });

  it.each([
    [{ limit: '0' }, 'limit'],
    [{ limit: '1001' }, 'limit'],
    [{ limit: 'ten' }, 'limit'],
    [{ since: 'yesterday' }, 'since'],
    [{ instanceId: '../../etc' }, 'instanceId'],
    [{ cursor: 'not-a-cursor' }, 'cursor'],
  ])('refuses %j with 400 naming the parameter', (query, name) => {
    const problem = refusal(query);
    expect(problem.status).toBe(400);
    expect(problem.detail).toContain(`query parameter ${name} `);
  });
});

describe('log stream names', () => {
  it('puts a version’s streams under one prefix, an instance’s under a longer one', () => {
    expect(logStreamPrefix(FN, VER)).toBe(`${FN}/${VER}/`);
    expect(logStreamPrefix(FN, VER, 'nvcf-abc-5d9f-x2')).toBe(`${FN}/${VER}/nvcf-abc-5d9f-x2/`);
  });

  it('reads the pod and marks the worker container’s lines as the platform’s', () => {
    expect(parseLogStreamName(`${FN}/${VER}/pod-1/inference`)).toEqual({ instanceId: 'pod-1', source: 'container' });
    expect(parseLogStreamName(`${FN}/${VER}/pod-1/worker`)).toEqual({ instanceId: 'pod-1', source: 'worker' });
    expect(parseLogStreamName('unlabelled-kube.var.log')).toBeUndefined();
  });

  it('turns a Fluent Bit record into a line: its log text and stream, the event time', () => {
    const line = lineOfEvent({ logStreamName: `${FN}/${VER}/pod-1/worker`, timestamp: 1769860800000, message: JSON.stringify({ log: 'instance ready\n', stream: 'stderr', kubernetes: {} }) });
    expect(line).toEqual({ instanceId: 'pod-1', timestamp: '2026-01-31T12:00:00.000Z', stream: 'stderr', source: 'worker', message: 'instance ready' });
  });
});

describe('local log files', () => {
  let root: string;
  beforeEach(async () => {
    root = await mkdtemp(join(tmpdir(), 'nvcf-logs-unit-'));
  });
  afterEach(() => rm(root, { recursive: true, force: true }));

  const write = async (instance: string, source: 'container' | 'worker', lines: [string, 'stdout' | 'stderr', string][]) => {
    await mkdir(join(root, FN, VER, instance), { recursive: true });
    await appendFile(join(root, FN, VER, instance, `${source}.log`), lines.map(([t, stream, text]) => formatLocalLogLine(stream, text, new Date(t))).join(''));
  };
  const read = (query: Partial<LogsQuery> = {}) => readLocalLogs(root, FN, VER, { limit: 100, ...query });

  it('merges the instances’ container and worker lines oldest first, each marked with its source and stream', async () => {
    await write('local-a', 'container', [['2026-01-31T12:00:01Z', 'stdout', 'a1'], ['2026-01-31T12:00:03Z', 'stderr', 'a3']]);
    await write('local-a', 'worker', [['2026-01-31T12:00:02Z', 'stdout', '{"message":"instance ready"}']]);
    await write('local-b', 'container', [['2026-01-31T12:00:00Z', 'stdout', 'b0']]);
    const { lines } = await read();
    expect(lines.map((line) => `${line.instanceId} ${line.source} ${line.stream} ${line.message}`)).toEqual([
      'local-b container stdout b0',
      'local-a container stdout a1',
      'local-a worker stdout {"message":"instance ready"}',
      'local-a container stderr a3',
    ]);
    expect(lines[0]!.timestamp).toBe('2026-01-31T12:00:00.000Z');
  });

  it('filters by instance and by since', async () => {
    await write('local-a', 'container', [['2026-01-31T12:00:01Z', 'stdout', 'a1'], ['2026-01-31T12:00:03Z', 'stdout', 'a3']]);
    await write('local-b', 'container', [['2026-01-31T12:00:02Z', 'stdout', 'b2']]);
    expect((await read({ instanceId: 'local-b' })).lines.map((l) => l.message)).toEqual(['b2']);
    expect((await read({ since: Date.parse('2026-01-31T12:00:02Z') })).lines.map((l) => l.message)).toEqual(['b2', 'a3']);
  });

  it('follows with the cursor: each line once, none lost, also past the limit and with lines written between polls', async () => {
    await write('local-a', 'container', [['2026-01-31T12:00:01Z', 'stdout', 'a1'], ['2026-01-31T12:00:02Z', 'stdout', 'a2'], ['2026-01-31T12:00:03Z', 'stdout', 'a3']]);
    const first = await read({ limit: 2 });
    expect(first.lines.map((l) => l.message)).toEqual(['a1', 'a2']);
    // Written after the first poll, with an older time than a line already answered on another instance.
    await write('local-b', 'container', [['2026-01-31T12:00:00Z', 'stdout', 'b0']]);
    await write('local-a', 'container', [['2026-01-31T12:00:04Z', 'stdout', 'a4']]);
    const cursor = parseLogsQuery({ cursor: first.cursor }).cursor;
    const second = await read({ cursor });
    expect(second.lines.map((l) => l.message)).toEqual(['b0', 'a3', 'a4']);
    const third = await read({ cursor: parseLogsQuery({ cursor: second.cursor }).cursor });
    expect(third.lines).toEqual([]);
  });

  it('leaves a line still being written (no newline yet) for the next poll', async () => {
    await write('local-a', 'container', [['2026-01-31T12:00:01Z', 'stdout', 'a1']]);
    const partial = formatLocalLogLine('stdout', 'a2', new Date('2026-01-31T12:00:02Z'));
    await appendFile(join(root, FN, VER, 'local-a', 'container.log'), partial.slice(0, 10));
    const first = await read();
    expect(first.lines.map((l) => l.message)).toEqual(['a1']);
    await appendFile(join(root, FN, VER, 'local-a', 'container.log'), partial.slice(10));
    expect((await read({ cursor: parseLogsQuery({ cursor: first.cursor }).cursor })).lines.map((l) => l.message)).toEqual(['a2']);
  });

  it('answers no lines for a version with no instance yet', async () => {
    await writeFile(join(root, 'unrelated'), '');
    expect((await read()).lines).toEqual([]);
  });
});

describe('CloudWatch Logs', () => {
  const NOW = Date.parse('2026-01-31T12:10:00Z');
  type Event = { eventId: string; logStreamName: string; timestamp: number; message: string };
  /** FilterLogEvents over a set of events (no emulator runs CloudWatch Logs), pages of `pageSize`, recording each request. */
  function stubClient(events: Event[], pageSize = 2) {
    const requests: FilterLogEventsCommand['input'][] = [];
    return {
      requests,
      client: {
        send: async (command: FilterLogEventsCommand) => {
          const input = command.input;
          requests.push(input);
          // Interleaved across streams in time order, as FilterLogEvents answers.
          const matching = events
            .filter((e) => e.logStreamName.startsWith(input.logStreamNamePrefix!) && e.timestamp >= (input.startTime ?? 0) && e.timestamp <= (input.endTime ?? Infinity))
            .sort((a, b) => a.timestamp - b.timestamp);
          const start = Number(input.nextToken ?? 0);
          const page = matching.slice(start, start + Math.min(pageSize, input.limit ?? pageSize));
          return { events: page, nextToken: start + page.length < matching.length ? String(start + page.length) : undefined };
        },
      } as never,
    };
  }
  const event = (id: string, pod: string, secondsAgo: number, log: string): Event => ({
    eventId: id,
    logStreamName: `${FN}/${VER}/${pod}/inference`,
    timestamp: NOW - secondsAgo * 1000,
    message: JSON.stringify({ log, stream: 'stdout' }),
  });

  it('reads the version’s stream prefix only, up to the settle time, across pages', async () => {
    const events = [event('1', 'p1', 60, 'one'), event('2', 'p2', 50, 'two'), event('3', 'p1', 40, 'three'), event('4', 'p1', 1, 'too young')];
    const { client, requests } = stubClient(events);
    const page = await readCloudWatchLogs('group', FN, VER, { limit: 100 }, { now: NOW, client });
    expect(page.lines.map((l) => l.message)).toEqual(['one', 'two', 'three']);
    expect(requests[0]).toMatchObject({ logGroupName: 'group', logStreamNamePrefix: `${FN}/${VER}/`, startTime: 0, endTime: NOW - CLOUDWATCH_SETTLE_MS });
    expect(requests).toHaveLength(2);
    const byInstance = stubClient(events);
    await readCloudWatchLogs('group', FN, VER, { limit: 100, instanceId: 'p2' }, { now: NOW, client: byInstance.client });
    expect(byInstance.requests[0]!.logStreamNamePrefix).toBe(`${FN}/${VER}/p2/`);
  });

  it('follows with the cursor: the line that was too young, and one that arrived late, once each', async () => {
    const events = [event('1', 'p1', 60, 'one'), event('2', 'p1', 40, 'two'), event('3', 'p1', 1, 'young')];
    const first = await readCloudWatchLogs('group', FN, VER, { limit: 1 }, { now: NOW, client: stubClient(events).client });
    expect(first.lines.map((l) => l.message)).toEqual(['one']);
    const later = NOW + 30_000;
    // Reached CloudWatch late, with a time before the cursor's end but after what was answered.
    events.push(event('5', 'p2', 20, 'late'));
    const cursor = parseLogsQuery({ cursor: first.cursor }).cursor;
    const second = await readCloudWatchLogs('group', FN, VER, { limit: 100, cursor }, { now: later, client: stubClient(events).client });
    expect(second.lines.map((l) => l.message)).toEqual(['two', 'late', 'young']);
    const third = await readCloudWatchLogs('group', FN, VER, { limit: 100, cursor: parseLogsQuery({ cursor: second.cursor }).cursor }, { now: later + 1000, client: stubClient(events).client });
    expect(third.lines).toEqual([]);
  });
});
