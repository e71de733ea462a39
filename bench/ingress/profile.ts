// A focused harness for profiling (not a suite: `node bench/ingress/profile.ts`): like the
// suite, single binary events only, and it reports the CPU each server process used per
// 1,000 events (from /proc, Linux only). BENCH_NODE_ARGS="--cpu-prof --cpu-prof-dir=DIR"
// profiles both servers.
import { readdirSync, readFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { jetstreamManager } from '@nats-io/jetstream';
import { connect } from '@nats-io/transport-node';
import { Pool } from 'undici';
import { startNats } from '../../src/devenv/nats.ts';
import { defaultCacheDir, requireTools } from '../../src/devenv/tools.ts';
import { singleEventRequest, startServer } from './servers.ts';

const ROUND_MS = Number(process.env.BENCH_INGRESS_ROUND_MS ?? 4_000);
const ROUNDS = Number(process.env.BENCH_INGRESS_ROUNDS ?? 3);
const IN_FLIGHT = 64;

function cpuMs(pid: number): number {
  const fields =
    readFileSync(`/proc/${String(pid)}/stat`, 'utf8')
      .split(') ')[1]
      ?.split(' ') ?? [];
  return ((Number(fields[11]) + Number(fields[12])) * 1000) / 100;
}

function pidWhoseCommandHas(text: string): number {
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      if (readFileSync(`/proc/${entry}/cmdline`, 'utf8').includes(text)) return Number(entry);
    } catch {
      // gone
    }
  }
  return 0;
}

let natsPid = 0;

async function load(url: string, pid: number, ms: number) {
  const pool = new Pool(url, { connections: IN_FLIGHT, pipelining: 1 });
  let events = 0;
  const cpu0 = cpuMs(pid);
  const nats0 = cpuMs(natsPid);
  const self0 = process.cpuUsage();
  const started = performance.now();
  const deadline = started + ms;
  await Promise.all(
    Array.from({ length: IN_FLIGHT }, async () => {
      while (performance.now() < deadline) {
        const { headers, body } = singleEventRequest();
        const res = await pool.request({ method: 'POST', path: '/bench/events', headers, body });
        await res.body.dump();
        if (res.statusCode === 202) events += 1;
      }
    }),
  );
  const elapsed = (performance.now() - started) / 1000;
  const cpu = cpuMs(pid) - cpu0;
  const natsCpu = cpuMs(natsPid) - nats0;
  const self = process.cpuUsage(self0);
  await pool.close();
  return {
    eps: events / elapsed,
    cpuPer1000: (cpu / events) * 1000,
    natsPer1000: (natsCpu / events) * 1000,
    loadPer1000: ((self.user + self.system) / 1000 / events) * 1000,
  };
}

const tools = await requireTools({
  cacheDir: defaultCacheDir(process.env),
  kubebuilderAssets: process.env.KUBEBUILDER_ASSETS,
  path: process.env.PATH,
});
const nats = await startNats({ tool: tools['nats-server'] });
const nc = await connect({ servers: nats.url });
const jsm = await jetstreamManager(nc);
await jsm.streams.add({
  name: 'BENCH',
  subjects: ['bench.>'],
  max_bytes: 2 ** 30,
  duplicate_window: 120_000_000_000,
});
await nc.close();
natsPid = pidWhoseCommandHas(dirname(nats.storeDir));
const env = { EVENTWIRE_NATS_URL: nats.url };
const base = await startServer('baseline-server.ts', env);
const ours = await startServer('ingress-server.ts', {
  ...env,
  EVENTWIRE_INGRESS_HOST: '127.0.0.1',
  EVENTWIRE_OPS_HOST: '127.0.0.1',
  EVENTWIRE_OPS_PORT: '0',
  EVENTWIRE_INGRESS_STATIC_STREAMS: 'bench/events=BENCH:bench',
});
await load(base.url, base.pid, 1000);
await load(ours.url, ours.pid, 1000);
for (let r = 0; r < ROUNDS; r += 1) {
  const b = await load(base.url, base.pid, ROUND_MS);
  const o = await load(ours.url, ours.pid, ROUND_MS);
  const f = (m: typeof b) =>
    `${m.eps.toFixed(0)}/s, CPU ms/1000 events: server ${m.cpuPer1000.toFixed(1)} nats ${m.natsPer1000.toFixed(1)} load ${m.loadPer1000.toFixed(1)}`;
  console.log(`round ${String(r)}: baseline ${f(b)}`);
  console.log(
    `         ingress  ${f(o)}  ratio ${(o.eps / b.eps).toFixed(2)}, server CPU ${(o.cpuPer1000 / b.cpuPer1000).toFixed(2)}`,
  );
}
for (const s of [base, ours]) await s.stop();
await nats.dispose();
