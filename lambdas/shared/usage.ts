/**
 * U1, our extension: the caller account's usage against each of its quotas
 * (core/quotas.ts), served by the functions Lambda.
 */
import { accountUsage } from '../../core/quotas';
import type { ApiRequest } from '../http/request';
import { json, type ApiResponse } from '../http/responses';

/** `{"accountId", "quotas": {"<name>": {"quota", "used", "description"}}}`; a null quota is unlimited. */
async function usage(req: ApiRequest): Promise<ApiResponse> {
  return json(200, { accountId: req.caller.accountId, quotas: await accountUsage(req.caller.accountId) });
}

export const usageRoutes = { U1: usage };
