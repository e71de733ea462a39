// Classifies errors from the Kubernetes API: client-node's ApiException (`.code`), the
// Watch's HTTP failures (`.statusCode`), a watch ERROR event's Status (`.code`) and our own
// KubeApiError all carry an HTTP status code.

/** An error answer from the API server, with its HTTP status and Status body. */
export class KubeApiError extends Error {
  readonly code: number;
  readonly body: unknown;
  constructor(message: string, code: number, body: unknown, options?: ErrorOptions) {
    super(message, options);
    this.name = 'KubeApiError';
    this.code = code;
    this.body = body;
  }
}

function numberField(value: unknown, field: string): number | undefined {
  if (typeof value !== 'object' || value === null) return undefined;
  const v = (value as Record<string, unknown>)[field];
  // an HTTP status; DOMException and system errors also have a `code`, of other ranges/types
  return typeof v === 'number' && v >= 100 && v <= 599 ? v : undefined;
}

/** The HTTP status code an error carries, looking through `cause` chains. */
export function statusCodeOf(err: unknown): number | undefined {
  let current: unknown = err;
  for (let depth = 0; depth < 8 && current !== undefined && current !== null; depth++) {
    const code = numberField(current, 'code') ?? numberField(current, 'statusCode');
    if (code !== undefined) return code;
    current = (current as { cause?: unknown }).cause;
  }
  return undefined;
}

export const isNotFound = (err: unknown): boolean => statusCodeOf(err) === 404;
export const isConflict = (err: unknown): boolean => statusCodeOf(err) === 409;
export const isAlreadyExists = (err: unknown): boolean => statusCodeOf(err) === 409;
/** 410 Gone: the resourceVersion (or continue token) is older than etcd's compaction. */
export const isGone = (err: unknown): boolean => statusCodeOf(err) === 410;

/**
 * Transient: worth retrying as is (network failures, timeouts, 429, 5xx, conflicts).
 * Permanent: a request the server will refuse again (400, 401, 403, 404, 422...).
 */
export function isTransient(err: unknown): boolean {
  const code = statusCodeOf(err);
  if (code === undefined) return true; // no HTTP answer: network or timeout
  return code === 409 || code === 410 || code === 429 || code >= 500;
}
