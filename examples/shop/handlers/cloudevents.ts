// The few CloudEvents-over-HTTP helpers the shop handlers need: read an event in binary or
// structured mode, answer with an optional CloudEvent in binary mode (eventwire publishes it as
// a reply), and serve /healthz and /state. Only node:http, so a handler runs wherever Node 24
// runs: `node product.ts` locally, or from a ConfigMap in the node:24-alpine image.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';

export interface ShopEvent {
  readonly id: string;
  readonly source: string;
  readonly type: string;
  /** extension attributes (partitionkey, cartid, ewhops, ewerrorcode, ...) */
  readonly extensions: Readonly<Record<string, string>>;
  /** the JSON data, parsed */
  readonly data: unknown;
}

export interface OutEvent {
  readonly id: string;
  readonly source: string;
  readonly type: string;
  readonly extensions?: Readonly<Record<string, string>>;
  readonly data: unknown;
}

export interface Answer {
  readonly status: number;
  /** a CloudEvent in the response body: eventwire publishes it when the subscription has reply */
  readonly reply?: OutEvent;
  /** a short text body for errors */
  readonly text?: string;
  /** the line logged for this delivery, after the arrow */
  readonly note?: string;
}

export type Handle = (path: string, event: ShopEvent) => Answer | Promise<Answer>;

const CORE = new Set(['specversion', 'id', 'source', 'type', 'subject', 'time', 'dataschema']);

function headerValue(req: IncomingMessage, name: string): string | undefined {
  const v = req.headers[name];
  return Array.isArray(v) ? v.join(',') : v;
}

function decode(value: string): string {
  try {
    return decodeURIComponent(value);
  } catch {
    return value; // not percent-encoded UTF-8: keep it as sent
  }
}

function parseJson(text: string): unknown {
  if (text === '') return undefined;
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return text; // not JSON: the text itself
  }
}

function fromStructured(body: string): ShopEvent | undefined {
  const obj = parseJson(body);
  if (typeof obj !== 'object' || obj === null) return undefined;
  const o = obj as Record<string, unknown>;
  const extensions: Record<string, string> = {};
  for (const [k, v] of Object.entries(o)) {
    if (!CORE.has(k) && k !== 'data' && k !== 'data_base64' && k !== 'datacontenttype') {
      extensions[k] = String(v);
    }
  }
  if (typeof o.id !== 'string' || typeof o.source !== 'string' || typeof o.type !== 'string') {
    return undefined;
  }
  return { id: o.id, source: o.source, type: o.type, extensions, data: o.data };
}

/** The CloudEvent of a request, or undefined when it carries none. */
export function readEvent(req: IncomingMessage, body: string): ShopEvent | undefined {
  const contentType = headerValue(req, 'content-type') ?? '';
  if (contentType.startsWith('application/cloudevents+json')) return fromStructured(body);
  const id = headerValue(req, 'ce-id');
  const source = headerValue(req, 'ce-source');
  const type = headerValue(req, 'ce-type');
  if (id === undefined || source === undefined || type === undefined) return undefined;
  const extensions: Record<string, string> = {};
  for (const [name, value] of Object.entries(req.headers)) {
    const attr = name.slice(3);
    if (name.startsWith('ce-') && !CORE.has(attr) && typeof value === 'string') {
      extensions[attr] = decode(value);
    }
  }
  return {
    id: decode(id),
    source: decode(source),
    type: decode(type),
    extensions,
    data: parseJson(body),
  };
}

function write(res: ServerResponse, answer: Answer): void {
  const headers: Record<string, string> = {};
  let body = answer.text ?? '';
  if (answer.reply !== undefined) {
    const r = answer.reply;
    headers['ce-specversion'] = '1.0';
    headers['ce-id'] = encodeURIComponent(r.id);
    headers['ce-source'] = encodeURIComponent(r.source);
    headers['ce-type'] = encodeURIComponent(r.type);
    for (const [k, v] of Object.entries(r.extensions ?? {}))
      headers[`ce-${k}`] = encodeURIComponent(v);
    headers['content-type'] = 'application/json';
    body = JSON.stringify(r.data);
  } else if (body !== '') {
    headers['content-type'] = 'text/plain; charset=utf-8';
  }
  res.writeHead(answer.status, headers).end(body);
}

async function readBody(req: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of req as AsyncIterable<Buffer>) chunks.push(chunk);
  return Buffer.concat(chunks).toString('utf8');
}

function logLine(name: string, event: ShopEvent, answer: Answer): string {
  const key = event.extensions.cartid === undefined ? '' : ` cart=${event.extensions.cartid}`;
  const replied = answer.reply === undefined ? '' : ` (reply ${answer.reply.type})`;
  const note = answer.note === undefined ? '' : ` ${answer.note}`;
  return `${name.padEnd(9)} <- ${event.type.padEnd(18)} id=${event.id}${key} -> ${answer.status}${replied}${note}\n`;
}

export interface HandlerServer {
  readonly server: Server;
  readonly port: number;
}

/** Serves `handle` for POSTed CloudEvents, GET /state (the handler's state) and GET /healthz. */
export async function serve(
  name: string,
  handle: Handle,
  state: () => unknown,
  listen: { readonly host: string; readonly port: number },
): Promise<HandlerServer> {
  const server = createServer((req, res) => {
    void (async () => {
      const path = (req.url ?? '/').split('?')[0] ?? '/';
      if (req.method === 'GET') {
        if (path === '/healthz') return void res.writeHead(200).end('ok');
        if (path === '/state') {
          return void res
            .writeHead(200, { 'content-type': 'application/json' })
            .end(JSON.stringify(state()));
        }
        return void res.writeHead(404).end();
      }
      const event = readEvent(req, await readBody(req));
      if (event === undefined) {
        write(res, { status: 400, text: 'not a CloudEvent' });
        return;
      }
      const answer = await handle(path, event);
      process.stdout.write(logLine(name, event, answer));
      write(res, answer);
    })().catch((err: unknown) => {
      process.stderr.write(`${name}: ${String(err)}\n`);
      if (!res.headersSent) res.writeHead(500).end(String(err));
    });
  });
  await new Promise<void>((resolveListen, reject) => {
    server.once('error', reject);
    server.listen(listen.port, listen.host, resolveListen);
  });
  const addr = server.address();
  const port = typeof addr === 'object' && addr !== null ? addr.port : listen.port;
  return { server, port };
}

/** Reads PORT and HOST, serves, and exits on SIGTERM/SIGINT (and when stdin closes, if asked). */
export async function main(name: string, handle: Handle, state: () => unknown): Promise<void> {
  const { server, port } = await serve(name, handle, state, {
    host: process.env.HOST ?? '0.0.0.0',
    port: Number(process.env.PORT ?? '8080'),
  });
  process.stdout.write(`${name} handler listening on ${port}\n`);
  const stop = (): void => {
    process.stdin.destroy();
    server.close();
    server.closeAllConnections();
  };
  process.once('SIGTERM', stop);
  process.once('SIGINT', stop);
  // the local runner sets this: a handler never outlives `eventwire dev`, even after a SIGKILL
  if (process.env.EXIT_WITH_PARENT === '1') {
    process.stdin.on('close', stop).resume();
  }
}
