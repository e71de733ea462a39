// A loopback HTTP sink for dispatcher tests: answers each request as a script says (status,
// headers, body, latency, or hang forever) and records every request with its timing.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { fromHttpRequest, type CloudEvent } from '../../src/cloudevents/index.ts';

export interface SinkRequest {
  /** arrival order, from 0 */
  readonly index: number;
  readonly method: string;
  readonly path: string;
  /** lower-case names */
  readonly headers: Record<string, string>;
  readonly body: Buffer;
  /** Date.now() when the body was read */
  readonly receivedAt: number;
  /** Date.now() when the answer was sent; undefined while in progress or hanging */
  respondedAt: number | undefined;
  /** answered with 2xx */
  ok: boolean;
  /** the decoded CloudEvent, when the request carried one */
  readonly event: CloudEvent | undefined;
}

export interface SinkAnswer {
  readonly status?: number;
  readonly headers?: Record<string, string>;
  readonly body?: string | Uint8Array;
  /** answer after this many ms */
  readonly delayMs?: number;
  /** never answer (until the sink closes) */
  readonly hang?: boolean;
}

export type SinkScript = (req: SinkRequest) => SinkAnswer | Promise<SinkAnswer>;

export interface TestSink {
  /** http://127.0.0.1:<port> */
  readonly url: string;
  readonly requests: SinkRequest[];
  /** most requests in progress at once */
  readonly maxConcurrent: number;
  readonly inProgress: number;
  setScript(script: SinkScript): void;
  /** events of the requests answered with 2xx */
  delivered(): CloudEvent[];
  close(): Promise<void>;
}

function headerRecord(req: IncomingMessage): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(req.headers)) {
    if (v !== undefined) out[k] = Array.isArray(v) ? v.join(', ') : v;
  }
  return out;
}

async function readBody(req: IncomingMessage): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of req as AsyncIterable<Buffer>) chunks.push(chunk);
  return Buffer.concat(chunks);
}

/** Starts a sink on 127.0.0.1; the default script answers 200 at once. */
export async function startSink(script: SinkScript = () => ({ status: 200 })): Promise<TestSink> {
  let current = script;
  const requests: SinkRequest[] = [];
  let inProgress = 0;
  let maxConcurrent = 0;

  const answer = async (req: IncomingMessage, res: ServerResponse) => {
    inProgress += 1;
    maxConcurrent = Math.max(maxConcurrent, inProgress);
    const body = await readBody(req);
    const headers = headerRecord(req);
    const decoded = fromHttpRequest({ headers, body });
    const record: SinkRequest = {
      index: requests.length,
      method: req.method ?? '',
      path: req.url ?? '/',
      headers,
      body,
      receivedAt: Date.now(),
      respondedAt: undefined,
      ok: false,
      event: decoded.ok ? decoded.events[0] : undefined,
    };
    requests.push(record);
    const a = await current(record);
    if (a.hang === true) {
      res.on('close', () => (inProgress -= 1));
      return;
    }
    if (a.delayMs !== undefined && a.delayMs > 0) {
      await new Promise((resolve) => setTimeout(resolve, a.delayMs));
    }
    inProgress -= 1;
    const status = a.status ?? 200;
    record.respondedAt = Date.now();
    record.ok = status >= 200 && status <= 299;
    res.writeHead(status, a.headers ?? {}).end(a.body ?? '');
  };

  const server: Server = createServer((req, res) => {
    answer(req, res).catch((err: unknown) => {
      res.writeHead(500).end(String(err));
    });
  });
  server.keepAliveTimeout = 60_000;
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  return {
    url: `http://127.0.0.1:${port}`,
    requests,
    get maxConcurrent() {
      return maxConcurrent;
    },
    get inProgress() {
      return inProgress;
    },
    setScript(s) {
      current = s;
    },
    delivered() {
      return requests
        .filter((r) => r.ok)
        .map((r) => r.event)
        .filter((e) => e !== undefined);
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => {
          resolve();
        });
      }),
  };
}
