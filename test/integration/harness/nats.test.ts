// Proves the NATS harness is a real nats-server with JetStream: streams, publish, durable
// pull consumers and acks, deduplication, and a store that survives a SIGKILL.
import { AckPolicy, jetstream, jetstreamManager } from '@nats-io/jetstream';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { harnessTools, startNats, type NatsServer } from '../../harness/index.ts';

describe('shared nats-server', () => {
  let nc: NatsConnection;

  beforeAll(async () => {
    nc = await connect({ servers: inject('natsUrl') });
  });
  afterAll(async () => {
    await nc.close();
  });

  it('creates a stream, publishes, consumes with a durable pull consumer and acks', async () => {
    const jsm = await jetstreamManager(nc);
    await jsm.streams.add({ name: 'HARNESS', subjects: ['harness.>'] });
    const js = jetstream(nc);
    const ack = await js.publish('harness.hello', 'hi', { msgID: 'm-1' });
    expect(ack.stream).toBe('HARNESS');
    expect(ack.duplicate).toBe(false);
    const dup = await js.publish('harness.hello', 'hi', { msgID: 'm-1' });
    expect(dup.duplicate).toBe(true);

    await jsm.consumers.add('HARNESS', { durable_name: 'c1', ack_policy: AckPolicy.Explicit });
    const consumer = await js.consumers.get('HARNESS', 'c1');
    const msg = await consumer.next({ expires: 5_000 });
    expect(msg?.subject).toBe('harness.hello');
    expect(msg?.string()).toBe('hi');
    expect(await msg?.ackAck()).toBe(true);

    const info = await consumer.info();
    expect(info.ack_floor.stream_seq).toBe(1);
    expect(info.num_pending).toBe(0);
    expect(info.num_ack_pending).toBe(0);
  });
});

describe('own nats-server under faults', () => {
  let server: NatsServer;

  beforeAll(async () => {
    server = await startNats({ tool: (await harnessTools())['nats-server'] });
  });
  afterAll(async () => {
    await server.dispose();
  });

  it('keeps acknowledged messages across a SIGKILL and a restart on the same store', async () => {
    let nc = await connect({ servers: server.url });
    const jsm = await jetstreamManager(nc);
    await jsm.streams.add({ name: 'DURABLE', subjects: ['durable.>'] });
    const js = jetstream(nc);
    for (let i = 0; i < 20; i += 1) await js.publish(`durable.e${i}`, String(i));
    await nc.close();

    await server.kill();
    expect(server.running).toBe(false);
    await expect(connect({ servers: server.url, reconnect: false })).rejects.toThrow();
    await server.restart();

    nc = await connect({ servers: server.url });
    const info = await (await jetstreamManager(nc)).streams.info('DURABLE');
    expect(info.state.messages).toBe(20);
    expect(info.state.last_seq).toBe(20);
    await nc.close();
  });
});
