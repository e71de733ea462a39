// A focused harness for profiling (not a suite: `node bench/dispatcher/profile.ts [baseline|
// dispatcher]...`): drains a backlog with each runner named (both by default, alternating) and
// prints events/s and the CPU of this process per 1,000 events. Run it with `node --cpu-prof`
// and one runner to profile that runner alone.
import { jetstream, jetstreamManager, DeliverPolicy } from '@nats-io/jetstream';
import { connect } from '@nats-io/transport-node';
import { harnessTools, startNats } from '../../test/harness/index.ts';
import { addConsumer, baseline, dispatcher, publishEvents, startSinkProcess } from './index.ts';

const BACKLOG = Number(process.env.BENCH_BACKLOG ?? 50_000);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 2);
const wanted = process.argv.slice(2);
const runners = { baseline, dispatcher };
const names = (wanted.length > 0 ? wanted : ['baseline', 'dispatcher']) as (keyof typeof runners)[];

const server = await startNats({ tool: (await harnessTools())['nats-server'] });
const sink = await startSinkProcess();
const nc = await connect({ servers: server.url });
const js = jetstream(nc);
const jsm = await jetstreamManager(nc);
await jsm.streams.add({ name: 'BENCH', subjects: ['bench.>'] });
await publishEvents(js, 'bench.bench.event', BACKLOG, false);
for (let round = 0; round < ROUNDS; round += 1) {
  for (const name of names) {
    const consumer = `${name}${String(round)}`;
    await addConsumer(jsm, 'BENCH', consumer, DeliverPolicy.All);
    const cpu0 = process.cpuUsage();
    const t0 = performance.now();
    const stop = await runners[name](js, 'BENCH', consumer, sink.url);
    for (;;) {
      const info = await jsm.consumers.info('BENCH', consumer);
      if (info.ack_floor.stream_seq >= BACKLOG) break;
      await new Promise((r) => setTimeout(r, 50));
    }
    const seconds = (performance.now() - t0) / 1000;
    const cpu = process.cpuUsage(cpu0);
    await stop();
    console.log(
      `${name.padEnd(10)} ${(BACKLOG / seconds).toFixed(0)} events/s, ${((cpu.user + cpu.system) / BACKLOG).toFixed(1)} ms CPU per 1,000 events`,
    );
  }
}
await nc.close();
sink.child.kill('SIGTERM');
await server.dispose();
