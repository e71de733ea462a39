// The operational HTTP endpoint of every component: /metrics (Prometheus), /healthz
// (the process is alive) and /readyz (every readiness check passes).
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Registry } from 'prom-client';
import type { Logger } from './logger.ts';

export type ReadinessCheck = () => { ready: boolean; reason?: string };

export interface OpsServer {
  readonly port: number;
  close(): Promise<void>;
}

export interface OpsServerOptions {
  readonly host: string;
  readonly port: number;
  readonly registry: Registry;
  readonly readiness: Readonly<Record<string, ReadinessCheck>>;
  readonly log: Logger;
}

export async function startOpsServer(opts: OpsServerOptions): Promise<OpsServer> {
  const server: Server = createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    if (req.method !== 'GET') {
      res.writeHead(405, { allow: 'GET' }).end();
      return;
    }
    if (path === '/healthz') {
      res.writeHead(200, { 'content-type': 'text/plain' }).end('ok\n');
      return;
    }
    if (path === '/readyz') {
      const failing = Object.entries(opts.readiness)
        .map(([name, check]) => ({ name, ...check() }))
        .filter((c) => !c.ready);
      const body = failing.map((c) => `${c.name}: ${c.reason ?? 'not ready'}`).join('\n');
      res
        .writeHead(failing.length === 0 ? 200 : 503, { 'content-type': 'text/plain' })
        .end(failing.length === 0 ? 'ok\n' : `${body}\n`);
      return;
    }
    if (path === '/metrics') {
      opts.registry.metrics().then(
        (text) => {
          res.writeHead(200, { 'content-type': opts.registry.contentType }).end(text);
        },
        (err: unknown) => {
          opts.log.error({ err }, 'metrics collection failed');
          res.writeHead(500).end();
        },
      );
      return;
    }
    res.writeHead(404).end();
  });
  await new Promise<void>((resolveListen, reject) => {
    server.once('error', reject);
    server.listen(opts.port, opts.host, resolveListen);
  });
  const port = (server.address() as AddressInfo).port;
  opts.log.info({ host: opts.host, port }, 'ops server listening');
  return {
    port,
    close: () =>
      new Promise<void>((resolveClose) => {
        server.closeAllConnections();
        server.close(() => {
          resolveClose();
        });
      }),
  };
}
