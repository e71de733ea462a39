// The horizontal bench's sink, a child process (its CPU is not the dispatchers'): one HTTP
// server for every subscription (the path names it), recording the arrival order of each
// subscription's keys. Requests are held unanswered until the parent sends 'open', so every
// dispatcher process is running and pulling when the measured window starts.
//
// Per key (path + ce-partitionkey) it keeps the highest ce-benchseq seen: a first arrival
// below it is an order violation (an event overtaken by a later one of its key), a second
// arrival of a seq is a duplicate, and a request arriving while another of its key is still
// unanswered is an overlap (two events of one key in flight at once).
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface SinkCounts {
  /** distinct events received */
  readonly distinct: number;
  /** distinct events received before the gate opened */
  readonly beforeOpen: number;
  readonly violations: number;
  readonly duplicates: number;
  readonly overlaps: number;
  /** CLOCK_MONOTONIC (process.hrtime.bigint, the same clock in every process) in ms */
  readonly openedAtMs: number;
  readonly lastArrivalMs: number;
}

export type ToSink = { readonly open: true } | { readonly report: true };
export type FromSink =
  { readonly port: number } | { readonly done: SinkCounts } | { readonly counts: SinkCounts };

const expected = Number(process.argv[2]);
if (!Number.isInteger(expected) || expected <= 0) {
  throw new Error(
    `sink: the expected event count is missing (argv[2] = ${String(process.argv[2])})`,
  );
}

const nowMs = () => Number(process.hrtime.bigint()) / 1e6;
const send = (m: FromSink) => process.send?.(m);

interface KeyState {
  max: number;
  readonly seen: Set<number>;
  open: number;
}
const keys = new Map<string, KeyState>();
const held: (() => void)[] = [];
let opened = false;
let distinct = 0;
let beforeOpen = 0;
let violations = 0;
let duplicates = 0;
let overlaps = 0;
let openedAtMs = 0;
let lastArrivalMs = 0;
let reported = false;

function counts(): SinkCounts {
  return { distinct, beforeOpen, violations, duplicates, overlaps, openedAtMs, lastArrivalMs };
}

const server = createServer((req, res) => {
  const at = nowMs();
  const key = `${req.url ?? ''} ${String(req.headers['ce-partitionkey'])}`;
  const seq = Number(req.headers['ce-benchseq']);
  let k = keys.get(key);
  if (k === undefined) {
    k = { max: -1, seen: new Set(), open: 0 };
    keys.set(key, k);
  }
  const state = k;
  if (state.open > 0) overlaps += 1;
  state.open += 1;
  if (state.seen.has(seq)) duplicates += 1;
  else {
    state.seen.add(seq);
    distinct += 1;
    lastArrivalMs = at;
    if (seq < state.max) violations += 1;
  }
  state.max = Math.max(state.max, seq);
  const answer = () => {
    state.open -= 1;
    res.writeHead(204).end();
  };
  req.resume();
  req.on('end', () => {
    if (opened) answer();
    else held.push(answer);
  });
  if (distinct === expected && !reported) {
    reported = true;
    send({ done: counts() });
  }
});
server.keepAliveTimeout = 60_000;
server.maxRequestsPerSocket = 0;

process.on('message', (m: ToSink) => {
  if ('open' in m) {
    opened = true;
    openedAtMs = nowMs();
    beforeOpen = distinct;
    for (const answer of held.splice(0)) answer();
  } else {
    send({ counts: counts() });
  }
});
// the parent's end is this sink's end
process.on('disconnect', () => {
  server.close();
  server.closeAllConnections();
});

server.listen(0, '127.0.0.1', () => {
  send({ port: (server.address() as AddressInfo).port });
});
