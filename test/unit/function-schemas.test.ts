import { describe, expect, it } from 'vitest';
import {
  createFunctionRequestSchema,
  durationSeconds,
  isGrpcInferenceUrl,
  metadataUpdateSchema,
  ONE_OF_ARTIFACTS_MESSAGE,
} from '../../core/function-schemas';

const MINIMAL = { name: 'fn', inferenceUrl: '/infer', containerImage: 'nvcr.io/org/image:1.0' };

describe('durationSeconds', () => {
  it.each<[string, number]>([
    ['PT10S', 10],
    ['PT1M30S', 90],
    ['PT0.5S', 0.5],
    ['PT2H', 7200],
    ['P1DT1H', 90000],
    ['PT0S', 0],
  ])('reads %s as %d seconds', (duration, seconds) => {
    expect(durationSeconds(duration)).toBe(seconds);
  });

  it.each(['P', 'PT', '10s', 'PT10', 'P1Y', 'P1W', 'pt10s', ''])('rejects %j', (duration) => {
    expect(durationSeconds(duration)).toBeNaN();
  });
});

describe('isGrpcInferenceUrl', () => {
  it.each(['/grpc', '/gRPC', 'grpc.nvcf.nvidia.com:443'])('treats %s as gRPC', (url) => expect(isGrpcInferenceUrl(url)).toBe(true));
  it.each(['/echo', '/grpc/echo', 'grpc.example.com:443'])('treats %s as HTTP', (url) => expect(isGrpcInferenceUrl(url)).toBe(false));
});

describe('createFunctionRequestSchema', () => {
  it.each([
    'nvcr.io/org/image:1.0',
    'nvcr.io/org/team/fastapi_echo_sample:latest',
    'localhost:5000/echo',
    'echo',
    'public.ecr.aws/my-org/my__image-x:v1.2_rc',
    `123456789012.dkr.ecr.us-east-1.amazonaws.com/fn@sha256:${'a'.repeat(64)}`,
  ])('accepts the container image %s', (containerImage) => {
    expect(createFunctionRequestSchema.safeParse({ ...MINIMAL, containerImage }).success).toBe(true);
  });

  it.each(['', 'Upper/Case', 'nvcr.io/org/image:', 'nvcr.io//image', 'image name', 'https://nvcr.io/org/image', 'image@sha256:short'])(
    'rejects the container image %j',
    (containerImage) => {
      const result = createFunctionRequestSchema.safeParse({ ...MINIMAL, containerImage });
      expect(result.success).toBe(false);
      expect(result.error?.issues[0]?.path).toEqual(['containerImage']);
    },
  );

  it.each<[string, string]>([
    ['/echo', '/echo'],
    ['/', '/'],
    ['v2/models/my-model/infer', '/v2/models/my-model/infer'],
    ['/v2/models/m:infer', '/v2/models/m:infer'],
    ['grpc.nvcf.nvidia.com:443', 'grpc.nvcf.nvidia.com:443'],
  ])('stores the inferenceUrl %s as %s', (inferenceUrl, stored) => {
    expect(createFunctionRequestSchema.parse({ ...MINIMAL, inferenceUrl }).inferenceUrl).toBe(stored);
  });

  it.each(['', 'http://host/echo', 'host:8000/echo', '/echo?x=1', '/echo#frag', '/ec ho'])('rejects the inferenceUrl %j', (inferenceUrl) => {
    expect(createFunctionRequestSchema.safeParse({ ...MINIMAL, inferenceUrl }).success).toBe(false);
  });

  it('keeps a given health object and reports its uri as healthUri', () => {
    const health = { protocol: 'gRPC', uri: '/', port: 8001, timeout: 'PT30S', expectedStatusCode: 200 } as const;
    const parsed = createFunctionRequestSchema.parse({ ...MINIMAL, inferenceUrl: '/echo', health });
    expect(parsed.health).toEqual(health);
    expect(parsed.healthUri).toBe('/');
  });

  it('stores an HTTP health uri without its leading / as a path', () => {
    const health = { protocol: 'HTTP', uri: 'v2/health/ready', port: 8000, timeout: 'PT10S', expectedStatusCode: 200 } as const;
    expect(createFunctionRequestSchema.parse({ ...MINIMAL, health }).health.uri).toBe('/v2/health/ready');
  });

  it('keeps both a deprecated healthUri and a health object as given', () => {
    const health = { protocol: 'HTTP', uri: '/ready', port: 8000, timeout: 'PT10S', expectedStatusCode: 204 } as const;
    const parsed = createFunctionRequestSchema.parse({ ...MINIMAL, healthUri: '/health', health });
    expect(parsed).toMatchObject({ healthUri: '/health', health });
  });

  it('keeps a JSON object secret as an object, for the secrets file', () => {
    const parsed = createFunctionRequestSchema.parse({ ...MINIMAL, secrets: [{ name: 'creds', value: { a: [1, 2] } }] });
    expect(parsed.secrets).toEqual([{ name: 'creds', value: { a: [1, 2] } }]);
  });

  it('counts a JSON object secret by its JSON text against the value limit', () => {
    const result = createFunctionRequestSchema.safeParse({ ...MINIMAL, secrets: [{ name: 's', value: { v: 'x'.repeat(32768) } }] });
    expect(result.success).toBe(false);
  });

  it('accepts models together with a containerImage', () => {
    const models = [{ name: 'm', version: '1', uri: 'v2/m' }];
    expect(createFunctionRequestSchema.parse({ ...MINIMAL, models }).models).toEqual(models);
  });

  it('reports the artifact rule without a field path, in NVCF wording', () => {
    const result = createFunctionRequestSchema.safeParse({ name: 'fn', inferenceUrl: '/infer' });
    expect(result.error?.issues).toEqual([expect.objectContaining({ path: [], message: ONE_OF_ARTIFACTS_MESSAGE })]);
  });

  it('drops fields it does not know', () => {
    const parsed = createFunctionRequestSchema.parse({ ...MINIMAL, telemetries: {}, utilsContainerImage: 'x' });
    expect(parsed).not.toHaveProperty('telemetries');
    expect(parsed).not.toHaveProperty('utilsContainerImage');
  });

  it('keeps rateLimit, NVCF’s RateLimit object, and refuses a malformed one', () => {
    expect(createFunctionRequestSchema.parse({ ...MINIMAL, rateLimit: { rateLimit: '10-S', syncCheck: false } }).rateLimit).toEqual({ rateLimit: '10-S', syncCheck: false });
    const refused = createFunctionRequestSchema.safeParse({ ...MINIMAL, rateLimit: { rateLimit: '10 per second' } });
    expect(refused.error?.issues).toEqual([expect.objectContaining({ path: ['rateLimit', 'rateLimit'], message: expect.stringContaining('is not a rate') })]);
  });
});

describe('metadataUpdateSchema', () => {
  it('keeps only the tags', () => {
    expect(metadataUpdateSchema.parse({ tags: ['a'], rateLimit: {} })).toEqual({ tags: ['a'] });
  });
});
