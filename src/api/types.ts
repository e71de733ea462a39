// The eventwire.io/v1alpha1 API: the types generated from crds/*.yaml, plus the names and
// defaults the components share. Import API types from here, not from generated.ts.
export type {
  Condition,
  ConsumerStatus,
  DeadLetterSpec,
  DeliverySpec,
  EventStream,
  EventStreamList,
  EventStreamSpec,
  EventStreamStatus,
  EventSubscription,
  EventSubscriptionList,
  EventSubscriptionSpec,
  EventSubscriptionStatus,
  Filter,
  ReplySpec,
  SinkRef,
  SinkSpec,
  StreamRef,
  SubscriptionStats,
} from './generated.ts';
export {
  DELIVERY_DEFAULTS,
  EVENTSTREAM_DEFAULTS,
  EVENTSUBSCRIPTION_DEFAULTS,
} from './generated.ts';

import type { Condition, DeliverySpec, EventStreamSpec } from './generated.ts';

export const API_GROUP = 'eventwire.io';
export const API_VERSION = 'v1alpha1';
/** apiVersion of eventwire objects: eventwire.io/v1alpha1. */
export const API_GROUP_VERSION = `${API_GROUP}/${API_VERSION}`;
export const EVENTSTREAM_KIND = 'EventStream';
export const EVENTSTREAM_PLURAL = 'eventstreams';
export const EVENTSUBSCRIPTION_KIND = 'EventSubscription';
export const EVENTSUBSCRIPTION_PLURAL = 'eventsubscriptions';
/** The kubectl category of both kinds: `kubectl get eventwire`. */
export const API_CATEGORY = 'eventwire';

/** A condition's status. */
export type ConditionStatus = Condition['status'];
export type StorageType = NonNullable<EventStreamSpec['storage']>;
export type RetentionPolicy = NonNullable<EventStreamSpec['retention']>;
export type DiscardPolicy = NonNullable<EventStreamSpec['discard']>;
export type DeletionPolicy = NonNullable<EventStreamSpec['deletionPolicy']>;
export type DeliveryFormat = NonNullable<DeliverySpec['format']>;
export type BackoffPolicy = NonNullable<DeliverySpec['backoffPolicy']>;
export type OrderingMode = NonNullable<DeliverySpec['ordering']>;
