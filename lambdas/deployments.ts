import { createApiHandler } from './http/handler';

/** Serves the deployments routes of core/routes.ts; unimplemented routes answer 501. */
export const handler = createApiHandler('deployments', {});
