// Thin edges over the Kubernetes API for the controller: custom resources (object, status,
// finalizers) and Kubernetes Events.
import {
  CoreV1Api,
  CustomObjectsApi,
  type KubeConfig,
  type KubernetesObject,
} from '@kubernetes/client-node';

export interface CustomResourceRef {
  readonly group: string;
  readonly version: string;
  readonly plural: string;
}

export class CustomResources<T extends KubernetesObject> {
  private readonly api: CustomObjectsApi;
  private readonly ref: CustomResourceRef;

  constructor(kc: KubeConfig, ref: CustomResourceRef) {
    this.api = kc.makeApiClient(CustomObjectsApi);
    this.ref = ref;
  }

  private params(obj: KubernetesObject): { namespace: string; name: string } & CustomResourceRef {
    return {
      ...this.ref,
      namespace: obj.metadata?.namespace ?? '',
      name: obj.metadata?.name ?? '',
    };
  }

  async get(namespace: string, name: string): Promise<T> {
    return (await this.api.getNamespacedCustomObject({ ...this.ref, namespace, name })) as T;
  }

  /** Replace the object (optimistic concurrency on its resourceVersion). */
  async replace(obj: T): Promise<T> {
    return (await this.api.replaceNamespacedCustomObject({ ...this.params(obj), body: obj })) as T;
  }

  /** Replace the status subresource (optimistic concurrency on its resourceVersion). */
  async replaceStatus(obj: T): Promise<T> {
    return (await this.api.replaceNamespacedCustomObjectStatus({
      ...this.params(obj),
      body: obj,
    })) as T;
  }

  async create(obj: T): Promise<T> {
    return (await this.api.createNamespacedCustomObject({
      ...this.ref,
      namespace: obj.metadata?.namespace ?? '',
      body: obj,
    })) as T;
  }

  async delete(namespace: string, name: string): Promise<void> {
    await this.api.deleteNamespacedCustomObject({ ...this.ref, namespace, name });
  }
}

export function hasFinalizer(obj: KubernetesObject, finalizer: string): boolean {
  return (obj.metadata?.finalizers ?? []).includes(finalizer);
}

export function withFinalizer<T extends KubernetesObject>(obj: T, finalizer: string): T {
  return {
    ...obj,
    metadata: { ...obj.metadata, finalizers: [...(obj.metadata?.finalizers ?? []), finalizer] },
  };
}

export function withoutFinalizer<T extends KubernetesObject>(obj: T, finalizer: string): T {
  return {
    ...obj,
    metadata: {
      ...obj.metadata,
      finalizers: (obj.metadata?.finalizers ?? []).filter((f) => f !== finalizer),
    },
  };
}

export type EventType = 'Normal' | 'Warning';

/** Records Kubernetes Events (core/v1) on objects, as `kubectl describe` shows them. */
export class EventRecorder {
  private readonly core: CoreV1Api;
  private readonly component: string;

  constructor(kc: KubeConfig, component: string) {
    this.core = kc.makeApiClient(CoreV1Api);
    this.component = component;
  }

  async record(
    obj: KubernetesObject,
    type: EventType,
    reason: string,
    message: string,
  ): Promise<void> {
    const namespace = obj.metadata?.namespace ?? 'default';
    const now = new Date();
    await this.core.createNamespacedEvent({
      namespace,
      body: {
        metadata: { generateName: `${obj.metadata?.name ?? 'object'}.`, namespace },
        involvedObject: {
          apiVersion: obj.apiVersion ?? '',
          kind: obj.kind ?? '',
          name: obj.metadata?.name ?? '',
          namespace,
          ...(obj.metadata?.uid ? { uid: obj.metadata.uid } : {}),
          ...(obj.metadata?.resourceVersion
            ? { resourceVersion: obj.metadata.resourceVersion }
            : {}),
        },
        type,
        reason,
        message: message.slice(0, 1024),
        source: { component: this.component },
        reportingComponent: this.component,
        firstTimestamp: now,
        lastTimestamp: now,
        count: 1,
      },
    });
  }
}
