import { describe, expect, it } from 'vitest';
import { InvalidEventError } from './errors.ts';
import { normalizeHeaders, percentDecode, percentEncode } from './headers.ts';

describe('percent-encoding of header values', () => {
  it('encodes space, double quote, percent, controls and non-ASCII as UTF-8 bytes', () => {
    expect(percentEncode('plain/ASCII-value_1.0')).toBe('plain/ASCII-value_1.0');
    expect(percentEncode('a b')).toBe('a%20b');
    expect(percentEncode('say "hi"')).toBe('say%20%22hi%22');
    expect(percentEncode('100%')).toBe('100%25');
    expect(percentEncode('line\r\nbreak')).toBe('line%0D%0Abreak');
    expect(percentEncode('Euro €')).toBe('Euro%20%E2%82%AC');
    expect(percentEncode('😀')).toBe('%F0%9F%98%80');
    expect(percentEncode("'single' <>")).toBe("'single'%20<>");
  });

  it('round-trips any well-formed string', () => {
    for (const value of ['', 'a b', '%%', '%25', 'ü日本😀', '"\'\t\u007f\u0000', 'x%2']) {
      expect(percentDecode(percentEncode(value), 'f')).toBe(value);
    }
  });

  it('decodes lower-case hex and leaves other characters alone', () => {
    expect(percentDecode('caf%c3%a9', 'f')).toBe('café');
    expect(percentDecode('a+b', 'f')).toBe('a+b');
  });

  it('rejects stray percent signs and bytes that are not UTF-8', () => {
    for (const bad of ['100%', '%2', '%zz', 'a%g1']) {
      const err = catchError(() => percentDecode(bad, 'id'));
      expect(err.reason).toBe('bad-encoding');
      expect(err.field).toBe('id');
    }
    const err = catchError(() => percentDecode('%C3%28', 'source'));
    expect(err.reason).toBe('bad-encoding');
    expect(err.cause).toBeDefined();
  });
});

describe('normalizeHeaders', () => {
  it('lower-cases names and takes the first value from records, iterables and arrays', () => {
    expect(normalizeHeaders({ 'Ce-Id': '1', 'x-multi': ['a', 'b'], skipped: undefined })).toEqual(
      new Map([
        ['ce-id', '1'],
        ['x-multi', 'a'],
      ]),
    );
    expect(normalizeHeaders(new Headers({ 'CE-Type': 't' })).get('ce-type')).toBe('t');
    expect(normalizeHeaders([['Ce-Source', ['/s', '/t']]]).get('ce-source')).toBe('/s');
    expect(normalizeHeaders(undefined).size).toBe(0);
  });
});

function catchError(fn: () => unknown): InvalidEventError {
  try {
    fn();
  } catch (err) {
    if (err instanceof InvalidEventError) return err;
    throw err;
  }
  throw new Error('expected an InvalidEventError');
}
