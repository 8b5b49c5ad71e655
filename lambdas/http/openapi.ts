/**
 * The OpenAPI 3.1 document of the whole HTTP API, generated: operations come
 * from the route table (core/routes.ts), request schemas are the zod schemas
 * the handlers validate with (each Lambda's RouteDocs, as JSON Schema by zod's
 * own toJSONSchema), and the invocation routes, which the invocation service
 * serves with the container's own bodies, are described here. `npm run
 * openapi` writes it to docs/openapi.json, which the gpus Lambda serves as O1;
 * test/unit/openapi.test.ts fails when the two differ.
 */
import { fileURLToPath } from 'node:url';
import * as z from 'zod';
import packageJson from '../../package.json';
import { POLL_SECONDS_MAX } from '../../core/limits';
import { problemBodySchema, reasonPhrase } from '../../core/problem';
import { CORS, INVOCATION_SERVICE, ROUTES, SCOPES, type HttpMethod, type RouteDefinition } from '../../core/routes';
import { assetRouteDocs } from '../assets';
import { deploymentRouteDocs } from '../deployments';
import { functionRouteDocs } from '../functions';
import { gpuRouteDocs } from '../gpus';
import { keyRouteDocs } from '../keys';
import { logRouteDocs } from '../logs';
import { queueRouteDocs } from '../queues';
import type { RouteDoc, RouteDocs } from './route-docs';

type Json = Record<string, unknown>;

/** Every API Lambda's route descriptions, by route reference. */
export const LAMBDA_ROUTE_DOCS: RouteDocs = {
  ...functionRouteDocs,
  ...deploymentRouteDocs,
  ...assetRouteDocs,
  ...queueRouteDocs,
  ...gpuRouteDocs,
  ...logRouteDocs,
  ...keyRouteDocs,
};

/** Errors any route with a key may answer; a route's RouteDoc adds its own. */
const COMMON_ERRORS = [400, 401, 403, 500];
const INVOCATION_ERRORS = [400, 401, 403, 404, 413, 429, 500, 503];

/** How path parameters are written: every id is a UUID but an API key's, which is its sha256. */
const PATH_PARAMETERS: Record<string, Json> = {
  keyId: { type: 'string', pattern: '^[0-9a-f]{64}$', description: "the key's id (its sha256), as GET /v1/keys lists it" },
};
const UUID = { type: 'string', format: 'uuid' };

const header = (name: string, description: string, schema: Json = { type: 'string' }) => ({ name, in: 'header', description, schema });

const POLL_HEADER = header(
  'NVCF-POLL-SECONDS',
  'Seconds to wait for the answer before a 202 (0: answer 202 at once, the call is durable). Capped at 25 s through API Gateway and 55 s through the invocation URL.',
  { type: 'integer', minimum: 0, maximum: POLL_SECONDS_MAX },
);
const ASSETS_HEADER = header('NVCF-INPUT-ASSET-REFERENCES', 'Comma-separated asset ids (A1) the container finds in its asset directory.');
const ACCEPT_HEADER = header('Accept', '`text/event-stream` streams the container\'s server-sent events as they are written.');

const NVCF_HEADERS = {
  'NVCF-REQID': { description: 'the request id: poll GET /v2/nvcf/pexec/status/{requestId} with it', schema: UUID },
  'NVCF-STATUS': { description: 'pending-evaluation, in-progress, fulfilled, errored or canceled', schema: { type: 'string' } },
};
const PENDING_HEADERS = {
  ...NVCF_HEADERS,
  'NVCF-PERCENT-COMPLETE': { description: "the container's progress, 0–100, while it reports one", schema: { type: 'integer', minimum: 0, maximum: 100 } },
};

/** The answers of a call: the container's own, pending (202), or a large result (302). */
function invocationAnswers(ok: string): Json {
  return {
    '200': { description: ok, headers: NVCF_HEADERS, content: { '*/*': {} } },
    '202': {
      description: 'not done within the poll window: poll GET /v2/nvcf/pexec/status/{requestId}; the body is the partial response, if the container wrote one',
      headers: PENDING_HEADERS,
    },
    '302': { description: 'a result larger than 5 MiB: `Location` is a presigned URL of a zip of it', headers: { ...NVCF_HEADERS, Location: { schema: { type: 'string', format: 'uri' } } } },
  };
}

