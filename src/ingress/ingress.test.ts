import { describe, expect, it } from 'vitest';
import type { EventStream } from '../api/types.ts';
import { makeEvent, natsMessageSize } from '../cloudevents/index.ts';
import { EXT } from '../dispatcher/dead-letter.ts';
import { serviceAccountNamespace } from './auth.ts';
import { parseIngressConfig, parseStaticStreams } from './config.ts';
import { encodeForNats } from './publisher.ts';
import { allowsPublisher, lookupEventStream } from './streams.ts';
import {
  checkData,
  checkReserved,
  checkSubject,
  MAX_SUBJECT_BYTES,
  RESERVED_EXTENSIONS,
} from './validate.ts';

const enc = new TextEncoder();

function stream(
  status: EventStream['status'],
  spec: Partial<EventStream['spec']> = {},
): EventStream {
  return {
    metadata: { namespace: 'shop', name: 'orders' },
    spec: { subjectPrefix: 'shop', ...spec },
    ...(status ? { status } : {}),
  };
}

const ready = {
  streamName: 'SHOP',
  conditions: [
    {
      type: 'Ready',
      status: 'True' as const,
      reason: 'Ok',
      message: '',
      lastTransitionTime: '2024-01-01T00:00:00Z',
    },
  ],
};

describe('lookupEventStream', () => {
  it('is missing without an object, not ready without Ready=True or streamName, else ready', () => {
    expect(lookupEventStream(undefined).kind).toBe('missing');
    expect(lookupEventStream(stream(undefined)).kind).toBe('not-ready');
    expect(lookupEventStream(stream({ conditions: ready.conditions })).kind).toBe('not-ready');
    const found = lookupEventStream(stream(ready, { maxMsgSize: 10 }));
    expect(found).toMatchObject({
      kind: 'ready',
      target: {
        streamName: 'SHOP',
        subjectPrefix: 'shop',
        maxMsgSize: 10,
        allowedNamespaces: ['*'],
      },
    });
  });
});

describe('allowsPublisher', () => {
  const target = {
    namespace: 'shop',
    name: 'o',
    streamName: 'S',
    subjectPrefix: 's',
    allowedNamespaces: ['billing'],
  };
  it('allows the own namespace and listed ones; an unknown namespace only with "*"', () => {
    expect(allowsPublisher(target, 'shop')).toBe(true);
    expect(allowsPublisher(target, 'billing')).toBe(true);
    expect(allowsPublisher(target, 'other')).toBe(false);
    expect(allowsPublisher(target, undefined)).toBe(false);
    expect(allowsPublisher({ ...target, allowedNamespaces: ['*'] }, undefined)).toBe(true);
  });
});

