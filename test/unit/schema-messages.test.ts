import * as z from 'zod';
import { describe, expect, it } from 'vitest';
import { deploymentRequestSchema } from '../../core/deployment-schemas';
import { describeIssues, ourWords } from '../../core/schema-messages';

const messageOf = (schema: z.ZodType, value: unknown) => {
  const result = schema.safeParse(value, { error: ourWords });
  if (result.success) throw new Error(`${JSON.stringify(value)} was accepted`);
  return describeIssues(result.error);
};

describe('validation messages in our words', () => {
  it.each<[string, z.ZodType, unknown, string]>([
    ['a missing field', z.object({ gpu: z.string() }), {}, 'gpu: is required'],
    ['a wrong type, quoting a short value', z.object({ port: z.number() }), { port: '8000' }, 'port: must be a number, got the string "8000"'],
    ['a wrong type of a long string, not quoting it', z.object({ port: z.number() }), { port: 'x'.repeat(41) }, 'port: must be a number, got a string'],
    ['a list where an object belongs', z.object({ spec: z.object({}) }), { spec: [] }, 'spec: must be a JSON object, got a list'],
    ['a fraction where an integer belongs', z.object({ n: z.int() }), { n: 1.5 }, 'n: must be an integer, got the number 1.5'],
    ['an empty string', z.object({ name: z.string().min(1) }), { name: '' }, 'name: must not be empty'],
    ['a short string', z.object({ name: z.string().min(3) }), { name: 'ab' }, 'name: must be at least 3 characters long'],
    ['a long string', z.object({ name: z.string().max(3) }), { name: 'abcd' }, 'name: must be at most 3 characters long'],
    ['a small number', z.object({ n: z.number().min(1) }), { n: 0 }, 'n: must be at least 1'],
    ['a large number', z.object({ n: z.number().lt(10) }), { n: 10 }, 'n: must be less than 10'],
    ['an empty list', z.object({ l: z.array(z.string()).min(1) }), { l: [] }, 'l: must list at least one item'],
    ['a long list', z.object({ l: z.array(z.string()).max(2) }), { l: ['a', 'b', 'c'] }, 'l: must list at most 2 items'],
    ['a value not in the enum', z.object({ p: z.enum(['HTTP', 'gRPC']) }), { p: 'TCP' }, 'p: must be one of "HTTP", "gRPC"'],
    ['a malformed UUID', z.object({ id: z.uuid() }), { id: 'x' }, 'id: must be a UUID'],
    ['an unknown field of a strict object', z.strictObject({ a: z.string() }), { a: 'x', b: 1, c: 2 }, 'unknown fields b, c'],
    ['a nested path', z.object({ l: z.array(z.object({ v: z.string() })) }), { l: [{ v: 'ok' }, { v: 3 }] }, 'l[1].v: must be a string, got the number 3'],
    ['a refinement without a message', z.object({ n: z.number().refine((n) => n % 2 === 0) }), { n: 3 }, 'n: is not accepted'],
  ])('words %s', (_label, schema, value, expected) => {
    expect(messageOf(schema, value)).toBe(expected);
  });

  it('keeps the message a schema gives for its own rule', () => {
    expect(messageOf(z.object({ l: z.array(z.string()).min(1, 'must list at least one GPU specification') }), { l: [] })).toBe('l: must list at least one GPU specification');
  });

  it('words the deployment request of the first-hour report as ours: no instanceType needed, the rest named', () => {
    expect(deploymentRequestSchema.safeParse({ deploymentSpecifications: [{ gpu: 'L40S', minInstances: 1, maxInstances: 1 }] }).success).toBe(true);
    expect(messageOf(deploymentRequestSchema, { deploymentSpecifications: [{ gpu: 'L40S', instanceType: 5, maxInstances: 1 }] })).toBe(
      'deploymentSpecifications[0].instanceType: must be a string, got the number 5; deploymentSpecifications[0].minInstances: is required',
    );
  });
});
