/**
 * ClientNodeApi against a stand-in API server on loopback that pages its
 * lists as kube-apiserver does: a list asked with `limit` gets `limit` items
 * and a `metadata.continue` token. And which API errors count as the object's
 * own (reported) rather than passing (retried); the cluster suite meets the
 * real ones (test/cluster/controller-failures.test.ts).
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { KubeConfig } from '@kubernetes/client-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ApiException } from '@kubernetes/client-node';
import { ClientNodeApi, objectRefusal } from '../../gpu-agent/controller/k8s/api';

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

describe('objectRefusal: which API errors the same object meets every time', () => {
  const status = (code: number, message: string) => new ApiException(code, 'Unsuccessful HTTP Request', JSON.stringify({ kind: 'Status', code, message }), {});

  it('names the invalid object: 400, 422, and the 500 server-side apply answers for a wrongly typed field', () => {
    expect(objectRefusal(status(422, 'Deployment.apps "x" is invalid: spec.template.spec.containers[0].name: Required value'))).toContain('is invalid');
    expect(objectRefusal(status(400, 'the object provided is unrecognized'))).toBe('the object provided is unrecognized');
    const typed = 'failed to create typed patch object (apps/v1, Kind=Deployment): .spec.template.spec.containers[name="c"].ports: expected numeric (int or float), got string';
    expect(objectRefusal(status(500, typed))).toBe(typed);
  });

  it('leaves what a later pass may get past: other 500s, 403, 404, 409, 429, no answer', () => {
    for (const [code, message] of [[500, 'etcdserver: request timed out'], [403, 'forbidden'], [404, 'namespaces "nvcf-functions" not found'], [409, 'conflict'], [429, 'storage is (re)initializing']] as const) {
      expect(objectRefusal(status(code, message))).toBeUndefined();
    }
    expect(objectRefusal(new Error('connect ECONNREFUSED 127.0.0.1:6443'))).toBeUndefined();
    expect(objectRefusal(undefined)).toBeUndefined();
  });
});
