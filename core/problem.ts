/**
 * Errors as values with a status, a title and a detail a user can act on.
 * The HTTP layer renders them as RFC 7807 `application/problem+json`.
 */

import { STATUS_CODES } from 'node:http';
import * as z from 'zod';

/** HTTP reason phrase of a status code, as Node knows them ("Unknown Status" for a code without one). */
export function reasonPhrase(status: number): string {
  return STATUS_CODES[status] ?? 'Unknown Status';
}

/** `not-found` for 404, the problem type suffix NVCF uses. */
export function kebabReason(status: number): string {
  return reasonPhrase(status).toLowerCase().replace(/[^a-z0-9]+/g, '-');
}

/** RFC 7807 problem details, as every error answer carries them (and the OpenAPI document describes them). */
export const problemBodySchema = z.object({
  type: z.string().meta({ description: 'urn:nvcf:problem-details:<reason>, e.g. urn:nvcf:problem-details:not-found' }),
  title: z.string().meta({ description: "the status code's reason phrase" }),
  status: z.number().int(),
  detail: z.string().meta({ description: 'what was wrong, and what to do about it' }),
  instance: z.string().optional().meta({ description: 'the request path' }),
  requestId: z.string().optional().meta({ description: 'the id to quote when reporting the error' }),
});

export type ProblemBody = z.infer<typeof problemBodySchema>;

/** An error that reaches the client as problem+json with its own status. */
export class Problem extends Error {
  readonly status: number;
  readonly title: string;
  readonly type: string;
  /** Extra response headers, e.g. `Allow` on a 405. */
  readonly headers: Record<string, string>;

  constructor(status: number, detail: string, options: { type?: string; title?: string; headers?: Record<string, string> } = {}) {
    super(detail);
    this.name = 'Problem';
    this.status = status;
    this.title = options.title ?? reasonPhrase(status);
    this.type = options.type ?? `urn:nvcf:problem-details:${kebabReason(status)}`;
    this.headers = options.headers ?? {};
  }

  get detail(): string {
    return this.message;
  }

  toBody(instance?: string, requestId?: string): ProblemBody {
    return {
      type: this.type,
      title: this.title,
      status: this.status,
      detail: this.message,
      ...(instance ? { instance } : {}),
      ...(requestId ? { requestId } : {}),
    };
  }
}

export const badRequest = (detail: string) => new Problem(400, detail);
export const unauthorized = (detail: string) => new Problem(401, detail);
export const forbidden = (detail: string) => new Problem(403, detail);
export const notFound = (detail: string) => new Problem(404, detail);
export const conflict = (detail: string) => new Problem(409, detail);
export const payloadTooLarge = (detail: string) => new Problem(413, detail);
