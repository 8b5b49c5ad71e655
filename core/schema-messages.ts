/**
 * How validation failures read, in the platform's words: every API (and the
 * local stack's configuration) words a missing field, a wrong type or a value
 * out of range the same way, naming what is accepted. Schemas give their own
 * message where a rule needs one; everything else falls back to `ourWords`.
 */
import type * as z from 'zod';

const TYPE_NAMES: Record<string, string> = {
  string: 'a string',
  number: 'a number',
  int: 'an integer',
  boolean: 'true or false',
  object: 'a JSON object',
  array: 'a list',
  null: 'null',
  bigint: 'an integer',
  date: 'a date',
};

/** What a JSON value is, for "got ...": its type, and short scalars themselves. */
function describeValue(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'a list';
  if (typeof value === 'string') return value.length <= 40 ? `the string "${value}"` : 'a string';
  if (typeof value === 'number') return `the number ${value}`;
  if (typeof value === 'boolean') return String(value);
  return typeof value === 'object' ? 'a JSON object' : typeof value;
}

function bound(issue: { origin?: string; inclusive?: boolean }, limit: number | bigint, direction: 'least' | 'most'): string {
  const [word, exclusive] = direction === 'least' ? ['at least', 'more than'] : ['at most', 'less than'];
  switch (issue.origin) {
    case 'string':
      return direction === 'least' && Number(limit) === 1 ? 'must not be empty' : `must be ${word} ${limit} characters long`;
    case 'array':
    case 'set':
      return direction === 'least' && Number(limit) === 1 ? 'must list at least one item' : `must list ${word} ${limit} items`;
    default:
      return issue.inclusive === false ? `must be ${exclusive} ${limit}` : `must be ${word} ${limit}`;
  }
}

/** zod's fallback messages replaced by ours; pass as the `error` option of a parse. */
export function ourWords(issue: z.core.$ZodRawIssue): string {
  switch (issue.code) {
    case 'invalid_type':
      if (issue.input === undefined) return 'is required';
      return `must be ${TYPE_NAMES[issue.expected] ?? issue.expected}, got ${describeValue(issue.input)}`;
    case 'too_small':
      return bound(issue, issue.minimum, 'least');
    case 'too_big':
      return bound(issue, issue.maximum, 'most');
    case 'invalid_format':
      if (issue.format === 'regex' && 'pattern' in issue) return `must match the pattern ${String(issue.pattern)}`;
      return `must be ${issue.format === 'uuid' ? 'a UUID' : issue.format === 'url' ? 'a URL' : `a valid ${issue.format}`}`;
    case 'invalid_value':
      return issue.values.length === 1 ? `must be ${JSON.stringify(issue.values[0])}` : `must be one of ${issue.values.map((value) => JSON.stringify(value)).join(', ')}`;
    case 'not_multiple_of':
      return `must be a multiple of ${issue.divisor}`;
    case 'unrecognized_keys':
      return `unknown field${issue.keys.length === 1 ? '' : 's'} ${issue.keys.join(', ')}`;
    case 'invalid_union':
      return 'matches none of the accepted forms';
    case 'invalid_key':
      return 'has a key that is not accepted';
    case 'invalid_element':
      return 'has an entry that is not accepted';
    default:
      return issue.message ?? 'is not accepted';
  }
}

/** Formats issues as `field: message` pairs a user can act on, e.g. `deploymentSpecifications[0].gpu: is required`. */
export function describeIssues(error: z.ZodError): string {
  return error.issues
    .map((issue) => {
      const field = issue.path
        .map((part, i) => (typeof part === 'number' ? `[${part}]` : i === 0 ? String(part) : `.${String(part)}`))
        .join('');
      return field ? `${field}: ${issue.message}` : issue.message;
    })
    .join('; ');
}