/** The invocation routes, served by the invocation service with the container's bodies and NVCF's headers. */
const INVOCATION_DOCS: Record<string, { operationId: string; summary: string; description?: string; parameters: Json[]; body: boolean; answers: Json }> = {
  I1: {
    operationId: 'invokeFunction',
    summary: 'Invoke a function (a random ACTIVE version)',
    description: "The body goes to the container's inferenceUrl as sent, with its Content-Type; so do the caller's other headers.",
    parameters: [POLL_HEADER, ASSETS_HEADER, ACCEPT_HEADER],
    body: true,
    answers: invocationAnswers("the container's answer, its status, headers and body as it sent them"),
  },
  I2: {
    operationId: 'invokeFunctionVersion',
    summary: 'Invoke a function version',
    parameters: [POLL_HEADER, ASSETS_HEADER, ACCEPT_HEADER],
    body: true,
    answers: invocationAnswers("the container's answer, its status, headers and body as it sent them"),
  },
  I3: {
    operationId: 'getInvocationStatus',
    summary: "Poll a call's outcome",
    parameters: [POLL_HEADER],
    body: false,
    answers: { ...invocationAnswers('the outcome, as I1 would have answered it'), '410': problemAnswer(410, 'the call was canceled') },
  },
  I6: {
    operationId: 'cancelInvocation',
    summary: 'Cancel a pending or running call (our extension)',
    parameters: [],
    body: false,
    answers: { '204': { description: 'canceled', headers: NVCF_HEADERS }, '409': problemAnswer(409, 'the call is over already') },
  },
};

/** I5: direct invocation, any method and path on a direct-invocation address. */
function directInvocation(): Record<string, Json> {
  const operation = (method: string) => ({
    operationId: `invokeDirect${method[0]!.toUpperCase()}${method.slice(1)}`,
    tags: ['Invocation'],
    summary: `Direct invocation (${method.toUpperCase()})`,
    description: [
      "Any method, and any path (of one or more segments), reaches the function's container verbatim, and its answer comes back unchanged (no 202 or 302).",
      'Address the function with the host `{functionId}.invocation.<domain>` or `{versionId}.{functionId}.invocation.<domain>` (with `invocationDomain` set),',
      'or with the `function-id` (and optional `function-version-id`) header on any other host of the invocation service.',
    ].join(' '),
    servers: [
      { url: 'https://{functionId}.invocation.{domain}', variables: { functionId: { default: '00000000-0000-0000-0000-000000000000' }, domain: { default: 'example.com' } } },
      { url: '/', description: 'the invocation URL or the local stack, with the function-id header' },
    ],
    'x-nvcf-ref': 'I5',
    'x-nvcf-scope': 'invoke_function',
    parameters: [
      { name: 'path', in: 'path', required: true, description: "the container's path, slashes included", schema: { type: 'string' } },
      header('function-id', 'the function, unless the host names it', UUID),
      header('function-version-id', 'the version, when pinned', UUID),
    ],
    ...(method === 'get' || method === 'delete' ? {} : { requestBody: { required: false, content: { '*/*': {} } } }),
    responses: { '200': { description: "the container's answer, unchanged (any status)", content: { '*/*': {} } }, ...errorAnswers(INVOCATION_ERRORS) },
  });
  return Object.fromEntries(['get', 'post', 'put', 'patch', 'delete'].map((method) => [method, operation(method)]));
}

function problemAnswer(status: number, description = reasonPhrase(status)): Json {
  return { description, content: { 'application/problem+json': { schema: { $ref: '#/components/schemas/Problem' } } } };
}

