// What the dispatcher relies on from JetStream's pinned-client priority groups (NATS 2.11+),
// measured against the real nats-server, and why it pulls with its own loop (PinnedPuller)
// instead of nats.js's consume({ group }) (ADR 0011):
// - a waiting pull takes over about priority_timeout after the pinned client closes or dies;
// - consume({ group }) loses its pin while alive when it holds max_ack_pending messages (it
//   does not pull again), so the next message goes to another client while it still holds
//   earlier ones: the hazard for ordering;
// - PinnedPuller keeps its pin in the same situation, takes over from a SIGKILLed process
//   after priority_timeout, and at once after an unpin.
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { randomUUID } from 'node:crypto';
import { join } from 'node:path';
import { AckPolicy, DeliverPolicy, type JsMsg } from '@nats-io/jetstream';
import { afterAll, afterEach, beforeAll, describe, expect, inject, it } from 'vitest';
import { msToNanos } from '../../../src/api/duration.ts';
import { PinnedPuller } from '../../../src/dispatcher/puller.ts';
import { silentLogger } from '../../../src/observability/logger.ts';
import { natsAt, untilWithin, type Nats } from './helpers.ts';

const until = untilWithin(20_000, 20);
const PIN_TIMEOUT_MS = 1_500;
const GROUP = 'g';
const root = join(import.meta.dirname, '..', '..', '..');

const children = new Set<ChildProcess>();
const connections: Nats[] = [];
const pullers: PinnedPuller[] = [];

/** A stream and a pinned-client consumer (as the controller makes for ordered subscriptions). */
async function pinnedConsumer(
  n: Nats,
  maxAckPending = 100,
): Promise<{ stream: string; subject: string }> {
  const id = randomUUID().replaceAll('-', '').slice(0, 10);
  const stream = `P${id}`;
  await n.jsm.streams.add({ name: stream, subjects: [`p${id}.>`] });
  await n.jsm.consumers.add(stream, {
    durable_name: 'c',
    ack_policy: AckPolicy.Explicit,
    deliver_policy: DeliverPolicy.All,
    ack_wait: msToNanos(30_000),
    max_ack_pending: maxAckPending,
    priority_groups: [GROUP],
    priority_policy: 'pinned_client',
    priority_timeout: msToNanos(PIN_TIMEOUT_MS),
  });
  return { stream, subject: `p${id}.x` };
}