describe('checks', () => {
  it('checks JSON data and UTF-8 text data against datacontenttype', () => {
    const base = { id: '1', source: '/s', type: 't' };
    expect(
      checkData(
        makeEvent({ ...base, datacontenttype: 'application/json', data: enc.encode('{"a":1}') }),
      ),
    ).toBeUndefined();
    expect(
      checkData(
        makeEvent({
          ...base,
          datacontenttype: 'application/cloudevents+json',
          data: enc.encode('{'),
        }),
      )?.field,
    ).toBe('data');
    expect(
      checkData(
        makeEvent({
          ...base,
          datacontenttype: 'text/plain; charset=utf-8',
          data: new Uint8Array([0xff]),
        }),
      )?.field,
    ).toBe('data');
    expect(
      checkData(
        makeEvent({
          ...base,
          datacontenttype: 'application/octet-stream',
          data: new Uint8Array([0xff]),
        }),
      ),
    ).toBeUndefined();
  });
  it('refuses types whose subject is longer than NATS accepts', () => {
    expect(
      checkSubject('p', makeEvent({ id: '1', source: '/s', type: 'a'.repeat(MAX_SUBJECT_BYTES) }))
        ?.field,
    ).toBe('type');
    expect(checkSubject('p', makeEvent({ id: '1', source: '/s', type: 'a.b c' }))).toBeUndefined();
  });
  it('computes the same message size as the CloudEvents core', () => {
    const event = makeEvent({
      id: 'ü 1',
      source: '/s',
      type: 'a b',
      datacontenttype: 'text/plain',
      data: enc.encode('héllo'),
      extensions: { x: 'y' },
    });
    expect(encodeForNats({ subjectPrefix: 'p' }, event).size).toBe(natsMessageSize(event));
  });
  it('counts the Nats-Expected-Stream header a publish to a named stream sends', () => {
    const event = makeEvent({ id: '1', source: '/s', type: 't', data: enc.encode('x') });
    const plain = encodeForNats({ subjectPrefix: 'p' }, event).size;
    const named = encodeForNats({ subjectPrefix: 'p', streamName: 'ORDERS' }, event).size;
    expect(named - plain).toBe('\r\nNats-Expected-Stream: ORDERS'.length);
  });
  it('reserves every extension the dispatcher writes, and only those', () => {
    expect([...RESERVED_EXTENSIONS].sort()).toEqual(Object.values(EXT).sort());
    const forged = makeEvent({ id: '1', source: '/s', type: 't', extensions: { ewhops: '-20' } });
    expect(checkReserved(forged)).toMatchObject({ field: 'ewhops', httpStatus: 400 });
    const own = makeEvent({ id: '1', source: '/s', type: 't', extensions: { ewallet: 'x' } });
    expect(checkReserved(own)).toBeUndefined();
  });
});

describe('config', () => {
  it('has safe defaults: no authentication, 1 MiB bodies', () => {
    const cfg = parseIngressConfig({});
    expect(cfg.auth).toBe(false);
    expect(cfg.maxBodyBytes).toBe(1_048_576);
    expect(cfg.port).toBe(8080);
    expect(cfg.opsPort).toBe(8081);
    expect(cfg.authAudiences).toEqual(['eventwire']);
  });
  it('parses the accepted token audiences and refuses an empty list', () => {
    const cfg = parseIngressConfig({
      EVENTWIRE_INGRESS_AUTH_AUDIENCES: 'eventwire, https://kubernetes.default.svc ,',
    });
    expect(cfg.authAudiences).toEqual(['eventwire', 'https://kubernetes.default.svc']);
    expect(() => parseIngressConfig({ EVENTWIRE_INGRESS_AUTH_AUDIENCES: ' , ' })).toThrow(
      /EVENTWIRE_INGRESS_AUTH_AUDIENCES/,
    );
  });
  it('parses static streams and names the variable on errors', () => {
    expect(parseStaticStreams('a/b=S:p.q, c/d=T:r', 'V')).toEqual([
      { namespace: 'a', name: 'b', streamName: 'S', subjectPrefix: 'p.q' },
      { namespace: 'c', name: 'd', streamName: 'T', subjectPrefix: 'r' },
    ]);
    expect(() => parseStaticStreams('nope', 'V')).toThrow(/V: "nope"/);
    expect(() =>
      parseIngressConfig({
        EVENTWIRE_INGRESS_AUTH: 'true',
        EVENTWIRE_INGRESS_STATIC_STREAMS: 'a/b=S:p',
      }),
    ).toThrow(/EVENTWIRE_INGRESS_AUTH/);
    expect(() => parseIngressConfig({ EVENTWIRE_INGRESS_MAX_BODY_BYTES: '0' })).toThrow(
      /EVENTWIRE_INGRESS_MAX_BODY_BYTES/,
    );
  });
});

describe('serviceAccountNamespace', () => {
  it('reads the namespace of ServiceAccount users only', () => {
    expect(serviceAccountNamespace('system:serviceaccount:shop:producer')).toBe('shop');
    expect(serviceAccountNamespace('alice')).toBeUndefined();
    expect(serviceAccountNamespace('system:serviceaccount:shop')).toBeUndefined();
  });
});
