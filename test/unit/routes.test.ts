import { describe, expect, it } from 'vitest';
import { API_HANDLERS, ROUTES, UNMATCHED_HANDLER, matchRoute, routeKey, unmatchedRequest } from '../../core/routes';

describe('route table', () => {
  it('has one route per method and path', () => {
    const keys = ROUTES.map(routeKey);
    expect(new Set(keys).size).toBe(keys.length);
  });

  it('gives every resource-group Lambda at least one route', () => {
    for (const handler of API_HANDLERS) expect(ROUTES.some((route) => route.handler === handler)).toBe(true);
  });

  it('prefers literal segments over parameters, as API Gateway does', () => {
    const match = matchRoute('GET', '/v2/nvcf/functions/ids');
    expect(match && 'route' in match && match.route.ref).toBe('F6');
  });

  it('extracts path parameters', () => {
    const match = matchRoute('DELETE', '/v2/nvcf/deployments/functions/f-1/versions/v-2');
    expect(match).toMatchObject({ route: { ref: 'D4' }, pathParameters: { functionId: 'f-1', functionVersionId: 'v-2' } });
  });

  it('decodes path parameters, and keeps a segment that is not valid percent-encoding as sent', () => {
    expect(matchRoute('GET', '/v2/nvcf/assets/a%2Db')).toMatchObject({ pathParameters: { assetId: 'a-b' } });
    expect(matchRoute('GET', '/v2/nvcf/assets/%ZZ')).toMatchObject({ route: { ref: 'A3' }, pathParameters: { assetId: '%ZZ' } });
  });

  it('reports the allowed methods when only the method is wrong', () => {
    expect(matchRoute('PATCH', '/v2/nvcf/assets')).toEqual({ allowed: ['POST', 'GET'] });
  });

  it('matches nothing outside the API', () => {
    expect(matchRoute('GET', '/v2/nvcf/unknown')).toBeUndefined();
  });
});

describe('the $default route (requests no route serves)', () => {
  const defaultEvent = (method: string, path: string) =>
    ({ version: '2.0', routeKey: '$default', rawPath: path, rawQueryString: '', headers: {}, isBase64Encoded: false, requestContext: { requestId: 'r-1', http: { method, path } } }) as never;
  const context = { getRemainingTimeInMillis: () => 10_000, functionName: 'gpus', awsRequestId: 'r-1' } as never;

  it('answers 404 problem+json from the Lambda API Gateway sends it to, without any authorizer context', async () => {
    const { handler } = await import(`../../lambdas/${UNMATCHED_HANDLER}`);
    const response = await handler(defaultEvent('GET', '/v2/nvcf/nothing'), context);
    expect(response.statusCode).toBe(404);
    expect(response.headers['content-type']).toBe('application/problem+json');
    expect(JSON.parse(response.body)).toMatchObject({ type: 'urn:nvcf:problem-details:not-found', title: 'Not Found', status: 404, instance: '/v2/nvcf/nothing' });
  });

  it('answers 405 with Allow for a known path and another method', async () => {
    const { handler } = await import(`../../lambdas/${UNMATCHED_HANDLER}`);
    const response = await handler(defaultEvent('PUT', '/v2/nvcf/functions'), context);
    expect(response.statusCode).toBe(405);
    expect(response.headers.allow).toBe('POST, GET');
  });

  it('says a route of the table this installation does not serve is not served here', () => {
    expect(unmatchedRequest('POST', '/v2/nvcf/pexec/functions/f-1').detail).toContain('need a GPU cluster');
  });
});
