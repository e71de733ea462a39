// Dispatcher throughput, latency and CPU against a minimal baseline measured in the same run
// with the same libraries: pull (consume, 32 buffered), POST the binary-mode request with
// undici, ack. Both read their own durable consumer of the same stream and POST to the same
// loopback sink (a node:http server in a child process, so its CPU is not counted).
import { fork, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import {
  AckPolicy,
  DeliverPolicy,
  jetstream,
  jetstreamManager,
  type JetStreamClient,
} from '@nats-io/jetstream';
import { headers as natsHeaders } from '@nats-io/nats-core';
import { connect } from '@nats-io/transport-node';
import { Agent } from 'undici';
import { makeEvent, toNatsMessage } from '../../src/cloudevents/index.ts';
import { DispatcherMetrics } from '../../src/dispatcher/metrics.ts';
import { DELIVERY_DEFAULTS } from '../../src/api/types.ts';
import { SubscriptionWorker } from '../../src/dispatcher/subscription-worker.ts';
import { silentLogger } from '../../src/observability/logger.ts';
import { harnessTools, startNats } from '../../test/harness/index.ts';
import { stopChild } from '../child.ts';
import type { BenchResult, BenchSuite } from '../types.ts';

interface Clients {
  readonly js: JetStreamClient;
  readonly jsm: Awaited<ReturnType<typeof jetstreamManager>>;
}

const BACKLOG = 100_000;
/** drained by each runner before the measured drains (JIT of the shared nats and undici code) */
const WARMUP = 5_000;
const IN_FLIGHT = 32;
const RATES = [500, 2_000];
const RATE_SECONDS = 5;

const SINK_SOURCE = `
const http = require('node:http');
const server = http.createServer((req, res) => {
  const sent = Number(req.headers['ce-sentat'] ?? '0');
  req.resume();
  req.on('end', () => { res.writeHead(204).end(); if (sent > 0) process.send?.(Date.now() - sent); });
});
server.keepAliveTimeout = 60000;
server.listen(0, '127.0.0.1', () => process.send?.({ port: server.address().port }));
`;

interface Sink {
  readonly url: string;
  readonly latencies: number[];
  readonly child: ChildProcess;
}

export async function startSinkProcess(): Promise<Sink> {
  const child = fork('-e', [SINK_SOURCE], {
    execArgv: [],
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  const latencies: number[] = [];
  const [first] = (await once(child, 'message')) as [{ port: number }];
  child.on('message', (m) => {
    if (typeof m === 'number') latencies.push(m);
  });
  return { url: `http://127.0.0.1:${first.port}/`, latencies, child };
}

export type Runner = (
  js: JetStreamClient,
  stream: string,
  consumer: string,
  sinkUrl: string,
) => Promise<() => Promise<void>>;

/** The baseline: consume, POST, ack; at most IN_FLIGHT at once. */
export const baseline: Runner = async (js, stream, consumer, sinkUrl) => {
  const agent = new Agent({ connections: IN_FLIGHT, keepAliveTimeout: 30_000 });
  const url = new URL(sinkUrl);
  const c = await js.consumers.get(stream, consumer);
  const messages = await c.consume({ max_messages: IN_FLIGHT });
  let running = 0;
  const waiters: (() => void)[] = [];
  const loop = (async () => {
    for await (const msg of messages) {
      while (running >= IN_FLIGHT) await new Promise<void>((r) => waiters.push(r));
      running += 1;
      const headers: Record<string, string> = {};
      for (const [k, v] of msg.headers ?? []) headers[k] = v[0] ?? '';
      void agent
        .request({
          origin: url.origin,
          path: url.pathname,
          method: 'POST',
          headers,
          body: msg.data,
        })
        .then(async (res) => {
          await res.body.dump();
          if (res.statusCode < 300) msg.ack();
          else msg.nak();
        })
        .catch(() => {
          msg.nak();
        })
        .finally(() => {
          running -= 1;
          waiters.shift()?.();
        });
    }
  })();
  return async () => {
    await messages.close();
    await loop;
    await agent.close();
  };
};

export const dispatcher: Runner = (js, stream, consumer, sinkUrl) => {
  const worker = new SubscriptionWorker({
    js,
    spec: {
      id: 'bench/dispatcher',
      sinkUri: sinkUrl,
      stream,
      consumer,
      filters: [],
      delivery: {
        format: 'binary',
        timeoutMs: 30_000,
        retry: 10,
        backoffPolicy: 'exponential',
        backoffDelayMs: 1_000,
        backoffMaxMs: 300_000,
        retryAfterMaxMs: 60_000,
        maxInFlight: IN_FLIGHT,
        ordering: DELIVERY_DEFAULTS.ordering,
      },
    },
    metrics: new DispatcherMetrics(),
    log: silentLogger(),
  });
  worker.start();
  return Promise.resolve(() => worker.stop(5_000));
};

function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return Number.NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? Number.NaN;
}

export async function publishEvents(
  js: JetStreamClient,
  subject: string,
  count: number,
  stamp: boolean,
  from = 0,
): Promise<void> {
  const acks: Promise<unknown>[] = [];
  for (let i = from; i < from + count; i += 1) {
    const e = makeEvent({
      id: `b-${i}`,
      source: '/bench',
      type: 'bench.event',
      datacontenttype: 'application/json',
      data: new TextEncoder().encode(`{"i":${i},"pad":"${'x'.repeat(200)}"}`),
      extensions: stamp ? { sentat: String(Date.now()) } : {},
    });
    const m = toNatsMessage(e);
    const h = natsHeaders();
    for (const [k, v] of Object.entries(m.headers)) h.set(k, v);
    acks.push(js.publish(subject, m.data, { headers: h, msgID: m.msgId }));
    if (acks.length >= 1_000) await Promise.all(acks.splice(0));
  }
  await Promise.all(acks);
}

export async function addConsumer(
  jsm: Awaited<ReturnType<typeof jetstreamManager>>,
  stream: string,
  name: string,
  policy: DeliverPolicy,
) {
  await jsm.consumers.add(stream, {
    durable_name: name,
    ack_policy: AckPolicy.Explicit,
    deliver_policy: policy,
    ack_wait: 40_000_000_000,
    max_ack_pending: IN_FLIGHT,
    max_deliver: 111,
  });
}

async function drain(
  { js, jsm }: Clients,
  runner: Runner,
  { stream, consumer, backlog = BACKLOG }: { stream: string; consumer: string; backlog?: number },
  sinkUrl: string,
) {
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  const stop = await runner(js, stream, consumer, sinkUrl);
  for (;;) {
    const info = await jsm.consumers.info(stream, consumer);
    if (info.ack_floor.stream_seq >= backlog) break;
    await new Promise((r) => setTimeout(r, 50));
  }
  const seconds = (performance.now() - t0) / 1000;
  const cpu = process.cpuUsage(cpu0);
  await stop();
  return {
    eventsPerSecond: backlog / seconds,
    cpuMsPer1000: (cpu.user + cpu.system) / 1000 / (backlog / 1000),
  };
}

async function latencyAt(
  { js, jsm }: Clients,
  runner: Runner,
  rate: number,
  sink: Sink,
  name: string,
) {
  await jsm.streams.add({ name, subjects: [`${name.toLowerCase()}.>`] });
  await addConsumer(jsm, name, 'c', DeliverPolicy.All);
  const stop = await runner(js, name, 'c', sink.url);
  sink.latencies.length = 0;
  const total = rate * RATE_SECONDS;
  const perTick = rate / 100;
  const started = Date.now();
  for (let sent = 0; sent < total; sent += perTick) {
    await publishEvents(js, `${name.toLowerCase()}.bench.event`, perTick, true, sent);
    const due = started + ((sent + perTick) / rate) * 1000;
    await new Promise((r) => setTimeout(r, Math.max(0, due - Date.now())));
  }
  while (sink.latencies.length < total) await new Promise((r) => setTimeout(r, 50));
  await stop();
  const sorted = [...sink.latencies].sort((a, b) => a - b);
  await jsm.streams.delete(name);
  return { p50: percentile(sorted, 50), p99: percentile(sorted, 99) };
}

const suite: BenchSuite = {
  description: `dispatcher vs baseline (pull, POST, ack): ${BACKLOG} backlog drain, latency at fixed rates, CPU`,
  async run(): Promise<BenchResult[]> {
    const server = await startNats({ tool: (await harnessTools())['nats-server'] });
    const sink = await startSinkProcess();
    const nc = await connect({ servers: server.url });
    try {
      const js = jetstream(nc);
      const jsm = await jetstreamManager(nc);
      const clients: Clients = { js, jsm };
      await jsm.streams.add({ name: 'BENCH', subjects: ['bench.>'] });
      await addConsumer(jsm, 'BENCH', 'base', DeliverPolicy.All);
      await addConsumer(jsm, 'BENCH', 'disp', DeliverPolicy.All);
      await publishEvents(js, 'bench.bench.event', BACKLOG, false);
      // Both run in this process and share the nats.js and undici code: without a warm-up
      // the baseline, drained first, would also pay for compiling what the dispatcher reuses.
      await jsm.streams.add({ name: 'WARM', subjects: ['warm.>'] });
      await addConsumer(jsm, 'WARM', 'base', DeliverPolicy.All);
      await addConsumer(jsm, 'WARM', 'disp', DeliverPolicy.All);
      await publishEvents(js, 'warm.bench.event', WARMUP, false);
      await drain(
        clients,
        baseline,
        { stream: 'WARM', consumer: 'base', backlog: WARMUP },
        sink.url,
      );
      await drain(
        clients,
        dispatcher,
        { stream: 'WARM', consumer: 'disp', backlog: WARMUP },
        sink.url,
      );
      await jsm.streams.delete('WARM');
      // then the baseline, then the dispatcher, same backlog
      const base = await drain(clients, baseline, { stream: 'BENCH', consumer: 'base' }, sink.url);
      const disp = await drain(
        clients,
        dispatcher,
        { stream: 'BENCH', consumer: 'disp' },
        sink.url,
      );
      const results: BenchResult[] = [
        {
          name: 'backlog drain',
          unit: 'events/s',
          value: disp.eventsPerSecond,
          baseline: { name: 'baseline', value: base.eventsPerSecond },
        },
        {
          name: 'CPU per 1,000 events (drain)',
          unit: 'ms',
          value: disp.cpuMsPer1000,
          baseline: { name: 'baseline', value: base.cpuMsPer1000 },
          note: 'bench process: publisher idle, sink in a child',
        },
      ];
      for (const rate of RATES) {
        const b = await latencyAt(clients, baseline, rate, sink, `LB${rate}`);
        const d = await latencyAt(clients, dispatcher, rate, sink, `LD${rate}`);
        results.push(
          {
            name: `end-to-end latency p50 at ${rate}/s`,
            unit: 'ms',
            value: d.p50,
            baseline: { name: 'baseline', value: b.p50 },
          },
          {
            name: `end-to-end latency p99 at ${rate}/s`,
            unit: 'ms',
            value: d.p99,
            baseline: { name: 'baseline', value: b.p99 },
          },
        );
      }
      return results;
    } finally {
      await nc.close();
      await stopChild(sink.child, 'the sink');
      await server.dispose();
    }
  },
};

export default suite;
