/**
 * L1: a function version's logs, the stdout/stderr lines of its instances
 * (our extension; core/function-logs.ts). Owner only, like every version route.
 */
import { requireOwnedVersion } from '../core/deployments';
import { logsQueryParametersSchema, parseLogsQuery, readFunctionLogs } from '../core/function-logs';
import { createApiHandler } from './http/handler';
import type { RouteDocs } from './http/route-docs';
import { parseQuery, versionIds, type ApiRequest } from './http/request';
import { json, type ApiResponse } from './http/responses';

async function versionLogs(req: ApiRequest): Promise<ApiResponse> {
  const [functionId, versionId] = versionIds(req);
  const query = parseLogsQuery(parseQuery(req, logsQueryParametersSchema));
  await requireOwnedVersion(req.caller.accountId, functionId, versionId);
  const page = await readFunctionLogs(functionId, versionId, query);
  return json(200, { functionId, functionVersionId: versionId, ...page });
}

export const logRouteDocs: RouteDocs = {
  L1: {
    operationId: 'getFunctionLogs', summary: "A function version's instance logs (our extension)",
    query: logsQueryParametersSchema,
    answer: { status: 200, description: '`{functionId, functionVersionId, lines, cursor}`' },
    errors: [404],
  },
};

/** Serves L1 of core/routes.ts. */
export const handler = createApiHandler('logs', { L1: versionLogs }, logRouteDocs);
