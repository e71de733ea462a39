// Prometheus metrics of the ingress: requests by status code, request latency, events.
import { Counter, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

export interface IngressMetrics {
  readonly registry: Registry;
  readonly requests: Counter<'code'>;
  readonly duration: Histogram<'code'>;
  readonly events: Counter<'outcome'>;
}

export function createIngressMetrics(opts: { defaultMetrics?: boolean } = {}): IngressMetrics {
  const registry = new Registry();
  if (opts.defaultMetrics !== false) collectDefaultMetrics({ register: registry });
  return {
    registry,
    requests: new Counter({
      name: 'eventwire_ingress_requests_total',
      help: 'Ingress HTTP requests by response status code',
      labelNames: ['code'],
      registers: [registry],
    }),
    duration: new Histogram({
      name: 'eventwire_ingress_request_duration_seconds',
      help: 'Ingress request latency, from the first byte to the answer, by status code',
      labelNames: ['code'],
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers: [registry],
    }),
    events: new Counter({
      name: 'eventwire_ingress_events_total',
      help: 'Events acknowledged by JetStream: stored, or duplicate (already stored)',
      labelNames: ['outcome'],
      registers: [registry],
    }),
  };
}
