// The event model: a plain, immutable-by-convention object rather than the `cloudevents` SDK
// class. Data stays raw bytes end to end (the SDK guesses and converts data by content type),
// extensions are strings (their canonical string form, which is what every binary-mode
// binding carries), and validation returns errors naming the field instead of throwing a
// generic one.
import { InvalidEventError } from './errors.ts';

/** A CloudEvent 1.0. `data` is the raw payload; absent and empty data are the same. */
export interface CloudEvent {
  readonly specversion: '1.0';
  readonly id: string;
  readonly source: string;
  readonly type: string;
  readonly subject?: string | undefined;
  /** RFC 3339 timestamp, kept as written. */
  readonly time?: string | undefined;
  readonly datacontenttype?: string | undefined;
  readonly dataschema?: string | undefined;
  readonly data?: Uint8Array | undefined;
  /** Extension attributes by name (lower-case a-z0-9), canonical string values. */
  readonly extensions: Readonly<Record<string, string>>;
}

export type EventResult = { ok: true; event: CloudEvent } | { ok: false; error: InvalidEventError };

export const REQUIRED_ATTRIBUTES = ['id', 'source', 'type'] as const;
export const OPTIONAL_ATTRIBUTES = ['subject', 'time', 'datacontenttype', 'dataschema'] as const;
export type OptionalAttribute = (typeof OPTIONAL_ATTRIBUTES)[number];
/** Context attributes defined by the spec (everything else is an extension). */
export const CORE_ATTRIBUTES: ReadonlySet<string> = new Set([
  'specversion',
  ...REQUIRED_ATTRIBUTES,
  ...OPTIONAL_ATTRIBUTES,
]);
/** Names that may not be used for extensions: core attributes and JSON-format members. */
const RESERVED_NAMES: ReadonlySet<string> = new Set([...CORE_ATTRIBUTES, 'data', 'data_base64']);

