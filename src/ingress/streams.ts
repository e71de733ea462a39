// Where the ingress finds the JetStream stream behind POST /<namespace>/<stream>: an
// EventStream resolved from an informer's cache (the normal case), or a fixed table (no
// Kubernetes: benchmarks, local runs). The lookup is pure and synchronous: no API call per
// request.
import type { KubeConfig } from '@kubernetes/client-node';
import { API_GROUP, API_VERSION, EVENTSTREAM_PLURAL, type EventStream } from '../api/types.ts';
import { Informer } from '../k8s/informer.ts';
import type { Logger } from '../observability/logger.ts';

/** A stream the ingress may publish to. */
export interface StreamTarget {
  readonly namespace: string;
  readonly name: string;
  /** the JetStream stream name: PubAcks must come from it */
  readonly streamName: string;
  readonly subjectPrefix: string;
  /** the stream's max message size, when it sets one */
  readonly maxMsgSize?: number | undefined;
  /** namespaces whose producers may publish ("*" for all); its own is always allowed */
  readonly allowedNamespaces: readonly string[];
}

export type StreamLookup =
  | { readonly kind: 'ready'; readonly target: StreamTarget }
  | { readonly kind: 'missing' }
  | { readonly kind: 'not-ready'; readonly reason: string };

export interface StreamDirectory {
  get(namespace: string, name: string): StreamLookup;
  /** readiness of the directory itself (e.g. the informer has synced) */
  ready(): { ready: boolean; reason?: string };
}

function notReadyReason(es: EventStream): string | undefined {
  if (es.metadata?.deletionTimestamp !== undefined) return 'the EventStream is being deleted';
  const ready = es.status?.conditions?.find((c) => c.type === 'Ready');
  const streamName = es.status?.streamName;
  if (ready?.status === 'True' && streamName !== undefined && streamName !== '') return undefined;
  const why = ready?.message ?? ready?.reason ?? 'the controller has not reconciled it yet';
  return `the EventStream is not Ready: ${why}`;
}

/** The decision for one EventStream object (or its absence). */
export function lookupEventStream(es: EventStream | undefined): StreamLookup {
  if (es === undefined) return { kind: 'missing' };
  const reason = notReadyReason(es);
  if (reason !== undefined) return { kind: 'not-ready', reason };
  return {
    kind: 'ready',
    target: {
      namespace: es.metadata?.namespace ?? '',
      name: es.metadata?.name ?? '',
      streamName: es.status?.streamName ?? '',
      subjectPrefix: es.spec.subjectPrefix,
      maxMsgSize: es.spec.maxMsgSize,
      allowedNamespaces: es.spec.allowedNamespaces ?? ['*'],
    },
  };
}

/** May a producer from `namespace` (undefined: unknown, no authentication) publish? */
export function allowsPublisher(target: StreamTarget, namespace: string | undefined): boolean {
  if (target.allowedNamespaces.includes('*')) return true;
  return (
    namespace !== undefined &&
    (namespace === target.namespace || target.allowedNamespaces.includes(namespace))
  );
}

export interface StaticStream {
  readonly namespace: string;
  readonly name: string;
  readonly streamName: string;
  readonly subjectPrefix: string;
  readonly maxMsgSize?: number;
  readonly allowedNamespaces?: readonly string[];
}

/** A fixed table of streams, all ready. */
export class StaticStreamDirectory implements StreamDirectory {
  readonly #streams = new Map<string, StreamTarget>();

  constructor(streams: readonly StaticStream[]) {
    for (const s of streams) {
      this.#streams.set(`${s.namespace}/${s.name}`, {
        ...s,
        allowedNamespaces: s.allowedNamespaces ?? ['*'],
      });
    }
  }

  get(namespace: string, name: string): StreamLookup {
    const target = this.#streams.get(`${namespace}/${name}`);
    return target === undefined ? { kind: 'missing' } : { kind: 'ready', target };
  }

  ready(): { ready: boolean; reason?: string } {
    return { ready: true };
  }
}

/** EventStreams of every namespace from a list+watch cache. */
export class InformerStreamDirectory implements StreamDirectory {
  readonly #informer: Informer<EventStream>;

  constructor(kubeConfig: KubeConfig, logger: Logger) {
    this.#informer = new Informer<EventStream>({
      kubeConfig,
      path: `/apis/${API_GROUP}/${API_VERSION}/${EVENTSTREAM_PLURAL}`,
      logger,
    });
  }

  /** Resolves once the first list is cached. */
  async start(): Promise<void> {
    try {
      await this.#informer.start();
    } catch (err) {
      throw new Error('cannot list EventStreams', { cause: err });
    }
  }

  stop(): Promise<void> {
    return this.#informer.stop();
  }

  get(namespace: string, name: string): StreamLookup {
    return lookupEventStream(this.#informer.get(namespace, name));
  }

  ready(): { ready: boolean; reason?: string } {
    return this.#informer.hasSynced()
      ? { ready: true }
      : { ready: false, reason: 'EventStreams not listed yet' };
  }
}
