/**
 * ClientNodeApi against a stand-in API server on loopback that pages its
 * lists as kube-apiserver does: a list asked with `limit` gets `limit` items
 * and a `metadata.continue` token.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { KubeConfig } from '@kubernetes/client-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ClientNodeApi } from '../../gpu-agent/controller/k8s/api';

const SCALED_OBJECTS = Array.from({ length: 1200 }, (_, i) => ({ apiVersion: 'keda.sh/v1alpha1', kind: 'ScaledObject', metadata: { name: `nvcf-v${i}-0`, namespace: 'nvcf-functions' } }));

let server: Server;
let api: ClientNodeApi;
const requests: URL[] = [];

beforeAll(async () => {
  server = createServer((request, response) => {
    const url = new URL(request.url!, 'http://localhost');
    requests.push(url);
    response.setHeader('content-type', 'application/json');
    if (url.pathname === '/apis/keda.sh/v1alpha1') {
      return response.end(JSON.stringify({ kind: 'APIResourceList', groupVersion: 'keda.sh/v1alpha1', resources: [{ name: 'scaledobjects', kind: 'ScaledObject', namespaced: true, verbs: ['list'] }] }));
    }
    const start = Number(url.searchParams.get('continue') ?? 0);
    const limit = Number(url.searchParams.get('limit') ?? SCALED_OBJECTS.length);
    const end = Math.min(start + limit, SCALED_OBJECTS.length);
    const metadata = end < SCALED_OBJECTS.length ? { continue: String(end) } : {};
    response.end(JSON.stringify({ apiVersion: 'keda.sh/v1alpha1', kind: 'ScaledObjectList', metadata, items: SCALED_OBJECTS.slice(start, end).map(({ metadata }) => ({ metadata })) }));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const config = new KubeConfig();
  config.loadFromClusterAndUser({ name: 'test', server: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, skipTLSVerify: true }, { name: 'test' });
  api = new ClientNodeApi(config);
});
afterAll(() => new Promise<void>((resolve) => server.close(() => resolve())));

describe('listing objects of a custom kind', () => {
  it('returns every ScaledObject, however many, each with its apiVersion and kind', async () => {
    const items = await api.list('ScaledObject', 'nvcf-functions', 'app.kubernetes.io/managed-by=nvcf-controller');
    expect(items).toHaveLength(SCALED_OBJECTS.length);
    expect(items[1199]).toMatchObject({ apiVersion: 'keda.sh/v1alpha1', kind: 'ScaledObject', metadata: { name: 'nvcf-v1199-0' } });
    const list = requests.find((url) => url.pathname.endsWith('/scaledobjects'))!;
    expect(list.pathname).toBe('/apis/keda.sh/v1alpha1/namespaces/nvcf-functions/scaledobjects');
    expect(list.searchParams.get('labelSelector')).toBe('app.kubernetes.io/managed-by=nvcf-controller');
  });
});