function errorAnswers(statuses: readonly number[]): Json {
  const answers: Json = {};
  for (const status of [...new Set(statuses)].sort()) {
    answers[String(status)] =
      status === 429
        ? { ...problemAnswer(status, 'too many calls: retry after `Retry-After` seconds'), headers: { 'Retry-After': { schema: { type: 'integer' } } } }
        : { $ref: `#/components/responses/Problem${status}` };
  }
  return answers;
}

/** A schema as JSON Schema 2020-12 (OpenAPI 3.1's dialect), as a client sends it: the input side of transforms. */
function jsonSchema(schema: z.ZodType): Json {
  const { $schema: _dialect, ...rest } = z.toJSONSchema(schema, { io: 'input', unrepresentable: 'any' }) as Json;
  return rest;
}

/** Query parameters of an object schema, one per property. */
function queryParameters(schema: z.ZodType): Json[] {
  const object = jsonSchema(schema) as { properties?: Record<string, Json>; required?: string[] };
  return Object.entries(object.properties ?? {}).map(([name, property]) => ({
    name,
    in: 'query',
    required: object.required?.includes(name) ?? false,
    schema: property,
  }));
}

function pathParameters(path: string): Json[] {
  return [...path.matchAll(/\{(\w+)\}/g)].map(([, name]) => ({ name, in: 'path', required: true, schema: PATH_PARAMETERS[name!] ?? UUID }));
}

const TAGS: Record<string, string> = {
  F: 'Functions',
  S: 'Functions',
  RL: 'Rate limits',
  R: 'Registry credentials',
  Z: 'Authorizations',
  K: 'API keys',
  D: 'Deployments',
  I: 'Invocation',
  A: 'Assets',
  Q: 'Queues',
  G: 'GPUs',
  L: 'Logs',
  U: 'Accounts',
  O: 'Documentation',
};

/** The tag of a route: by the letters of its reference (RL1 is a rate-limit route, R1 a registry credentials one). */
function tagOf(ref: string): string {
  const tag = TAGS[ref.replace(/\d+$/, '')];
  if (!tag) throw new Error(`route ${ref} has no OpenAPI tag: add its letters to TAGS in lambdas/http/openapi.ts`);
  return tag;
}

/** The operation of a route a Lambda serves. */
function lambdaOperation(route: RouteDefinition, doc: RouteDoc, bodyNames: Map<z.ZodType, string>): Json {
  const scope = route.scope;
  const { operationId } = doc;
  let requestBody: Json | undefined;
  if (doc.body) {
    if (!bodyNames.has(doc.body)) bodyNames.set(doc.body, `${operationId[0]!.toUpperCase()}${operationId.slice(1)}Request`);
    const examples = Object.fromEntries(Object.entries(doc.examples ?? {}).map(([name, value]) => [name, { value }]));
    requestBody = {
      required: true,
      content: { 'application/json': { schema: { $ref: `#/components/schemas/${bodyNames.get(doc.body)}` }, ...(doc.examples ? { examples } : {}) } },
    };
  }
  const answer = doc.answer.status === 204 ? { description: doc.answer.description } : { description: doc.answer.description, content: { 'application/json': { schema: { type: ['object', 'array'] } } } };
  return {
    operationId,
    tags: [tagOf(route.ref)],
    summary: doc.summary,
    description: [doc.description, scope ? `Needs an API key with the \`${scope}\` scope.` : 'Needs no API key.'].filter(Boolean).join('\n\n'),
    'x-nvcf-ref': route.ref,
    'x-nvcf-scope': scope,
    ...(scope ? {} : { security: [] }),
    parameters: [...pathParameters(route.path), ...(doc.query ? queryParameters(doc.query) : [])],
    ...(requestBody ? { requestBody } : {}),
    responses: { [String(doc.answer.status)]: answer, ...errorAnswers(scope ? [...COMMON_ERRORS, ...(doc.errors ?? [])] : [500]) },
  };
}

