// Sink resolution: where a subscription's events are POSTed. Pure: callers fetch the
// referenced Service or Deployment (and the managed Service, if any) and pass them in.
//
// - kind Service: http://<svc>.<ns>.svc.<domain>:<port><path>, the port given by number or
//   by name (or the Service's only port).
// - kind Deployment: eventwire manages a Service named after the Deployment that selects its
//   pods (spec.selector.matchLabels) on the requested port (a number, or a container port
//   name; or the only container port). Every subscription using it is an owner, so it goes
//   away with the last one. An existing Service of that name that eventwire does not manage is
//   used as it is when it already selects the Deployment's pods on that port.
// - no ref: the absolute http(s) URI, unless external sink URIs are forbidden.
import type { V1Deployment, V1OwnerReference, V1Service } from '@kubernetes/client-node';

export const MANAGED_BY_LABEL = 'app.kubernetes.io/managed-by';
export const MANAGED_BY_VALUE = 'eventwire';

export interface SinkRefInput {
  readonly apiVersion?: string;
  readonly kind: 'Service' | 'Deployment';
  readonly name: string;
  readonly port?: number | string;
}

export interface SinkInput {
  readonly ref?: SinkRefInput;
  readonly uri?: string;
}

export interface SubscriptionIdentity {
  readonly namespace: string;
  readonly name: string;
  readonly uid: string;
}

export interface SinkLookup {
  /** the Service named by a Service ref, or the Service named after a referenced Deployment */
  readonly service?: V1Service;
  readonly deployment?: V1Deployment;
}

export interface SinkOptions {
  readonly clusterDomain: string;
  readonly allowExternalUris: boolean;
}

export type SinkResolution =
  | { readonly ok: true; readonly uri: string; readonly managedService?: V1Service }
  | { readonly ok: false; readonly reason: string; readonly message: string };

const fail = (reason: string, message: string): SinkResolution => ({ ok: false, reason, message });

function serviceUri(
  svc: string,
  sub: SubscriptionIdentity,
  port: number,
  path: string,
  o: SinkOptions,
): string {
  return `http://${svc}.${sub.namespace}.svc.${o.clusterDomain}:${port}${path}`;
}

function resolveServicePort(svc: V1Service, want: number | string | undefined): number | string {
  const ports = svc.spec?.ports ?? [];
  if (want === undefined) {
    const only = ports[0];
    if (ports.length === 1 && only) return only.port;
    return `the Service exposes ${ports.length} ports (${ports.map((p) => p.name ?? p.port).join(', ')}); set sink.ref.port to one of them`;
  }
  const match = ports.find((p) => (typeof want === 'number' ? p.port === want : p.name === want));
  if (match) return match.port;
  const have = ports.map((p) => (p.name ? `${p.name}/${p.port}` : String(p.port))).join(', ');
  return `the Service has no port ${JSON.stringify(want)} (it has: ${have || 'none'}); fix sink.ref.port`;
}

function resolveToService(
  sub: SubscriptionIdentity,
  ref: SinkRefInput,
  path: string,
  lookup: SinkLookup,
  o: SinkOptions,
): SinkResolution {
  if (!lookup.service) {
    return fail(
      'SinkNotFound',
      `Service ${sub.namespace}/${ref.name} does not exist; create it or fix sink.ref.name`,
    );
  }
  const port = resolveServicePort(lookup.service, ref.port);
  if (typeof port === 'string') return fail('SinkPortNotFound', port);
  return { ok: true, uri: serviceUri(ref.name, sub, port, path, o) };
}

function containerPorts(d: V1Deployment): { name?: string; port: number }[] {
  return (d.spec?.template.spec?.containers ?? []).flatMap((c) =>
    (c.ports ?? []).map((p) => ({ ...(p.name ? { name: p.name } : {}), port: p.containerPort })),
  );
}

function resolveDeploymentPort(
  d: V1Deployment,
  want: number | string | undefined,
): { port: number; target: number | string } | string {
  const ports = containerPorts(d);
  if (typeof want === 'number') return { port: want, target: want };
  if (typeof want === 'string') {
    const named = ports.find((p) => p.name === want);
    return named
      ? { port: named.port, target: want }
      : `no container of the Deployment declares a port named "${want}"; fix sink.ref.port or the Deployment's ports`;
  }
  const only = ports[0];
  if (ports.length === 1 && only) return { port: only.port, target: only.port };
  return `the Deployment's containers declare ${ports.length} ports; set sink.ref.port`;
}

function ownerRef(sub: SubscriptionIdentity): V1OwnerReference {
  return {
    apiVersion: 'eventwire.io/v1alpha1',
    kind: 'EventSubscription',
    name: sub.name,
    uid: sub.uid,
    controller: false,
    blockOwnerDeletion: false,
  };
}

function sameLabels(a: Record<string, string> | undefined, b: Record<string, string>): boolean {
  const ka = Object.keys(a ?? {});
  return ka.length === Object.keys(b).length && ka.every((k) => a?.[k] === b[k]);
}

