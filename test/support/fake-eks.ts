/**
 * A tiny HTTP server that answers the few EKS REST calls the runtime makes
 * (DescribeCluster, ListNodegroups, DescribeNodegroup, UpdateNodegroupConfig),
 * so tests run the real EKS client against it through AWS_ENDPOINT_URL_EKS.
 * It records every request and applies scaling updates as EKS would.
 */
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface FakeNodegroup {
  name: string;
  labels?: Record<string, string>;
  instanceTypes?: string[];
  tags?: Record<string, string>;
  scaling: { minSize: number; maxSize: number; desiredSize: number };
}

export interface RecordedRequest {
  method: string;
  path: string;
  body?: any;
}

export interface FakeEks {
  /** Endpoint for AWS_ENDPOINT_URL_EKS. */
  url: string;
  clusterName: string;
  nodegroups: Map<string, FakeNodegroup>;
  requests: RecordedRequest[];
  /** Nodegroups whose updates fail with ResourceInUseException, as while an earlier update runs. */
  busy: Set<string>;
  /** The UpdateNodegroupConfig calls received, oldest first. */
  scalingUpdates(): { nodegroup: string; scalingConfig: FakeNodegroup['scaling'] }[];
  close(): Promise<void>;
}

function send(res: ServerResponse, status: number, body: unknown, errorType?: string): void {
  res.writeHead(status, { 'content-type': 'application/json', ...(errorType ? { 'x-amzn-errortype': errorType } : {}) });
  res.end(JSON.stringify(body));
}

async function readJson(req: IncomingMessage): Promise<any> {
  const chunks: Buffer[] = [];
  for await (const chunk of req) chunks.push(chunk as Buffer);
  const text = Buffer.concat(chunks).toString('utf8');
  return text ? JSON.parse(text) : undefined;
}

/** Starts the fake for one cluster; ListNodegroups pages `pageSize` names at a time. */
export async function startFakeEks(
  clusterName: string,
  nodegroups: FakeNodegroup[],
  options: { k8sVersion?: string; pageSize?: number } = {},
): Promise<FakeEks> {
  const state = new Map(nodegroups.map((ng) => [ng.name, structuredClone(ng)]));
  const requests: RecordedRequest[] = [];
  const busy = new Set<string>();
  const pageSize = options.pageSize ?? 100;

  const server = createServer(async (req, res) => {
    const url = new URL(req.url ?? '/', 'http://fake-eks');
    const body = req.method === 'POST' ? await readJson(req) : undefined;
    requests.push({ method: req.method ?? 'GET', path: url.pathname, body });
    const parts = url.pathname.split('/').filter(Boolean).map(decodeURIComponent);
    if (parts[0] !== 'clusters' || parts[1] !== clusterName) {
      return send(res, 404, { message: `No cluster found for name: ${parts[1]}.` }, 'ResourceNotFoundException');
    }
    if (parts.length === 2 && req.method === 'GET') {
      return send(res, 200, { cluster: { name: clusterName, version: options.k8sVersion ?? '1.33', status: 'ACTIVE' } });
    }
    if (parts[2] !== 'node-groups') return send(res, 404, { message: 'unknown path' }, 'ResourceNotFoundException');
    if (parts.length === 3 && req.method === 'GET') {
      const names = [...state.keys()];
      const start = Number(url.searchParams.get('nextToken') ?? 0);
      const next = start + pageSize;
      return send(res, 200, { nodegroups: names.slice(start, next), ...(next < names.length ? { nextToken: String(next) } : {}) });
    }
    const nodegroup = state.get(parts[3] ?? '');
    if (!nodegroup) return send(res, 404, { message: `No node group found for name: ${parts[3]}.` }, 'ResourceNotFoundException');
    if (parts.length === 4 && req.method === 'GET') {
      return send(res, 200, {
        nodegroup: {
          nodegroupName: nodegroup.name,
          clusterName,
          status: 'ACTIVE',
          labels: nodegroup.labels,
          instanceTypes: nodegroup.instanceTypes,
          tags: nodegroup.tags,
          scalingConfig: nodegroup.scaling,
        },
      });
    }
    if (parts[4] === 'update-config' && req.method === 'POST') {
      if (busy.has(nodegroup.name)) {
        return send(res, 409, { message: `Nodegroup ${nodegroup.name} is currently being updated` }, 'ResourceInUseException');
      }
      const next = { ...nodegroup.scaling, ...body?.scalingConfig };
      if (next.minSize > next.desiredSize || next.desiredSize > next.maxSize || next.maxSize < 1) {
        return send(res, 400, { message: 'Minimum capacity cannot be greater than desired size' }, 'InvalidParameterException');
      }
      nodegroup.scaling = next;
      return send(res, 200, { update: { id: `update-${requests.length}`, status: 'InProgress', type: 'ConfigUpdate' } });
    }
    return send(res, 404, { message: 'unknown path' }, 'ResourceNotFoundException');
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;

  return {
    url: `http://127.0.0.1:${port}`,
    clusterName,
    nodegroups: state,
    requests,
    busy,
    scalingUpdates: () =>
      requests
        .filter((r) => r.method === 'POST' && r.path.endsWith('/update-config'))
        .map((r) => ({ nodegroup: decodeURIComponent(r.path.split('/')[4]!), scalingConfig: r.body.scalingConfig })),
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
}
