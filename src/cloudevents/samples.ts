// Sample events covering the encoding edge cases (percent-encoding, JSON, text and binary
// data, trace context, empty extension values), for the binding tests of every component.
import { makeEvent, type CloudEvent } from './event.ts';

const enc = new TextEncoder();

export const SAMPLE_EVENTS: readonly CloudEvent[] = [
  makeEvent({ id: '1', source: '/shop', type: 'com.example.order.created' }),
  makeEvent({
    id: 'ü "quoted" 100%',
    source: 'https://example.com/a b?x=1',
    type: 'com.example.order.created',
    subject: 'Bestellung Nr. 42 — café',
    time: '2024-05-01T12:00:00Z',
    datacontenttype: 'application/json',
    dataschema: 'https://example.com/schema.json',
    data: enc.encode('{"total":150,"items":[{"sku":"a"}]}'),
    extensions: {
      partitionkey: 'customer-7',
      traceparent: '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01',
      tracestate: 'vendor=a, other=b',
      emptyext: '',
      newline: 'a\r\nb',
    },
  }),
  makeEvent({
    id: '3',
    source: '/s',
    type: 't',
    datacontenttype: 'text/plain; charset=utf-8',
    data: enc.encode('hello é'),
  }),
  makeEvent({
    id: '4',
    source: '/s',
    type: 't',
    datacontenttype: 'application/octet-stream',
    data: new Uint8Array([0, 255, 128, 10]),
  }),
  makeEvent({ id: '5', source: '/s', type: 't', data: new Uint8Array([0xc3, 0x28]) }),
];
