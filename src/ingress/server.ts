// Wiring of `eventwire ingress`: NATS, the stream directory (informer or static table), the
// optional authorizer, the HTTP application on its port, and /metrics, /healthz, /readyz on
// the ops port (kept off the producers' port).
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { KubeConfig } from '@kubernetes/client-node';
import { jetstream } from '@nats-io/jetstream';
import { closeNats, connectNats } from '../jetstream/connection.ts';
import { startOpsServer } from '../observability/http-server.ts';
import { createLogger, type Logger } from '../observability/logger.ts';
import { runStopSteps } from '../util/shutdown.ts';
import { createIngressApp } from './app.ts';
import { KubeAuthorizer, type Authorizer } from './auth.ts';
import type { IngressConfig } from './config.ts';
import { createIngressMetrics, type IngressMetrics } from './metrics.ts';
import { ConnectionWatch } from './publisher.ts';
import { InformerStreamDirectory, StaticStreamDirectory, type StreamDirectory } from './streams.ts';

export interface IngressServer {
  /** the producers' port */
  readonly port: number;
  readonly opsPort: number;
  readonly metrics: IngressMetrics;
  close(): Promise<void>;
}

export interface IngressOverrides {
  readonly log?: Logger;
  readonly kubeConfig?: KubeConfig;
  /** replaces the informer or static table */
  readonly streams?: StreamDirectory;
  readonly authorizer?: Authorizer;
}

function loadKubeConfig(cfg: IngressConfig): KubeConfig {
  const kc = new KubeConfig();
  if (cfg.kubeconfig === undefined) kc.loadFromCluster();
  else kc.loadFromFile(cfg.kubeconfig);
  return kc;
}

async function listen(server: Server, host: string, port: number): Promise<number> {
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  return (server.address() as AddressInfo).port;
}

function closeServer(server: Server): Promise<void> {
  return new Promise((resolve) => {
    server.close(() => {
      resolve();
    });
    server.closeIdleConnections();
  });
}

interface Kube {
  readonly streams: StreamDirectory;
  readonly authorizer: Authorizer | undefined;
  readonly stop: () => Promise<void>;
}

async function startKube(cfg: IngressConfig, o: IngressOverrides, log: Logger): Promise<Kube> {
  const needsKube = o.streams === undefined && cfg.staticStreams === undefined;
  const kubeConfig =
    needsKube || (cfg.auth && o.authorizer === undefined)
      ? (o.kubeConfig ?? loadKubeConfig(cfg))
      : undefined;
  const authorizer =
    o.authorizer ??
    (cfg.auth && kubeConfig !== undefined
      ? new KubeAuthorizer(kubeConfig, cfg.authCacheMs, cfg.authAudiences)
      : undefined);
  if (o.streams !== undefined)
    return { streams: o.streams, authorizer, stop: () => Promise.resolve() };
  if (cfg.staticStreams !== undefined || kubeConfig === undefined) {
    return {
      streams: new StaticStreamDirectory(cfg.staticStreams ?? []),
      authorizer,
      stop: () => Promise.resolve(),
    };
  }
  const informer = new InformerStreamDirectory(kubeConfig, log);
  await informer.start();
  return { streams: informer, authorizer, stop: () => informer.stop() };
}

export async function startIngress(
  cfg: IngressConfig,
  overrides: IngressOverrides = {},
): Promise<IngressServer> {
  const log = overrides.log ?? createLogger({ level: cfg.logLevel, component: 'ingress' });
  const kube = await startKube(cfg, overrides, log);
  // no async traces: an Error with a stack trace per PubAck request was a quarter of the CPU
  const nc = await connectNats(cfg.nats, log, { noAsyncTraces: true });
  const connection = new ConnectionWatch(nc, log);
  const metrics = createIngressMetrics();
  const app = createIngressApp({
    streams: kube.streams,
    js: jetstream(nc),
    connection,
    serverMaxPayload: () => nc.info?.max_payload,
    authorizer: kube.authorizer,
    maxBodyBytes: cfg.maxBodyBytes,
    publishTimeoutMs: cfg.publishTimeoutMs,
    retryAfterSeconds: cfg.retryAfterSeconds,
    metrics,
    log,
  });
  const server = createServer(app);
  const port = await listen(server, cfg.host, cfg.port);
  const ops = await startOpsServer({
    host: cfg.opsHost,
    port: cfg.opsPort,
    registry: metrics.registry,
    readiness: {
      nats: () =>
        connection.connected()
          ? { ready: true }
          : { ready: false, reason: 'not connected to NATS' },
      streams: () => kube.streams.ready(),
    },
    log,
  });
  log.info({ host: cfg.host, port, auth: kube.authorizer !== undefined }, 'ingress listening');
  return {
    port,
    opsPort: ops.port,
    metrics,
    // ends within the publish timeout + 5 s even when NATS or the API server is gone
    close: async () => {
      const unfinished = await runStopSteps(
        [
          {
            name: 'finish requests in progress',
            timeoutMs: cfg.publishTimeoutMs + 1_000,
            run: () => closeServer(server),
          },
          { name: 'close the ops server', timeoutMs: 1_000, run: () => ops.close() },
          { name: 'stop the stream directory', timeoutMs: 1_000, run: () => kube.stop() },
          {
            name: 'close the NATS connection',
            timeoutMs: 2_500,
            run: () => closeNats(nc, log, 2_000),
          },
        ],
        log,
      );
      // requests still open past their deadline are cut
      server.closeAllConnections();
      log.info({ unfinished }, 'ingress stopped');
    },
  };
}
