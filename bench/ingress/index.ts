// Ingress throughput and latency against a real nats-server, as ratios to a minimal baseline
// (node:http + js.publish + 202, bench/ingress/baseline-server.ts) measured in the same run.
// Both servers run as child processes; the load comes from this process over keep-alive
// connections with a fixed number of requests in flight. Rounds alternate between the two.
import { jetstreamManager } from '@nats-io/jetstream';
import { connect } from '@nats-io/transport-node';
import { Pool } from 'undici';
import { makeEvent, toHttpBatchRequest } from '../../src/cloudevents/index.ts';
import { startNats } from '../../src/devenv/nats.ts';
import { defaultCacheDir, requireTools } from '../../src/devenv/tools.ts';
import type { BenchResult, BenchSuite } from '../types.ts';
import { singleEventRequest, startServer, type Server } from './servers.ts';

const ROUND_MS = Number(process.env.BENCH_INGRESS_ROUND_MS ?? 4_000);
const WARMUP_MS = 1_000;
const ROUNDS = Number(process.env.BENCH_INGRESS_ROUNDS ?? 3);
const IN_FLIGHT = 64;

interface Measured {
  readonly eventsPerSecond: number;
  readonly p50Ms: number;
  readonly p99Ms: number;
}

function percentile(sorted: readonly number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))] ?? 0;
}

let seq = 0;
type Body = () => { headers: Record<string, string>; body: Uint8Array; events: number };

const single: Body = () => {
  const req = singleEventRequest();
  return { headers: req.headers, body: req.body, events: 1 };
};

const batchOf10: Body = () => {
  const events = Array.from({ length: 10 }, () => {
    seq += 1;
    return makeEvent({
      id: `bench-batch-${String(seq)}`,
      source: '/bench',
      type: 'com.example.bench.created',
      datacontenttype: 'application/json',
      data: new TextEncoder().encode(`{"n":${String(seq)}}`),
    });
  });
  const req = toHttpBatchRequest(events);
  return { headers: req.headers, body: req.body, events: 10 };
};

/** Closed-loop load: IN_FLIGHT workers, each sending the next request when one answers. */
async function load(url: string, path: string, make: Body, ms: number): Promise<Measured> {
  const pool = new Pool(url, { connections: IN_FLIGHT, pipelining: 1 });
  const latencies: number[] = [];
  let events = 0;
  let failures = 0;
  const started = performance.now();
  const deadline = started + ms;
  await Promise.all(
    Array.from({ length: IN_FLIGHT }, async () => {
      while (performance.now() < deadline) {
        const { headers, body, events: n } = make();
        const t0 = performance.now();
        const res = await pool.request({ method: 'POST', path, headers, body });
        await res.body.dump();
        latencies.push(performance.now() - t0);
        if (res.statusCode === 202) events += n;
        else failures += 1;
      }
    }),
  );
  const elapsed = (performance.now() - started) / 1000;
  await pool.close();
  if (failures > 0)
    throw new Error(`${String(failures)} requests to ${url}${path} were not accepted`);
  latencies.sort((a, b) => a - b);
  return {
    eventsPerSecond: events / elapsed,
    p50Ms: percentile(latencies, 0.5),
    p99Ms: percentile(latencies, 0.99),
  };
}

function mean(values: readonly Measured[], key: keyof Measured): number {
  return values.reduce((sum, m) => sum + m[key], 0) / Math.max(1, values.length);
}

const suite: BenchSuite = {
  description: `POST /<ns>/<stream> to JetStream, ${String(IN_FLIGHT)} requests in flight, ${String(ROUNDS)} alternating rounds of ${String(ROUND_MS)} ms`,
  async run(): Promise<BenchResult[]> {
    const tools = await requireTools({
      cacheDir: defaultCacheDir(process.env),
      kubebuilderAssets: process.env.KUBEBUILDER_ASSETS,
      path: process.env.PATH,
    });
    const nats = await startNats({ tool: tools['nats-server'] });
    const servers: Server[] = [];
    try {
      const nc = await connect({ servers: nats.url });
      const jsm = await jetstreamManager(nc);
      await jsm.streams.add({
        name: 'BENCH',
        subjects: ['bench.>'],
        max_bytes: 2 ** 30,
        duplicate_window: 120_000_000_000,
      });
      await nc.close();
      const env = { EVENTWIRE_NATS_URL: nats.url };
      const baseline = await startServer('baseline-server.ts', env);
      servers.push(baseline);
      const ingress = await startServer('ingress-server.ts', {
        ...env,
        EVENTWIRE_INGRESS_HOST: '127.0.0.1',
        EVENTWIRE_OPS_HOST: '127.0.0.1',
        EVENTWIRE_OPS_PORT: '0',
        EVENTWIRE_INGRESS_STATIC_STREAMS: 'bench/events=BENCH:bench',
      });
      servers.push(ingress);
      await load(baseline.url, '/bench/events', single, WARMUP_MS);
      await load(ingress.url, '/bench/events', single, WARMUP_MS);
      const base: Measured[] = [];
      const ours: Measured[] = [];
      const batches: Measured[] = [];
      for (let round = 0; round < ROUNDS; round += 1) {
        base.push(await load(baseline.url, '/bench/events', single, ROUND_MS));
        ours.push(await load(ingress.url, '/bench/events', single, ROUND_MS));
        batches.push(await load(ingress.url, '/bench/events', batchOf10, ROUND_MS));
      }
      const baselineName = 'baseline (node:http + js.publish + 202)';
      return [
        {
          name: 'ingress binary events/s',
          value: mean(ours, 'eventsPerSecond'),
          unit: 'events/s',
          baseline: { name: baselineName, value: mean(base, 'eventsPerSecond') },
          note: 'higher is better; goal ratio >= 0.8',
        },
        {
          name: 'ingress binary latency p50',
          value: mean(ours, 'p50Ms'),
          unit: 'ms',
          baseline: { name: baselineName, value: mean(base, 'p50Ms') },
          note: 'lower is better',
        },
        {
          name: 'ingress binary latency p99',
          value: mean(ours, 'p99Ms'),
          unit: 'ms',
          baseline: { name: baselineName, value: mean(base, 'p99Ms') },
          note: 'lower is better',
        },
        {
          name: 'ingress batch of 10 events/s',
          value: mean(batches, 'eventsPerSecond'),
          unit: 'events/s',
          baseline: { name: baselineName, value: mean(base, 'eventsPerSecond') },
          note: 'baseline sends one event per request',
        },
      ];
    } finally {
      for (const s of servers) await s.stop();
      await nats.dispose();
    }
  },
};

export default suite;
