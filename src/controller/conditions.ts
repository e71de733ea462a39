// metav1.Condition bookkeeping: a condition keeps its lastTransitionTime until its status
// changes, and carries the generation it was computed for.

import type { Condition } from '../api/types.ts';

export type { Condition } from '../api/types.ts';

/** A condition as a reconciler computes it; merging adds the times and the generation. */
export type ConditionInput = Readonly<Omit<Condition, 'lastTransitionTime' | 'observedGeneration'>>;

/** Merge freshly computed conditions into the existing list. */
export function mergeConditions(
  existing: readonly Condition[] | undefined,
  next: readonly ConditionInput[],
  generation: number | undefined,
  now: Date,
): Condition[] {
  const byType = new Map((existing ?? []).map((c) => [c.type, c]));
  return next.map((c) => {
    const prev = byType.get(c.type);
    const transitioned = prev?.status !== c.status;
    return {
      type: c.type,
      status: c.status,
      ...(generation === undefined ? {} : { observedGeneration: generation }),
      lastTransitionTime:
        transitioned || !prev.lastTransitionTime ? now.toISOString() : prev.lastTransitionTime,
      reason: c.reason,
      message: c.message,
    };
  });
}

/** The Ready condition summarising the others: True only when all are True. */
export function readyFrom(conditions: readonly ConditionInput[]): ConditionInput {
  const notTrue = conditions.find((c) => c.status !== 'True');
  if (!notTrue) return { type: 'Ready', status: 'True', reason: 'Ready', message: 'ready' };
  return {
    type: 'Ready',
    status: notTrue.status === 'Unknown' ? 'Unknown' : 'False',
    reason: notTrue.reason,
    message: notTrue.message,
  };
}

/** Conditions whose status or reason changed: each is worth a Kubernetes Event. */
export function transitions(
  before: readonly Condition[] | undefined,
  after: readonly Condition[],
): Condition[] {
  const prev = new Map((before ?? []).map((c) => [c.type, c]));
  return after.filter((c) => {
    const p = prev.get(c.type);
    return p?.status !== c.status || p.reason !== c.reason;
  });
}

export function isTrue(conditions: readonly Condition[] | undefined, type: string): boolean {
  return (conditions ?? []).some((c) => c.type === type && c.status === 'True');
}
