/**
 * A1–A4: create, list, get and delete assets (nvcf-api.md §2.4, §7). Storage
 * and presigning live in core/assets.ts; this file parses requests and
 * renders NVCF's shapes.
 */
import { createAsset, createAssetRequestSchema, deleteOwnedAsset, getOwnedAsset, listAccountAssets } from '../core/assets';
import { notFound } from '../core/problem';
import { createApiHandler } from './http/handler';
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

/** Serves the assets routes of core/routes.ts. */
export const handler = createApiHandler('assets', { A1: create, A2: list, A3: get, A4: remove });
