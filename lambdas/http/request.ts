/**
 * What a route implementation sees of an API Gateway v2 event: the caller,
 * path parameters, query, lower-cased headers and the raw body, plus helpers
 * that validate them and fail with a 4xx Problem.
 */
import type { APIGatewayProxyEventV2WithLambdaAuthorizer } from 'aws-lambda';
import * as z from 'zod';
import { MAX_MANAGEMENT_BODY_BYTES } from '../../core/limits';
import { Problem, badRequest, payloadTooLarge } from '../../core/problem';
import { describeIssues, ourWords } from '../../core/schema-messages';
import type { RouteDefinition, Scope } from '../../core/routes';
import type { RouteDoc } from './route-docs';

/** What the authorizer hands to every route (simple-response context values are strings). */
export interface AuthorizerContext {
  authenticated: 'true' | 'false';
  accountId?: string;
  /** Comma-separated scopes. */
  scopes?: string;
  /** Why the key was refused, when authenticated is "false". */
  reason?: string;
  /** The key's sha256 (its id in the keys API) and expiry: keys it creates may not outlive it. */
  keyId?: string;
  keyExpiresAt?: string;
}

export type ApiEvent = APIGatewayProxyEventV2WithLambdaAuthorizer<AuthorizerContext>;

export interface Caller {
  accountId: string;
  scopes: ReadonlySet<Scope>;
  /** The caller's key: its id (sha256) and expiry (none for keys that never expire). */
  keyId?: string;
  keyExpiresAt?: string;
}

export interface ApiRequest {
  route: RouteDefinition;
  caller: Caller;
  params: Record<string, string>;
  /** Query parameters; API Gateway joins repeated ones with commas. */
  query: Record<string, string>;
  /** Header names lower-cased. */
  headers: Record<string, string>;
  body: Buffer;
  /** API Gateway's request id, echoed in problem bodies. */
  requestId: string;
  path: string;
  event: ApiEvent;
  /** The route's entry in the OpenAPI document, when it has one. */
  doc?: RouteDoc;
}

export function lowerCaseHeaders(headers: Record<string, string | undefined> | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [name, value] of Object.entries(headers ?? {})) {
    if (value !== undefined) out[name.toLowerCase()] = value;
  }
  return out;
}

export function rawBody(event: Pick<ApiEvent, 'body' | 'isBase64Encoded'>): Buffer {
  if (!event.body) return Buffer.alloc(0);
  return Buffer.from(event.body, event.isBase64Encoded ? 'base64' : 'utf8');
}

/**
 * Parses the JSON body and validates it; 400/413 with the reason otherwise. A `sensitive`
 * body (one that may carry secret values) is never quoted: V8's parse errors cite the text.
 */
export function parseJsonBody<S extends z.ZodType>(req: ApiRequest, schema: S, maxBytes = MAX_MANAGEMENT_BODY_BYTES, { sensitive = false } = {}): z.infer<S> {
  documented(req, 'body', schema);
  if (req.body.length > maxBytes) {
    throw payloadTooLarge(`request body is ${req.body.length} bytes; at most ${maxBytes} bytes are accepted here`);
  }
  if (req.body.length === 0) throw badRequest('request body is required and must be a JSON object');
  let value: unknown;
  try {
    value = JSON.parse(req.body.toString('utf8'));
  } catch (error) {
    const message = (error as Error).message;
    const position = /at position (\d+)/.exec(message)?.[1];
    const reason = sensitive ? (position ? `it breaks at position ${position}` : 'it does not parse (its text is not quoted back: it may hold secrets)') : message;
    throw badRequest(`request body is not valid JSON: ${reason}`);
  }
  const result = schema.safeParse(value, { error: ourWords });
  if (!result.success) throw badRequest(`invalid request body: ${describeIssues(result.error)}`);
  return result.data;
}

/**
 * A route that has an OpenAPI entry validates with the schema the entry names,
 * or the document would describe a different request than the one accepted:
 * a developer's mistake, which every test of the route then finds.
 */
function documented(req: ApiRequest, part: 'body' | 'query', schema: z.ZodType): void {
  if (req.doc && req.doc[part] !== schema) {
    throw new Problem(500, `route ${req.route.ref} validates its ${part} with a schema its OpenAPI entry does not name (see its RouteDocs)`);
  }
}

const uuid = z.uuid();

/** A path parameter that must be a UUID; 400 naming the parameter otherwise. */
export function uuidParam(req: ApiRequest, name: string): string {
  const value = req.params[name];
  if (value === undefined || !uuid.safeParse(value).success) {
    throw badRequest(`path parameter ${name} must be a UUID, got "${value ?? ''}"`);
  }
  return value.toLowerCase();
}

/** The functionId and functionVersionId path parameters, both UUIDs. */
export function versionIds(req: ApiRequest): [functionId: string, versionId: string] {
  return [uuidParam(req, 'functionId'), uuidParam(req, 'functionVersionId')];
}

/** An optional query flag: "true" or "false" in any letter case. */
export const queryFlag = z
  .string()
  .transform((value) => value.toLowerCase())
  .pipe(z.enum(['true', 'false'], { error: 'must be true or false' }))
  .transform((value) => value === 'true')
  .optional();

/** Validates the query string with a schema; 400 naming the parameter otherwise. */
export function parseQuery<S extends z.ZodType>(req: ApiRequest, schema: S): z.infer<S> {
  documented(req, 'query', schema);
  const result = schema.safeParse(req.query, { error: ourWords });
  if (!result.success) throw badRequest(`invalid query parameters: ${describeIssues(result.error)}`);
  return result.data;
}
