/**
 * Errors as values with a status, a title and a detail a user can act on.
 * The HTTP layer renders them as RFC 7807 `application/problem+json`.
 */

const TITLES: Record<number, string> = {
  400: 'Bad Request',
  401: 'Unauthorized',
  403: 'Forbidden',
  404: 'Not Found',
  405: 'Method Not Allowed',
  409: 'Conflict',
  413: 'Payload Too Large',
  415: 'Unsupported Media Type',
  429: 'Too Many Requests',
  500: 'Internal Server Error',
  501: 'Not Implemented',
  502: 'Bad Gateway',
  503: 'Service Unavailable',
  504: 'Gateway Timeout',
};

/** HTTP reason phrase of a status code ("Unknown Status" when we have none). */
export function reasonPhrase(status: number): string {
  return TITLES[status] ?? 'Unknown Status';
}

/** `not-found` for 404, the problem type suffix NVCF uses. */
export function kebabReason(status: number): string {
  return reasonPhrase(status).toLowerCase().replace(/[^a-z0-9]+/g, '-');
}

export interface ProblemBody {
  type: string;
  title: string;
  status: number;
  detail: string;
  instance?: string;
  requestId?: string;
}

/** An error that reaches the client as problem+json with its own status. */
export class Problem extends Error {
  readonly status: number;
  readonly title: string;
  readonly type: string;
  /** Extra response headers, e.g. `Allow` on a 405. */
  readonly headers: Record<string, string>;

  constructor(status: number, detail: string, options: { type?: string; title?: string; headers?: Record<string, string> } = {}) {
    super(detail);
    this.name = 'Problem';
    this.status = status;
    this.title = options.title ?? reasonPhrase(status);
    this.type = options.type ?? `urn:nvcf:problem-details:${kebabReason(status)}`;
    this.headers = options.headers ?? {};
  }

  get detail(): string {
    return this.message;
  }

  toBody(instance?: string, requestId?: string): ProblemBody {
    return {
      type: this.type,
      title: this.title,
      status: this.status,
      detail: this.message,
      ...(instance ? { instance } : {}),
      ...(requestId ? { requestId } : {}),
    };
  }
}

export const badRequest = (detail: string) => new Problem(400, detail);
export const unauthorized = (detail: string) => new Problem(401, detail);
export const forbidden = (detail: string) => new Problem(403, detail);
export const notFound = (detail: string) => new Problem(404, detail);
export const conflict = (detail: string) => new Problem(409, detail);
export const payloadTooLarge = (detail: string) => new Problem(413, detail);
