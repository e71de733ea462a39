// Shared pieces of the reconcilers: the finalizer, outcomes, and status writes that only
// happen on change and emit a Kubernetes Event for each condition transition.
import { isDeepStrictEqual } from 'node:util';
import type { KubernetesObject } from '@kubernetes/client-node';
import type { CustomResources, EventRecorder } from '../k8s/resources.ts';
import type { Logger } from '../observability/logger.ts';
import { transitions, type Condition } from './conditions.ts';

export const FINALIZER = 'eventwire.io/finalizer';

/** Not-ready resources are looked at again this soon, besides the periodic resync. */
export const NOT_READY_REQUEUE_MS = 15_000;

export interface ReconcileOutcome {
  readonly requeueAfterMs?: number;
}

interface WithStatus<S> extends KubernetesObject {
  status?: S;
}

export class StatusReporter<T extends WithStatus<{ conditions?: Condition[] }>> {
  private readonly resources: CustomResources<T>;
  private readonly events: EventRecorder;
  private readonly log: Logger;

  constructor(resources: CustomResources<T>, events: EventRecorder, log: Logger) {
    this.resources = resources;
    this.events = events;
    this.log = log;
  }

  /** Write `status` when it differs from the object's; record Events for transitions. */
  async update(obj: T, status: NonNullable<T['status']>): Promise<T> {
    if (isDeepStrictEqual(obj.status, status)) return obj;
    const written = await this.resources.replaceStatus({ ...obj, status });
    for (const c of transitions(obj.status?.conditions, status.conditions ?? [])) {
      if (c.type !== 'Ready') continue;
      this.record(written, c.status === 'True' ? 'Normal' : 'Warning', c.reason, c.message);
    }
    return written;
  }

  /** A Warning Event about something status records as a count or a reason. */
  warn(obj: T, reason: string, message: string): void {
    this.record(obj, 'Warning', reason, message);
  }

  private record(obj: T, type: 'Normal' | 'Warning', reason: string, message: string): void {
    this.events.record(obj, type, reason, message).catch((err: unknown) => {
      // an Event is best effort: status carries the same information
      this.log.warn({ err, reason }, 'recording kubernetes event failed');
    });
  }
}
