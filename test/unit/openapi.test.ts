/**
 * The OpenAPI document against the code it describes: it is generated from the
 * route table and the handlers' schemas, the committed docs/openapi.json (what
 * the API serves) is that generation, it is valid OpenAPI 3.1, every route is
 * in it with its reference and scope, and every example it shows is a body
 * the handler accepts.
 */
import { readFileSync } from 'node:fs';
import { Validator } from '@seriousme/openapi-schema-validator';
import { describe, expect, it } from 'vitest';
import * as z from 'zod';
import { ROUTES } from '../../core/routes';
import { LAMBDA_ROUTE_DOCS, OPENAPI_FILE, openApiDocument, openApiText, undocumentedRoutes } from '../../lambdas/http/openapi';
import { parseJsonBody, parseQuery, type ApiRequest } from '../../lambdas/http/request';

type Operation = { 'x-nvcf-ref': string; 'x-nvcf-scope': string | null; requestBody?: { content: Record<string, { examples?: Record<string, { value: unknown }> }> } };
const document = openApiDocument() as { openapi: string; paths: Record<string, Record<string, Operation>> };

describe('the OpenAPI document', () => {
  it('describes every route of the table', () => {
    expect(undocumentedRoutes()).toEqual([]);
  });

  it('is what docs/openapi.json holds (run npm run openapi after changing a route or a schema)', () => {
    expect(readFileSync(OPENAPI_FILE, 'utf8')).toBe(openApiText());
  });

  it('is valid OpenAPI 3.1', async () => {
    const result = await new Validator().validate(structuredClone(document));
    expect(result.errors ?? []).toEqual([]);
    expect(result.valid).toBe(true);
    expect(document.openapi).toBe('3.1.0');
  });

  it('has every route at its path and method, with its reference and scope', () => {
    const mismatches = ROUTES.flatMap((route) => {
      const operation = document.paths[route.path]?.[route.method.toLowerCase()];
      if (!operation) return [`${route.ref} ${route.method} ${route.path} is missing`];
      return operation['x-nvcf-ref'] === route.ref && operation['x-nvcf-scope'] === route.scope ? [] : [`${route.ref} is documented as ${operation['x-nvcf-ref']} with scope ${operation['x-nvcf-scope']}`];
    });
    expect(mismatches).toEqual([]);
  });

  it("shows only examples the route's handler accepts", () => {
    const examples = Object.entries(LAMBDA_ROUTE_DOCS).flatMap(([ref, doc]) => Object.entries(doc.examples ?? {}).map(([name, value]) => ({ ref, name, value, schema: doc.body! })));
    expect(examples.length).toBeGreaterThan(10);
    const refused = examples.filter(({ schema, value }) => !schema.safeParse(value).success).map(({ ref, name }) => `${ref} example ${name}`);
    expect(refused).toEqual([]);
    // The same examples are in the document, under the operation's request body.
    const route = ROUTES.find((candidate) => candidate.ref === 'F1')!;
    expect(Object.keys(document.paths[route.path]!.post!.requestBody!.content['application/json']!.examples!)).toEqual(Object.keys(LAMBDA_ROUTE_DOCS.F1!.examples!));
  });

  it('is checked against the handlers at run time: a route validating with a schema its entry does not name fails', () => {
    const route = ROUTES.find((candidate) => candidate.ref === 'F8')!;
    const req = { route, doc: LAMBDA_ROUTE_DOCS.F8, body: Buffer.from('{"tags":[]}'), query: {} } as unknown as ApiRequest;
    expect(parseJsonBody(req, LAMBDA_ROUTE_DOCS.F8!.body!)).toEqual({ tags: [] });
    expect(() => parseJsonBody(req, z.object({ tags: z.array(z.string()) }))).toThrow(/F8 validates its body with a schema its OpenAPI entry does not name/);
    expect(() => parseQuery(req, z.object({}))).toThrow(/F8 validates its query/);
  });
});