function invocationOperation(route: RouteDefinition): Json {
  const doc = INVOCATION_DOCS[route.ref];
  if (!doc) throw new Error(`invocation route ${route.ref} has no description in lambdas/http/openapi.ts`);
  return {
    operationId: doc.operationId,
    tags: ['Invocation'],
    summary: doc.summary,
    description: [doc.description, `Needs an API key with the \`${route.scope}\` scope. Served by the invocation service.`].filter(Boolean).join('\n\n'),
    'x-nvcf-ref': route.ref,
    'x-nvcf-scope': route.scope,
    parameters: [...pathParameters(route.path), ...doc.parameters],
    ...(doc.body ? { requestBody: { required: false, description: "the function's input, any content type", content: { '*/*': {} } } } : {}),
    responses: { ...doc.answers, ...errorAnswers(INVOCATION_ERRORS) },
  };
}

/** Routes of the table no description covers: the document cannot be built until they have one. */
export function undocumentedRoutes(): string[] {
  return ROUTES.filter((route) => (route.handler === INVOCATION_SERVICE ? !INVOCATION_DOCS[route.ref] : !LAMBDA_ROUTE_DOCS[route.ref])).map((route) => `${route.ref} ${route.method} ${route.path}`);
}

/** Where the document is kept in the repository, and bundled from into the gpus Lambda. */
export const OPENAPI_FILE = fileURLToPath(new URL('../../docs/openapi.json', import.meta.url));

/** The document as docs/openapi.json holds it. */
export function openApiText(): string {
  return `${JSON.stringify(openApiDocument(), null, 2)}\n`;
}

export function openApiDocument(version = packageJson.version): Json {
  const missing = undocumentedRoutes();
  if (missing.length > 0) throw new Error(`routes without an OpenAPI description (add them to their Lambda's RouteDocs): ${missing.join('; ')}`);
  const bodyNames = new Map<z.ZodType, string>();
  const paths: Record<string, Record<string, Json>> = {};
  for (const route of ROUTES) {
    const operation = route.handler === INVOCATION_SERVICE ? invocationOperation(route) : lambdaOperation(route, LAMBDA_ROUTE_DOCS[route.ref]!, bodyNames);
    (paths[route.path] ??= {})[route.method.toLowerCase() as Lowercase<HttpMethod>] = operation;
  }
  paths['/{path}'] = directInvocation();
  const statuses = [400, 401, 403, 404, 405, 409, 410, 413, 500, 501, 503];
  return {
    openapi: '3.1.0',
    info: {
      title: 'NVIDIA Cloud Functions on AWS',
      version,
      description: [
        "NVCF's HTTP API as this installation serves it: paths, bodies, headers and status codes are NVCF's, so NVCF clients work with only the base URL changed.",
        'Every error is `application/problem+json`. Authenticate with `Authorization: Bearer <API key>`; each operation names the scope its key needs (`x-nvcf-scope`) and its reference in docs/api.md (`x-nvcf-ref`).',
        `CORS: any origin; exposed headers ${CORS.exposeHeaders.join(', ')}.`,
        "gRPC functions are not called through these operations: a gRPC client reaches them over HTTP/2 on the invocation URL's host (locally the API's own port), with the metadata `authorization`, `function-id` and optional `function-version-id` (README, \"gRPC functions\").",
      ].join('\n\n'),
      license: { name: 'Apache-2.0', identifier: 'Apache-2.0' },
    },
    servers: [{ url: '/', description: 'the installation serving this document (stack output ApiUrl, or http://127.0.0.1:8700 for npm start)' }],
    security: [{ apiKey: [] }],
    tags: [...new Set(Object.values(TAGS))].map((name) => ({ name })),
    paths,
    components: {
      securitySchemes: {
        apiKey: { type: 'http', scheme: 'bearer', bearerFormat: 'nvapi-…', description: `An API key (npm run keys, or POST /v1/keys). Scopes: ${SCOPES.join(', ')}.` },
      },
      schemas: {
        Problem: jsonSchema(problemBodySchema),
        ...Object.fromEntries([...bodyNames].map(([schema, name]) => [name, jsonSchema(schema)])),
      },
      responses: Object.fromEntries(statuses.map((status) => [`Problem${status}`, problemAnswer(status)])),
    },
  };
}
