/**
 * Writes the API's OpenAPI document (lambdas/http/openapi.ts) to
 * docs/openapi.json, which the API serves at GET /v2/nvcf/openapi.json:
 * `npm run openapi` after changing a route or a request schema
 * (test/unit/openapi.test.ts fails until the file matches the code).
 */
import { writeFileSync } from 'node:fs';
import { OPENAPI_FILE, openApiText } from '../lambdas/http/openapi';

writeFileSync(OPENAPI_FILE, openApiText());
process.stdout.write(`wrote ${OPENAPI_FILE}\n`);
