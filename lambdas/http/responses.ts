import type { APIGatewayProxyStructuredResultV2 } from 'aws-lambda';
import type { ProblemBody } from '../../core/problem';

export type ApiResponse = APIGatewayProxyStructuredResultV2 & { statusCode: number; headers: Record<string, string> };

/** A JSON response; `undefined` fields are dropped, as NVCF omits null fields. */
export function json(statusCode: number, body: unknown, headers: Record<string, string> = {}): ApiResponse {
  return {
    statusCode,
    headers: { 'content-type': 'application/json', ...headers },
    body: JSON.stringify(body),
  };
}

export function noContent(headers: Record<string, string> = {}): ApiResponse {
  return { statusCode: 204, headers, body: '' };
}

export function problemResponse(problem: ProblemBody, headers: Record<string, string> = {}): ApiResponse {
  return {
    statusCode: problem.status,
    headers: { 'content-type': 'application/problem+json', ...headers },
    body: JSON.stringify(problem),
  };
}
