/** Error options shared by the request schemas, so every API words a missing field the same way. */

/** "is required" for a missing field; zod's own message (expected string, received number) otherwise. */
export const required = { error: (issue: { input?: unknown }) => (issue.input === undefined ? 'is required' : undefined) };
