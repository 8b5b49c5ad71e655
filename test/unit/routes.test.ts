import { describe, expect, it } from 'vitest';
import { API_HANDLERS, ROUTES, matchRoute, routeKey } from '../../core/routes';

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
