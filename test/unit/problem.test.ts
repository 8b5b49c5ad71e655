import { describe, expect, it } from 'vitest';
import { kebabReason, reasonPhrase } from '../../core/problem';

describe('problem titles and types', () => {
  it.each([
    [404, 'Not Found', 'not-found'],
    [413, 'Payload Too Large', 'payload-too-large'],
    [422, 'Unprocessable Entity', 'unprocessable-entity'],
    [451, 'Unavailable For Legal Reasons', 'unavailable-for-legal-reasons'],
    [503, 'Service Unavailable', 'service-unavailable'],
  ])('names status %i "%s" with the type suffix %s, as NVCF does', (status, title, suffix) => {
    expect(reasonPhrase(status)).toBe(title);
    expect(kebabReason(status)).toBe(suffix);
  });

  it('names a status without a reason phrase "Unknown Status"', () => {
    expect(reasonPhrase(599)).toBe('Unknown Status');
  });
});
