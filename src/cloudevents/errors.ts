// Classified errors of the CloudEvents core. Every decode or validation failure is permanent:
// the same bytes fail the same way again, so the dispatcher dead-letters the message (with
// `reason` and `message`) and the ingress answers 400/413/415 (`httpStatus`) naming `field`.

/** Machine-readable reason of an `InvalidEventError`. */
export type InvalidEventReason =
  | 'missing-attribute'
  | 'invalid-attribute'
  | 'invalid-attribute-name'
  | 'bad-specversion'
  | 'bad-encoding'
  | 'bad-json'
  | 'bad-base64'
  | 'not-a-cloudevent'
  | 'unsupported-media-type'
  | 'too-large';

export interface InvalidEventDetails {
  /** The attribute or member at fault (`id`, `data_base64`, `content-type`...). */
  readonly field: string;
  /** What a person can do about it. */
  readonly fix: string;
  /** Position in a batch, when the request was a batch. */
  readonly index?: number | undefined;
  readonly cause?: unknown;
}

const statusByReason: Record<InvalidEventReason, number> = {
  'missing-attribute': 400,
  'invalid-attribute': 400,
  'invalid-attribute-name': 400,
  'bad-specversion': 400,
  'bad-encoding': 400,
  'bad-json': 400,
  'bad-base64': 400,
  'not-a-cloudevent': 400,
  'unsupported-media-type': 415,
  'too-large': 413,
};

/** A message or request that is not a valid CloudEvent. Always permanent. */
export class InvalidEventError extends Error {
  readonly permanent = true;
  readonly reason: InvalidEventReason;
  readonly field: string;
  readonly fix: string;
  readonly index: number | undefined;
  /** The HTTP status the ingress answers with (400, 413 or 415). */
  readonly httpStatus: number;

  constructor(reason: InvalidEventReason, message: string, details: InvalidEventDetails) {
    super(message, details.cause === undefined ? undefined : { cause: details.cause });
    this.name = 'InvalidEventError';
    this.reason = reason;
    this.field = details.field;
    this.fix = details.fix;
    this.index = details.index;
    this.httpStatus = statusByReason[reason];
  }

  /** The same error, located at position `index` of a batch. */
  atIndex(index: number): InvalidEventError {
    return new InvalidEventError(this.reason, `event [${index}]: ${this.message}`, {
      field: this.field,
      fix: this.fix,
      index,
      cause: this.cause,
    });
  }

  /** A JSON problem body (RFC 9457 flavoured) for HTTP answers and dead-letter reasons. */
  toProblem(): { field: string; message: string; fix: string; reason: string; index?: number } {
    const problem = {
      field: this.field,
      message: this.message,
      fix: this.fix,
      reason: this.reason,
    };
    return this.index === undefined ? problem : { ...problem, index: this.index };
  }
}
