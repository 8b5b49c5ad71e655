/**
 * API Gateway REQUEST authorizer (simple responses, cached per Authorization
 * header). It resolves `Authorization: Bearer <key>` to the key's account and
 * scopes. An unknown key is passed on as unauthenticated rather than denied:
 * a denial can only become API Gateway's bare 403, while the handlers answer
 * 401 problem+json, which is what NVCF clients expect.
 */
import type { APIGatewayRequestAuthorizerEventV2, APIGatewaySimpleAuthorizerWithContextResult } from 'aws-lambda';
import { resolveApiKey } from '../core/api-keys';
import { logger } from './http/logger';
import type { AuthorizerContext } from './http/request';

type Result = APIGatewaySimpleAuthorizerWithContextResult<AuthorizerContext>;

const refuse = (reason: string): Result => ({ isAuthorized: true, context: { authenticated: 'false', reason } });

export async function handler(event: APIGatewayRequestAuthorizerEventV2): Promise<Result> {
  const header = event.identitySource?.[0] ?? event.headers?.authorization ?? '';
  const match = /^Bearer\s+(\S+)\s*$/i.exec(header);
  if (!match) return refuse('the Authorization header must be "Bearer <API key>"');
  const record = await resolveApiKey(match[1]!);
  if (!record) {
    logger.info('unknown, revoked or expired API key', { routeKey: event.routeKey });
    // An expired key reads as a revoked one, in the words clients already match.
    return refuse('the API key is unknown or has been revoked');
  }
  const context: AuthorizerContext = { authenticated: 'true', accountId: record.accountId, scopes: record.scopes.join(','), keyId: record.keyHash };
  if (record.expiresAt) context.keyExpiresAt = record.expiresAt;
  return { isAuthorized: true, context };
}
