import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ENV } from '../../core/names';
import { OPENAPI_PATH } from '../../core/routes';
import { OPENAPI_FILE } from '../../lambdas/http/openapi';
import { startFakeEks, type FakeEks } from '../support/fake-eks';
import { newAccount, startTestStack, type TestStack } from '../support/stack';

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-5[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

describe('GPUs from NVCF_GPUS', () => {
  let stack: TestStack;
  beforeAll(async () => {
    stack = await startTestStack({
      [ENV.gpus]: JSON.stringify([
        { gpu: 'L40S', instanceTypes: ['g6e.xlarge', 'g6e.2xlarge'] },
        { name: 'L4', instanceTypes: ['g6.xlarge'], maxNodes: 2 },
      ]),
    });
  });
  afterAll(async () => stack.stop());

  it('serves the OpenAPI document without a key, as docs/openapi.json holds it, and with a key the same', async () => {
    const { key } = await newAccount(['register_function']);
    for (const call of [{}, { key }]) {
      const response = await stack.call('GET', OPENAPI_PATH, call);
      expect(response.statusCode).toBe(200);
      expect(response.headers['content-type']).toBe('application/json');
      expect(response.json).toEqual(JSON.parse(readFileSync(OPENAPI_FILE, 'utf8')));
    }
  });

  it('lists supportedGpus as a bare array with the AWS backend', async () => {
    const { key } = await newAccount(['register_function']);
    const response = await stack.call('GET', '/v2/nvcf/supportedGpus', { key });
    expect(response.statusCode).toBe(200);
    expect(response.json).toEqual([
      { gpu: 'L40S', backend: 'AWS', instanceTypes: ['g6e.xlarge', 'g6e.2xlarge'] },
      { gpu: 'L4', backend: 'AWS', instanceTypes: ['g6.xlarge'] },
    ]);
  });

  it('lists one local cluster group owned by the caller, the first instance type being the default', async () => {
    const { key, accountId } = await newAccount(['list_cluster_groups']);
    const response = await stack.call('GET', '/v2/nvcf/clusterGroups', { key });
    expect(response.statusCode).toBe(200);
    const [group, ...others] = response.json.clusterGroups;
    expect(others).toEqual([]);
    expect(group).toEqual({
      id: expect.stringMatching(UUID),
      name: 'local',
      ncaId: accountId,
      authorizedNcaIds: [accountId],
      clusters: [{ id: expect.stringMatching(UUID), name: 'local' }],
      gpus: [
        {
          name: 'L40S',
          instanceTypes: [
            { name: 'g6e.xlarge', description: 'L40S GPU on g6e.xlarge', default: true },
            { name: 'g6e.2xlarge', description: 'L40S GPU on g6e.2xlarge', default: false },
          ],
        },
        { name: 'L4', instanceTypes: [{ name: 'g6.xlarge', description: 'L4 GPU on g6.xlarge', default: true }] },
      ],
    });
    expect(group.id).not.toBe(group.clusters[0].id);
  });

  it('gives every account the same cluster group id', async () => {
    const a = await newAccount(['list_cluster_groups']);
    const b = await newAccount(['list_cluster_groups']);
    const [first, second] = await Promise.all([
      stack.call('GET', '/v2/nvcf/clusterGroups', { key: a.key }),
      stack.call('GET', '/v2/nvcf/clusterGroups', { key: b.key }),
    ]);
    expect(first.json.clusterGroups[0].id).toBe(second.json.clusterGroups[0].id);
    expect(second.json.clusterGroups[0].ncaId).toBe(b.accountId);
  });

  it('answers 401 without a key and 403 without the route scope', async () => {
    const { key } = await newAccount(['invoke_function']);
    for (const path of ['/v2/nvcf/supportedGpus', '/v2/nvcf/clusterGroups']) {
      expect((await stack.call('GET', path)).statusCode).toBe(401);
      const forbidden = await stack.call('GET', path, { key });
      expect(forbidden.statusCode).toBe(403);
      expect(forbidden.headers['content-type']).toBe('application/problem+json');
    }
  });
});

describe('GPUs without configuration', () => {
  let stack: TestStack;
  beforeAll(async () => {
    stack = await startTestStack();
    delete process.env[ENV.gpus];
    delete process.env[ENV.clusterName];
  });
  afterAll(async () => stack.stop());

  it('offers the single LOCAL GPU', async () => {
    const { key } = await newAccount();
    const response = await stack.call('GET', '/v2/nvcf/supportedGpus', { key });
    expect(response.json).toEqual([{ gpu: 'LOCAL', backend: 'AWS', instanceTypes: ['local.gpu'] }]);
  });
});

describe('GPUs with an invalid NVCF_GPUS', () => {
  let stack: TestStack;
  beforeAll(async () => {
    stack = await startTestStack({ [ENV.gpus]: '[{"gpu":"L40S","instanceTypes":[]}]' });
  });
  afterAll(async () => {
    delete process.env[ENV.gpus];
    await stack.stop();
  });

  it('answers 500 without leaking the configuration error to the caller', async () => {
    const { key } = await newAccount();
    const response = await stack.call('GET', '/v2/nvcf/supportedGpus', { key });
    expect(response.statusCode).toBe(500);
    expect(response.json.detail).toMatch(/internal error/);
  });
});

describe('GPUs from EKS nodegroups', () => {
  let stack: TestStack;
  let eks: FakeEks;
  beforeAll(async () => {
    eks = await startFakeEks(
      'gpu-cluster',
      [
        { name: 'system', labels: { 'nvcf.io/node-role': 'system' }, instanceTypes: ['m7g.large'], scaling: { minSize: 2, maxSize: 3, desiredSize: 2 } },
        { name: 'gpu-l4-a', labels: { 'nvcf.io/gpu': 'L4' }, instanceTypes: ['g6.xlarge'], scaling: { minSize: 0, maxSize: 2, desiredSize: 0 } },
        { name: 'gpu-l4-b', labels: { 'nvcf.io/gpu': 'L4' }, instanceTypes: ['g6.2xlarge', 'g6.xlarge'], scaling: { minSize: 0, maxSize: 2, desiredSize: 0 } },
        { name: 'gpu-h100', labels: { 'nvcf.io/gpu': 'H100' }, instanceTypes: ['p5.48xlarge'], scaling: { minSize: 0, maxSize: 1, desiredSize: 0 } },
      ],
      { k8sVersion: '1.34', pageSize: 2 },
    );
    stack = await startTestStack({ [ENV.clusterName]: 'gpu-cluster', AWS_ENDPOINT_URL_EKS: eks.url });
  });
  afterAll(async () => {
    delete process.env[ENV.clusterName];
    delete process.env.AWS_ENDPOINT_URL_EKS;
    await stack.stop();
    await eks.close();
  });

  it('builds the offers from the nodegroups labelled nvcf.io/gpu, across ListNodegroups pages', async () => {
    const { key } = await newAccount();
    const response = await stack.call('GET', '/v2/nvcf/supportedGpus', { key });
    expect(response.statusCode).toBe(200);
    expect(response.json).toEqual([
      { gpu: 'H100', backend: 'AWS', instanceTypes: ['p5.48xlarge'] },
      { gpu: 'L4', backend: 'AWS', instanceTypes: ['g6.xlarge', 'g6.2xlarge'] },
    ]);
  });

  it('reports the EKS cluster and its Kubernetes version in clusterGroups', async () => {
    const { key } = await newAccount();
    const response = await stack.call('GET', '/v2/nvcf/clusterGroups', { key });
    const [group] = response.json.clusterGroups;
    expect(group.name).toBe('gpu-cluster');
    expect(group.clusters).toEqual([{ id: expect.stringMatching(UUID), name: 'gpu-cluster', k8sVersion: '1.34' }]);
    expect(group.gpus.map((gpu: { name: string }) => gpu.name)).toEqual(['H100', 'L4']);
  });

  it('asks EKS again only after the cache expires', async () => {
    const { key } = await newAccount();
    const before = eks.requests.length;
    await stack.call('GET', '/v2/nvcf/supportedGpus', { key });
    await stack.call('GET', '/v2/nvcf/clusterGroups', { key });
    expect(eks.requests.length).toBe(before);
  });
});