function managedMetadata(
  sub: SubscriptionIdentity,
  name: string,
  existing: V1Service | undefined,
): NonNullable<V1Service['metadata']> {
  const meta = existing?.metadata;
  const owners = (meta?.ownerReferences ?? []).filter((o) => o.uid !== sub.uid);
  return {
    name,
    namespace: sub.namespace,
    labels: { ...(meta?.labels ?? {}), [MANAGED_BY_LABEL]: MANAGED_BY_VALUE },
    ownerReferences: [...owners, ownerRef(sub)].sort((a, b) => a.uid.localeCompare(b.uid)),
    ...(meta?.resourceVersion ? { resourceVersion: meta.resourceVersion } : {}),
  };
}

/** The managed Service for a Deployment, merged with what exists (other owners, ports). */
function managedService(
  sub: SubscriptionIdentity,
  deploymentName: string,
  selector: Record<string, string>,
  port: { port: number; target: number | string },
  existing: V1Service | undefined,
): V1Service {
  const ports = (existing?.spec?.ports ?? []).filter((p) => p.port !== port.port);
  const mine = {
    name: `http-${port.port}`,
    port: port.port,
    targetPort: port.target as never,
    protocol: 'TCP',
  };
  return {
    apiVersion: 'v1',
    kind: 'Service',
    metadata: managedMetadata(sub, deploymentName, existing),
    spec: {
      ...(existing?.spec ?? {}),
      selector,
      ports: [...ports, mine].sort((a, b) => a.port - b.port),
    },
  };
}

/** The Deployment's pod selector as Service selector labels, or undefined if it has none. */
function serviceSelector(d: V1Deployment): Record<string, string> | undefined {
  const sel = d.spec?.selector;
  if (!sel?.matchLabels || Object.keys(sel.matchLabels).length === 0) return undefined;
  return (sel.matchExpressions ?? []).length > 0 ? undefined : sel.matchLabels;
}

/** Does a Service eventwire does not manage already serve the Deployment on the port? */
function foreignServiceFits(
  svc: V1Service,
  selector: Record<string, string>,
  port: number,
): boolean {
  return (
    sameLabels(svc.spec?.selector, selector) && (svc.spec?.ports ?? []).some((p) => p.port === port)
  );
}

function resolveToDeployment(
  sub: SubscriptionIdentity,
  ref: SinkRefInput,
  path: string,
  lookup: SinkLookup,
  o: SinkOptions,
): SinkResolution {
  const d = lookup.deployment;
  if (!d) {
    return fail(
      'SinkNotFound',
      `Deployment ${sub.namespace}/${ref.name} does not exist; create it or fix sink.ref.name`,
    );
  }
  const selector = serviceSelector(d);
  if (!selector) {
    return fail(
      'UnsupportedSelector',
      `Deployment ${ref.name} selects its pods with matchExpressions, which a Service cannot express; create a Service for it and point sink.ref at the Service`,
    );
  }
  const port = resolveDeploymentPort(d, ref.port);
  if (typeof port === 'string') return fail('SinkPortNotFound', port);
  const uri = serviceUri(ref.name, sub, port.port, path, o);
  const existing = lookup.service;
  if (existing && existing.metadata?.labels?.[MANAGED_BY_LABEL] !== MANAGED_BY_VALUE) {
    if (foreignServiceFits(existing, selector, port.port)) return { ok: true, uri };
    return fail(
      'ServiceNameConflict',
      `a Service named ${ref.name} exists that eventwire does not manage and it does not select Deployment ${ref.name}'s pods on port ${port.port}; point sink.ref at that Service (kind: Service) or rename it`,
    );
  }
  return { ok: true, uri, managedService: managedService(sub, ref.name, selector, port, existing) };
}

export function resolveSink(
  sub: SubscriptionIdentity,
  sink: SinkInput,
  lookup: SinkLookup,
  o: SinkOptions,
): SinkResolution {
  const ref = sink.ref;
  if (!ref) {
    const uri = sink.uri ?? '';
    if (!/^https?:\/\/[^\s/]+/.test(uri)) {
      return fail('InvalidSink', 'set sink.ref, or sink.uri to an absolute http(s) URI');
    }
    if (!o.allowExternalUris) {
      return fail(
        'ExternalSinkForbidden',
        'this installation forbids sink URIs; point sink.ref at a Service or Deployment in this namespace',
      );
    }
    return { ok: true, uri };
  }
  const path = sink.uri ?? '';
  if (path !== '' && !path.startsWith('/')) {
    return fail(
      'InvalidSink',
      `with sink.ref set, sink.uri is a path starting with "/" (got "${path}")`,
    );
  }
  return ref.kind === 'Service'
    ? resolveToService(sub, ref, path, lookup, o)
    : resolveToDeployment(sub, ref, path, lookup, o);
}
