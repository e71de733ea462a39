// Duplicates and NATS outages, with a nats-server of this file's own: the same event sent
// twice inside the duplicate window is stored once; while nats-server is down requests get
// 503 with Retry-After and /readyz fails; after a restart (graceful or SIGKILL) every event
// acknowledged to a producer is in the stream, once.
import type { JetStreamManager } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/transport-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  makeEvent,
  natsMsgId,
  toHttpBatchRequest,
  toHttpRequest,
} from '../../../src/cloudevents/index.ts';
import { harnessTools, startNats, waitFor, type NatsServer } from '../../harness/index.ts';
import {
  createStream,
  messageCount,
  natsClient,
  post,
  startTestIngress,
  storedMessages,
  type Answer,
} from './helpers.ts';

const STREAM = 'FAULTS';
const PREFIX = 'faults';
const PATH = '/it/faults';

describe('ingress with duplicates and NATS outages', () => {
  let nats: NatsServer;
  let nc: NatsConnection;
  let jsm: JetStreamManager;
  let ingress: Awaited<ReturnType<typeof startTestIngress>>;

  beforeAll(async () => {
    nats = await startNats({ tool: (await harnessTools())['nats-server'] });
    ({ nc, jsm } = await natsClient(nats.url));
    await createStream(jsm, { name: STREAM, prefix: PREFIX, duplicateWindowMs: 120_000 });
    ingress = await startTestIngress({
      EVENTWIRE_NATS_URL: nats.url,
      EVENTWIRE_INGRESS_STATIC_STREAMS: `it/faults=${STREAM}:${PREFIX}`,
      EVENTWIRE_INGRESS_PUBLISH_TIMEOUT: '2s',
      EVENTWIRE_INGRESS_RETRY_AFTER_SECONDS: '2',
    });
  });
  afterAll(async () => {
    await ingress.close();
    await nc.close();
    await nats.dispose();
  });

  function send(id: string, source = '/faults'): Promise<Answer> {
    const req = toHttpRequest(makeEvent({ id, source, type: 'fault.test' }), 'binary');
    return post(ingress.url + PATH, req.headers, req.body);
  }

  async function storedIds(): Promise<string[]> {
    return (await storedMessages(jsm, STREAM)).map((m) => m.header.get('Nats-Msg-Id'));
  }

  it('stores an event sent twice inside the duplicate window once', async () => {
    const before = await messageCount(jsm, STREAM);
    const first = await send('dup-1');
    const second = await send('dup-1');
    expect(first.status).toBe(202);
    expect(first.body).toEqual({ events: 1, duplicates: 0 });
    expect(second.status).toBe(202);
    expect(second.body).toEqual({ events: 1, duplicates: 1 });
    // a structured retry of the same source and id, and a batch repeating it, are dropped too
    const event = makeEvent({ id: 'dup-1', source: '/faults', type: 'fault.test' });
    const structured = toHttpRequest(event, 'structured');
    expect((await post(ingress.url + PATH, structured.headers, structured.body)).status).toBe(202);
    const batch = toHttpBatchRequest([event, event]);
    const batchAnswer = await post(ingress.url + PATH, batch.headers, batch.body);
    expect(batchAnswer.body).toEqual({ events: 2, duplicates: 2 });
    expect(await messageCount(jsm, STREAM)).toBe(before + 1);
    // the same id from another source is another event
    expect((await send('dup-1', '/other')).body).toEqual({ events: 1, duplicates: 0 });
    expect(await messageCount(jsm, STREAM)).toBe(before + 2);
  });

  async function readyStatus(): Promise<number> {
    return (await fetch(`${ingress.opsUrl}/readyz`)).status;
  }

  /**
   * Producers that send numbered events and retry each one on anything but 202 (as a real
   * producer does after a 503), recording what was acknowledged.
   */
  function startProducers(tag: string, count: number) {
    const acked = new Set<string>();
    const statuses = new Map<number, number>();
    let retryAfterSeen = false;
    const state = { stop: false };
    const stopped = () => state.stop;
    const loops = Array.from({ length: count }, async (_, p) => {
      for (let n = 0; !stopped(); n += 1) {
        const id = `${tag}-${String(p)}-${String(n)}`;
        for (;;) {
          let answer: Answer | undefined;
          try {
            answer = await send(id);
          } catch {
            answer = undefined; // connection refused or reset: retry like a producer
          }
          const status = answer?.status ?? 0;
          statuses.set(status, (statuses.get(status) ?? 0) + 1);
          if (status === 503 && answer?.headers.get('retry-after') === '2') retryAfterSeen = true;
          if (status === 202) {
            acked.add(natsMsgId({ source: '/faults', id }));
            break;
          }
          if (stopped()) break;
          await new Promise((r) => setTimeout(r, 50));
        }
      }
    });
    return {
      acked,
      statuses,
      retryAfterSeen: () => retryAfterSeen,
      stop: async () => {
        state.stop = true;
        await Promise.all(loops);
      },
    };
  }

  for (const how of ['stop', 'kill'] as const) {
    it(`answers 503 while nats-server is down (${how}) and loses nothing acknowledged`, async () => {
      const producers = startProducers(how, 4);
      await waitFor(
        'events acknowledged before the outage',
        () => Promise.resolve(producers.acked.size >= 50),
        { timeoutMs: 20_000 },
      );
      await (how === 'stop' ? nats.stop() : nats.kill());
      await waitFor(
        'a 503 while NATS is down',
        () => Promise.resolve((producers.statuses.get(503) ?? 0) >= 4),
        { timeoutMs: 20_000 },
      );
      expect(producers.retryAfterSeen()).toBe(true);
      expect(await readyStatus()).toBe(503);
      // a direct request fails fast with a problem body
      const down = await send(`${how}-direct`);
      expect(down.status).toBe(503);
      expect(down.body.status).toBe(503);
      const ackedWhileDown = producers.acked.size;
      await nats.restart();
      await waitFor('/readyz after the restart', async () => (await readyStatus()) === 200, {
        timeoutMs: 30_000,
      });
      await waitFor(
        'events acknowledged after the restart',
        () => Promise.resolve(producers.acked.size >= ackedWhileDown + 50),
        { timeoutMs: 30_000 },
      );
      await producers.stop();
      await waitFor(
        'the test client to reconnect',
        async () => (await messageCount(jsm, STREAM)) > 0,
        { timeoutMs: 30_000 },
      );
      const stored = await storedIds();
      const missing = [...producers.acked].filter((id) => !stored.includes(id));
      expect(missing).toEqual([]);
      // producer retries were de-duplicated: every stored id appears once
      expect(new Set(stored).size).toBe(stored.length);
      expect(producers.statuses.get(500) ?? 0).toBe(0);
    });
  }
});
