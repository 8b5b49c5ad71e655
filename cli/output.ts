/**
 * How `nvcf` shows answers: human tables on a terminal, JSON when asked
 * (`--format json`) or when stdout is piped; progress on stderr (a live bar on
 * a terminal, a line per step otherwise), so stdout stays the answer alone.
 */
import { SingleBar } from 'cli-progress';

export const FORMATS = ['table', 'json'] as const;
export type Format = (typeof FORMATS)[number];

/** The format asked for, else the configured one, else a table on a terminal and JSON through a pipe. */
export function chooseFormat(asked: Format | undefined, configured: Format | undefined, stdoutIsTty: boolean): Format {
  return asked ?? configured ?? (stdoutIsTty ? 'table' : 'json');
}

function cell(value: unknown): string {
  if (value === undefined || value === null) return '';
  if (Array.isArray(value)) return value.map(cell).join(',');
  if (typeof value === 'object') return JSON.stringify(value);
  return String(value);
}

/** Rows as an aligned text table with a header of the column names. */
export function formatTable(rows: readonly object[], columns: readonly string[]): string {
  const cells = [columns.map((column) => column.toUpperCase()), ...rows.map((row) => columns.map((column) => cell((row as Record<string, unknown>)[column])))];
  const widths = columns.map((_, i) => Math.max(...cells.map((line) => line[i]!.length)));
  return cells.map((line) => line.map((text, i) => (i === line.length - 1 ? text : text.padEnd(widths[i]!))).join('  ').trimEnd()).join('\n');
}

/** One object as `key  value` lines, its fields in their order; absent ones left out. */
export function formatDetails(object: object): string {
  const entries = Object.entries(object).filter(([, value]) => value !== undefined && value !== null);
  const width = Math.max(0, ...entries.map(([key]) => key.length));
  return entries.map(([key, value]) => `${key.padEnd(width)}  ${cell(value)}`).join('\n');
}

export interface Printer {
  format: Format;
  /** Prints `value` as JSON, or as what `table` renders from it. */
  print(value: unknown, table: () => string): void;
  /** A note for the user on stderr (never part of the answer). */
  note(text: string): void;
}

export function printer(format: Format, stdout: NodeJS.WritableStream = process.stdout, stderr: NodeJS.WritableStream = process.stderr): Printer {
  return {
    format,
    print(value, table) {
      stdout.write(`${format === 'json' ? JSON.stringify(value, null, 2) : table()}\n`);
    },
    note(text) {
      stderr.write(`${text}\n`);
    },
  };
}

/**
 * Progress of a long operation: a bar on a terminal's stderr, else one line
 * each time the text changes or the fraction passes a tenth (logs and tests read those).
 */
export interface Progress {
  update(fraction: number | undefined, text: string): void;
  stop(): void;
}

export function progress(label: string, stderr: NodeJS.WriteStream = process.stderr): Progress {
  if (stderr.isTTY) {
    const bar = new SingleBar({ format: `${label} [{bar}] {percentage}% {text}`, stream: stderr, hideCursor: true, clearOnComplete: false, barsize: 30 });
    bar.start(100, 0, { text: '' });
    return {
      update: (fraction, text) => bar.update(fraction === undefined ? bar.getProgress() * 100 : Math.round(fraction * 100), { text }),
      stop: () => bar.stop(),
    };
  }
  // A line when the text changes or the bar passes a tenth: a log gets the story, not every byte.
  let last: { text?: string; tenth?: number } = {};
  return {
    update(fraction, text) {
      const tenth = fraction === undefined ? undefined : Math.floor(fraction * 10);
      if (text === last.text && tenth === last.tenth) return;
      last = { text, tenth };
      stderr.write(`${label}${fraction === undefined ? '' : ` ${Math.round(fraction * 100)}%`}${text ? ` ${text}` : ''}\n`);
    },
    stop() {},
  };
}
