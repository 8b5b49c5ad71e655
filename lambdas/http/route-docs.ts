/**
 * What the OpenAPI document (lambdas/http/openapi.ts) says of a route beyond
 * the route table: the schemas its handler validates with, which are the very
 * objects the handler passes to parseJsonBody and parseQuery (request.ts
 * refuses any other), its success answer and the errors it may give.
 */
import type * as z from 'zod';

export interface RouteDoc {
  /** OpenAPI's `operationId`: the method name a generated client gives the route. */
  operationId: string;
  /** One line, as OpenAPI's `summary`. */
  summary: string;
  /** More, when one line does not say it (markdown). */
  description?: string;
  /** The JSON body's schema. */
  body?: z.ZodType;
  /** Example bodies; the OpenAPI test validates each against `body`. */
  examples?: Record<string, unknown>;
  /** The query string's schema (an object of strings). */
  query?: z.ZodType;
  /** The success answer: its status and what it carries. */
  answer: { status: 200 | 204; description: string };
  /** Error statuses of this route beyond those every authenticated route may give (400, 401, 403, 500). */
  errors?: readonly number[];
}

/** Entries by route reference (F1, D2, ...). */
export type RouteDocs = Record<string, RouteDoc>;