/** A client in a process of its own: consume({ group }) or PinnedPuller, acking each message. */
function spawnClient(
  kind: 'consume' | 'puller',
  url: string,
  stream: string,
): { child: ChildProcess; received: () => number } {
  const code =
    kind === 'consume'
      ? `
import { jetstream } from '@nats-io/jetstream';
import { connect } from '@nats-io/transport-node';
const nc = await connect({ servers: ${JSON.stringify(url)} });
const c = await jetstream(nc).consumers.get(${JSON.stringify(stream)}, 'c');
const msgs = await c.consume({ group: ${JSON.stringify(GROUP)}, max_messages: 10 });
for await (const m of msgs) { m.ack(); process.stdout.write('m\\n'); }
`
      : `
import { connect } from '@nats-io/transport-node';
import { PinnedPuller } from './src/dispatcher/puller.ts';
import { silentLogger } from './src/observability/logger.ts';
const nc = await connect({ servers: ${JSON.stringify(url)} });
const p = new PinnedPuller({ nc, apiPrefix: '$JS.API', stream: ${JSON.stringify(stream)}, consumer: 'c',
  group: ${JSON.stringify(GROUP)}, batch: 10, pinTimeoutMs: ${String(PIN_TIMEOUT_MS)}, log: silentLogger(),
  onMessage: (m) => { m.ack(); process.stdout.write('m\\n'); } });
await p.run();
`;
  const child = spawn(process.execPath, ['--input-type=module', '-e', code], {
    cwd: root,
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  children.add(child);
  child.once('exit', () => children.delete(child));
  let count = 0;
  child.stdout.on('data', (d: Buffer) => (count += d.toString().split('\n').length - 1));
  return { child, received: () => count };
}

async function kill(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = once(child, 'exit');
  child.kill('SIGKILL');
  await exited;
}

function puller(n: Nats, stream: string, onMessage: (m: JsMsg) => void): PinnedPuller {
  const p = new PinnedPuller({
    nc: n.nc,
    apiPrefix: '$JS.API',
    stream,
    consumer: 'c',
    group: GROUP,
    batch: 10,
    pinTimeoutMs: PIN_TIMEOUT_MS,
    onMessage,
    log: silentLogger(),
  });
  pullers.push(p);
  void p.run().catch(() => undefined);
  return p;
}

/** Publishes one message every 50 ms until stopped. */
function trickle(n: Nats, subject: string): { stop(): void } {
  const t = setInterval(() => void n.js.publish(subject, 'x').catch(() => undefined), 50);
  return {
    stop: () => {
      clearInterval(t);
    },
  };
}

describe('pinned-client priority groups', () => {
  let url: string;
  let n: Nats;
  beforeAll(async () => {
    url = inject('natsUrl');
    n = await natsAt(url);
  });
  afterEach(async () => {
    for (const p of pullers.splice(0)) p.close();
    await Promise.all([...children].map((c) => kill(c)));
    await Promise.all(connections.splice(0).map((c) => c.nc.close()));
  });
  afterAll(async () => {
    await n.nc.close();
  });

  it('nats.js consume({ group }): a waiting consumer takes over about priority_timeout after the pinned one is SIGKILLed', async () => {
    const { stream, subject } = await pinnedConsumer(n);
    const first = spawnClient('consume', url, stream);
    await n.js.publish(subject, 'x');
    await until('the first client to be pinned', () => first.received() === 1);
    const second = spawnClient('consume', url, stream);
    // the second's pull waits: the next message still goes to the first
    await new Promise((r) => setTimeout(r, 500));
    await n.js.publish(subject, 'x');
    await until('the first client to receive again', () => first.received() === 2);
    expect(second.received()).toBe(0);
    const killedAt = Date.now();
    await kill(first.child);
    const pub = trickle(n, subject);
    await until('the second client to take over', () => second.received() > 0);
    pub.stop();
    const gap = Date.now() - killedAt;
    process.stdout.write(
      `[pinned-client] consume({ group }) takeover after SIGKILL: ${String(gap)} ms\n`,
    );
    expect(gap).toBeGreaterThanOrEqual(PIN_TIMEOUT_MS * 0.5);
    expect(gap).toBeLessThan(PIN_TIMEOUT_MS + 5_000);
  });

  it('nats.js consume({ group }) loses its pin while alive when it holds max_ack_pending messages', async () => {
    const { stream, subject } = await pinnedConsumer(n, 4);
    const a = await natsAt(url);
    const b = await natsAt(url);
    connections.push(a, b);
    const heldByA: JsMsg[] = [];
    const toB: number[] = [];
    const ca = await (
      await a.js.consumers.get(stream, 'c')
    ).consume({ group: GROUP, max_messages: 4 });
    void (async () => {
      for await (const m of ca) heldByA.push(m);
    })();
    for (let i = 0; i < 4; i += 1) await n.js.publish(subject, 'x');
    await until('the first client to hold max_ack_pending', () => heldByA.length === 4);
    const keepAlive = setInterval(() => {
      for (const m of heldByA) m.working();
    }, 300);
    const cb = await (
      await b.js.consumers.get(stream, 'c')
    ).consume({ group: GROUP, max_messages: 4 });
    void (async () => {
      for await (const m of cb) {
        toB.push(m.seq);
        m.ack();
      }
    })();
    for (let i = 0; i < 4; i += 1) await n.js.publish(subject, 'x');
    // alive, holding its messages, but not pulling: the pin times out
    await new Promise((r) => setTimeout(r, PIN_TIMEOUT_MS * 2));
    heldByA[0]?.ack();
    await until('a message to reach the second client', () => toB.length > 0);
    clearInterval(keepAlive);
    // the first client still holds three earlier messages: another client received a later one
    expect(toB[0]).toBe(5);
    expect(heldByA.length).toBe(4);
  });

  it('PinnedPuller keeps its pin while it holds max_ack_pending messages', async () => {
    const { stream, subject } = await pinnedConsumer(n, 4);
    const a = await natsAt(url);
    const b = await natsAt(url);
    connections.push(a, b);
    const heldByA: JsMsg[] = [];
    const toB: number[] = [];
    puller(a, stream, (m) => heldByA.push(m));
    for (let i = 0; i < 4; i += 1) await n.js.publish(subject, 'x');
    await until('the first puller to hold max_ack_pending', () => heldByA.length === 4);
    const keepAlive = setInterval(() => {
      for (const m of heldByA) m.working();
    }, 300);
    puller(b, stream, (m) => {
      toB.push(m.seq);
      m.ack();
    });
    for (let i = 0; i < 4; i += 1) await n.js.publish(subject, 'x');
    await new Promise((r) => setTimeout(r, PIN_TIMEOUT_MS * 2));
    heldByA[0]?.ack();
    await until('the first puller to receive the next message', () => heldByA.length === 5);
    clearInterval(keepAlive);
    expect(heldByA.map((m) => m.seq)).toEqual([1, 2, 3, 4, 5]);
    expect(toB).toEqual([]);
  });

  it('PinnedPuller: a waiting puller takes over after priority_timeout from a SIGKILLed process, at once after an unpin', async () => {
    const { stream, subject } = await pinnedConsumer(n);
    const first = spawnClient('puller', url, stream);
    await n.js.publish(subject, 'x');
    await until('the first process to be pinned', () => first.received() === 1);
    const b = await natsAt(url);
    connections.push(b);
    const toB: number[] = [];
    const pb = puller(b, stream, (m) => {
      toB.push(m.seq);
      m.ack();
    });
    // pinned, the first keeps its pin beyond priority_timeout while idle
    await new Promise((r) => setTimeout(r, PIN_TIMEOUT_MS * 2));
    await n.js.publish(subject, 'x');
    await until('the first process to receive again', () => first.received() === 2);
    expect(toB).toEqual([]);

    const killedAt = Date.now();
    await kill(first.child);
    let pub = trickle(n, subject);
    await until('the waiting puller to take over', () => toB.length > 0);
    pub.stop();
    const gap = Date.now() - killedAt;
    process.stdout.write(
      `[pinned-client] PinnedPuller takeover after SIGKILL: ${String(gap)} ms\n`,
    );
    expect(gap).toBeLessThan(PIN_TIMEOUT_MS + 2_000);
    expect(pb.pinId).toBeDefined();

    const c = await natsAt(url);
    connections.push(c);
    const toC: number[] = [];
    puller(c, stream, (m) => {
      toC.push(m.seq);
      m.ack();
    });
    await new Promise((r) => setTimeout(r, 200));
    const unpinnedAt = Date.now();
    await n.jsm.consumers.unpin(stream, 'c', GROUP);
    pb.close();
    pub = trickle(n, subject);
    await until('the third puller to take over', () => toC.length > 0);
    pub.stop();
    const handover = Date.now() - unpinnedAt;
    process.stdout.write(
      `[pinned-client] PinnedPuller takeover after unpin: ${String(handover)} ms\n`,
    );
    expect(handover).toBeLessThan(PIN_TIMEOUT_MS);
  });
});
