/**
 * A1–A4: create, list, get and delete assets (nvcf-api.md §2.4, §7). Storage
 * and presigning live in core/assets.ts; this file parses requests and
 * renders NVCF's shapes.
 */
import { createAsset, createAssetRequestSchema, deleteOwnedAsset, getOwnedAsset, listAccountAssets } from '../core/assets';
import { notFound } from '../core/problem';
import { createApiHandler } from './http/handler';
import type { RouteDocs } from './http/route-docs';
import { parseJsonBody, uuidParam, type ApiRequest } from './http/request';
import { json, noContent, type ApiResponse } from './http/responses';

const assetNotFound = (assetId: string) => notFound(`Asset '${assetId}' not found`);

async function create(req: ApiRequest): Promise<ApiResponse> {
  const request = parseJsonBody(req, createAssetRequestSchema);
  const { asset, uploadUrl, uploadForm } = await createAsset(req.caller.accountId, request);
  return json(200, { assetId: asset.assetId, uploadUrl, contentType: asset.contentType, description: asset.description, uploadForm });
}

async function list(req: ApiRequest): Promise<ApiResponse> {
  const assets = await listAccountAssets(req.caller.accountId);
  return json(200, { assets: assets.map(({ assetId, contentType, description }) => ({ assetId, contentType, description })) });
}

async function get(req: ApiRequest): Promise<ApiResponse> {
  const assetId = uuidParam(req, 'assetId');
  const asset = await getOwnedAsset(req.caller.accountId, assetId);
  if (!asset) throw assetNotFound(assetId);
  const { contentType, description, createdAt } = asset;
  return json(200, { asset: { assetId, contentType, description, createdAt } });
}

/** A second delete of the same asset answers 404: the asset is gone. */
async function remove(req: ApiRequest): Promise<ApiResponse> {
  const assetId = uuidParam(req, 'assetId');
  if (!(await deleteOwnedAsset(req.caller.accountId, assetId))) throw assetNotFound(assetId);
  return noContent();
}

export const assetRouteDocs: RouteDocs = {
  A1: {
    operationId: 'createAsset', summary: 'Create an asset (an input uploaded before an invocation)',
    description: 'Upload the bytes with `PUT` to `uploadUrl`, or with the presigned POST `uploadForm`; then name the asset in `NVCF-INPUT-ASSET-REFERENCES`.',
    body: createAssetRequestSchema,
    examples: { text: { contentType: 'text/plain', description: 'my input' } },
    answer: { status: 200, description: '`{assetId, uploadUrl, uploadForm, contentType, description}`' },
    errors: [413],
  },
  A2: { operationId: 'listAssets', summary: 'List assets', answer: { status: 200, description: '`{"assets": [Asset]}`' } },
  A3: { operationId: 'getAsset', summary: 'Get an asset', answer: { status: 200, description: '`{"asset": Asset}`' }, errors: [404] },
  A4: { operationId: 'deleteAsset', summary: 'Delete an asset', answer: { status: 204, description: 'deleted' }, errors: [404] },
};

/** Serves the assets routes of core/routes.ts. */
export const handler = createApiHandler('assets', { A1: create, A2: list, A3: get, A4: remove }, assetRouteDocs);