const ATTRIBUTE_NAME = /^[a-z0-9]+$/;
/** The spec's recommended (SHOULD) maximum length of an attribute name. */
export const RECOMMENDED_MAX_NAME_LENGTH = 20;
// RFC 3339 date-time (upper or lower case T/Z, optional fraction, Z or offset)
const RFC3339 = /^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$/;
// RFC 9110 type/subtype with optional parameters, in printable ASCII (space and tab allowed in
// the parameters): the value becomes a Content-Type header of HTTP and NATS messages, which
// cannot carry line breaks or other control characters
const MEDIA_TYPE =
  /^[!#$%&'*+.^_`|~0-9A-Za-z-]+\/[!#$%&'*+.^_`|~0-9A-Za-z-]+[ \t]*(;[\t\x20-\x7e]*)?$/;

/**
 * A name the spec allows for an attribute: lower-case ASCII letters and digits (MUST).
 * With `strict`, also at most 20 characters (SHOULD): use it for names eventwire itself
 * creates; received events with longer names are accepted.
 */
export function isValidAttributeName(name: string, strict = false): boolean {
  return ATTRIBUTE_NAME.test(name) && (!strict || name.length <= RECOMMENDED_MAX_NAME_LENGTH);
}

/** The value of a context attribute or extension by name; undefined when absent. */
export function attributeValue(event: CloudEvent, name: string): string | undefined {
  switch (name) {
    case 'specversion':
      return event.specversion;
    case 'id':
    case 'source':
    case 'type':
    case 'subject':
    case 'time':
    case 'datacontenttype':
    case 'dataschema':
      return event[name];
    default:
      return Object.hasOwn(event.extensions, name) ? event.extensions[name] : undefined;
  }
}

/** All attributes present, core first, as name/value pairs (specversion included). */
export function attributesOf(event: CloudEvent): [string, string][] {
  const out: [string, string][] = [];
  for (const name of CORE_ATTRIBUTES) {
    const value = attributeValue(event, name);
    if (value !== undefined) out.push([name, value]);
  }
  for (const [name, value] of Object.entries(event.extensions)) out.push([name, value]);
  return out;
}

function invalid(field: string, message: string, fix: string): InvalidEventError {
  return new InvalidEventError('invalid-attribute', message, { field, fix });
}

function checkRequired(event: CloudEvent): InvalidEventError | undefined {
  // decoders build events from untrusted input: check what the type promises
  const specversion = event.specversion as string | undefined;
  if (specversion === undefined) {
    return new InvalidEventError('missing-attribute', 'required attribute specversion is missing', {
      field: 'specversion',
      fix: 'set specversion to "1.0"',
    });
  }
  if (specversion !== '1.0') {
    return new InvalidEventError(
      'bad-specversion',
      `specversion ${JSON.stringify(specversion)} is not supported`,
      { field: 'specversion', fix: 'send CloudEvents 1.0 (specversion "1.0")' },
    );
  }
  for (const name of REQUIRED_ATTRIBUTES) {
    const value = event[name] as string | undefined;
    if (value === undefined) {
      return new InvalidEventError('missing-attribute', `required attribute ${name} is missing`, {
        field: name,
        fix: `set the ${name} attribute (ce-${name} header, or "${name}" in structured mode)`,
      });
    }
    if (typeof value !== 'string' || value === '') {
      return invalid(
        name,
        `attribute ${name} must be a non-empty string`,
        `set a non-empty ${name}`,
      );
    }
  }
  return undefined;
}

function checkOptional(event: CloudEvent): InvalidEventError | undefined {
  for (const name of OPTIONAL_ATTRIBUTES) {
    const value = event[name];
    if (value === undefined) continue;
    if (typeof value !== 'string' || value === '') {
      return invalid(
        name,
        `attribute ${name} must be a non-empty string when present`,
        `set a non-empty ${name} or leave it out`,
      );
    }
  }
  if (event.time !== undefined && !RFC3339.test(event.time)) {
    return invalid(
      'time',
      `attribute time ${JSON.stringify(event.time)} is not an RFC 3339 timestamp`,
      'use a timestamp like 2024-05-01T12:00:00Z',
    );
  }
  if (event.datacontenttype !== undefined && !MEDIA_TYPE.test(event.datacontenttype)) {
    return invalid(
      'datacontenttype',
      `attribute datacontenttype ${JSON.stringify(event.datacontenttype)} is not a media type`,
      'use a media type like application/json, in printable ASCII without line breaks',
    );
  }
  return undefined;
}

function checkExtensions(event: CloudEvent): InvalidEventError | undefined {
  for (const [name, value] of Object.entries(event.extensions)) {
    if (!isValidAttributeName(name) || RESERVED_NAMES.has(name)) {
      return new InvalidEventError(
        'invalid-attribute-name',
        `extension attribute name ${JSON.stringify(name)} is not allowed`,
        {
          field: name,
          fix: 'use lower-case letters a-z and digits 0-9 only (at most 20 recommended), not a core attribute name',
        },
      );
    }
    if (typeof value !== 'string') {
      return invalid(
        name,
        `extension ${name} must have a string value`,
        'send the canonical string form of the value',
      );
    }
  }
  return undefined;
}

function checkUnicode(event: CloudEvent): InvalidEventError | undefined {
  for (const [name, value] of attributesOf(event)) {
    if (!value.isWellFormed()) {
      return invalid(name, `attribute ${name} is not well-formed Unicode`, 'send valid UTF-8 text');
    }
  }
  return undefined;
}

/** Validates an event; returns the first problem found, naming its field. */
export function validateEvent(event: CloudEvent): InvalidEventError | undefined {
  return (
    checkRequired(event) ?? checkOptional(event) ?? checkExtensions(event) ?? checkUnicode(event)
  );
}

/** Validates and wraps, for decoders. */
export function checked(event: CloudEvent): EventResult {
  const error = validateEvent(event);
  return error === undefined ? { ok: true, event } : { ok: false, error };
}

/** Media type without parameters, lower-cased (`Application/JSON; charset=x` → `application/json`). */
export function mediaTypeOf(contentType: string | undefined): string | undefined {
  if (contentType === undefined) return undefined;
  const base = contentType.split(';', 1)[0]?.trim().toLowerCase();
  return base === undefined || base === '' ? undefined : base;
}

/** JSON media types: application/json, text/json and any `+json` suffix. */
export function isJsonMediaType(contentType: string | undefined): boolean {
  const base = mediaTypeOf(contentType);
  if (base === undefined) return false;
  return base === 'application/json' || base === 'text/json' || base.endsWith('+json');
}

/** Textual media types whose data is carried as a JSON string in structured mode. */
export function isTextMediaType(contentType: string | undefined): boolean {
  const base = mediaTypeOf(contentType);
  if (base === undefined) return false;
  return (
    base.startsWith('text/') ||
    base === 'application/xml' ||
    base.endsWith('+xml') ||
    base === 'application/x-www-form-urlencoded'
  );
}

/** Builds an event from parts, dropping undefined optional attributes (for tests and callers). */
export function makeEvent(
  parts: Omit<CloudEvent, 'specversion' | 'extensions'> & {
    extensions?: Record<string, string>;
  },
): CloudEvent {
  const event: Record<string, unknown> = { specversion: '1.0', extensions: parts.extensions ?? {} };
  for (const [key, value] of Object.entries(parts)) {
    if (value !== undefined && key !== 'extensions') event[key] = value;
  }
  return event as unknown as CloudEvent;
}

/** Structural equality of two events (byte-wise data; absent data equals empty data). */
export function eventsEqual(a: CloudEvent, b: CloudEvent): boolean {
  const attrsA = attributesOf(a).sort(([x], [y]) => x.localeCompare(y));
  const attrsB = attributesOf(b).sort(([x], [y]) => x.localeCompare(y));
  if (JSON.stringify(attrsA) !== JSON.stringify(attrsB)) return false;
  const dataA = a.data ?? new Uint8Array();
  const dataB = b.data ?? new Uint8Array();
  return dataA.length === dataB.length && dataA.every((byte, i) => byte === dataB[i]);
}
