// JSON problem bodies (RFC 9457, `application/problem+json`) for every error answer of the
// ingress: type, title, status, detail, and the bad `field` with a `fix` a person can act on.
import type { InvalidEventError } from '../cloudevents/index.ts';

export const PROBLEM_CONTENT_TYPE = 'application/problem+json';
const TYPE_BASE = 'https://eventwire.io/problems/';

export interface ProblemBody {
  readonly type: string;
  readonly title: string;
  readonly status: number;
  readonly detail: string;
  readonly field?: string;
  readonly fix?: string;
  readonly reason?: string;
  /** position of the bad event in a batch */
  readonly index?: number;
}

const TITLES: Readonly<Record<number, string>> = {
  400: 'Bad Request',
  401: 'Unauthorized',
  403: 'Forbidden',
  404: 'Not Found',
  405: 'Method Not Allowed',
  413: 'Content Too Large',
  415: 'Unsupported Media Type',
  500: 'Internal Server Error',
  503: 'Service Unavailable',
};

/** An answer other than 202, thrown or returned by the request pipeline. */
export class HttpProblem extends Error {
  readonly status: number;
  readonly reason: string;
  readonly field: string | undefined;
  readonly fix: string | undefined;
  readonly index: number | undefined;
  /** seconds, for 503 */
  readonly retryAfter: number | undefined;

  constructor(
    status: number,
    reason: string,
    detail: string,
    opts: {
      field?: string;
      fix?: string;
      index?: number | undefined;
      retryAfter?: number;
      cause?: unknown;
    } = {},
  ) {
    super(detail, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.name = 'HttpProblem';
    this.status = status;
    this.reason = reason;
    this.field = opts.field;
    this.fix = opts.fix;
    this.index = opts.index;
    this.retryAfter = opts.retryAfter;
  }

  static fromInvalidEvent(err: InvalidEventError): HttpProblem {
    return new HttpProblem(err.httpStatus, err.reason, err.message, {
      field: err.field,
      fix: err.fix,
      index: err.index,
      cause: err,
    });
  }

  body(): ProblemBody {
    return {
      type: `${TYPE_BASE}${this.reason}`,
      title: TITLES[this.status] ?? 'Error',
      status: this.status,
      detail: this.message,
      reason: this.reason,
      ...(this.field === undefined ? {} : { field: this.field }),
      ...(this.fix === undefined ? {} : { fix: this.fix }),
      ...(this.index === undefined ? {} : { index: this.index }),
    };
  }
}
