// The benchmark's baseline: the least an HTTP-to-JetStream bridge does. node:http, read the
// body, js.publish it, answer 202. No CloudEvents decoding, validation, headers or dedup id.
import { createServer } from 'node:http';
import { jetstream } from '@nats-io/jetstream';
import { connect } from '@nats-io/transport-node';

// noAsyncTraces as the ingress sets it: otherwise every request builds two Errors
const nc = await connect({
  servers: process.env.EVENTWIRE_NATS_URL ?? 'nats://127.0.0.1:4222',
  noAsyncTraces: true,
});
const js = jetstream(nc);
const subject = process.env.BENCH_SUBJECT ?? 'bench.baseline';
const server = createServer((req, res) => {
  const chunks: Buffer[] = [];
  req.on('data', (c: Buffer) => chunks.push(c));
  req.on('end', () => {
    js.publish(subject, Buffer.concat(chunks)).then(
      () => res.writeHead(202).end(),
      () => res.writeHead(503).end(),
    );
  });
});
server.listen(Number(process.env.EVENTWIRE_INGRESS_PORT), '127.0.0.1');
process.on('SIGTERM', () => {
  server.close();
  void nc.close();
});
