// A real nats-server with JetStream on free loopback ports and a temporary store,
// which can be stopped, killed (SIGKILL) and restarted on the same store for fault tests;
// and a three-node JetStream cluster variant.
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { ManagedProcess, RunDir, freePort, waitFor } from './processes.ts';
import type { ResolvedTool } from './tools.ts';

export interface NatsOptions {
  readonly tool: ResolvedTool;
  readonly startTimeoutMs?: number;
}

export interface NatsServer {
  /** the server_name, as JetStream reports it (a stream's cluster.leader, its replicas) */
  readonly name: string;
  /** nats://127.0.0.1:<port> */
  readonly url: string;
  readonly port: number;
  /** http://127.0.0.1:<port> of the monitoring endpoints (/healthz, /varz, /connz, /jsz) */
  readonly monitorUrl: string;
  readonly storeDir: string;
  /** the run directory: configuration, store and log */
  readonly runDir: string;
  readonly version: string;
  readonly running: boolean;
  /** graceful stop (SIGTERM); the store is kept for restart() */
  stop(): Promise<void>;
  /** SIGKILL, as a crash; the store is kept for restart() */
  kill(): Promise<void>;
  /** start again on the same port and store */
  restart(): Promise<void>;
  /**
   * Whether the server answers its full health check: JetStream is enabled, it knows the
   * meta leader and every stream and consumer replica it holds has caught up.
   */
  caughtUp(): Promise<boolean>;
  /** caughtUp(), polled until true (a restarted cluster member replaying what it missed) */
  waitCaughtUp(timeoutMs?: number): Promise<void>;
  /** stop and remove the store */
  dispose(): Promise<void>;
}

export interface NatsCluster {
  readonly servers: readonly NatsServer[];
  /** every member's URL, for a client's server list */
  readonly urls: readonly string[];
  dispose(): Promise<void>;
}

interface NodeConfig {
  readonly name: string;
  readonly port: number;
  readonly monitorPort: number;
  readonly storeDir: string;
  readonly cluster?: { readonly name: string; readonly port: number; readonly routes: string[] };
}

function configText(node: NodeConfig): string {
  const lines = [
    `server_name: ${JSON.stringify(node.name)}`,
    'host: "127.0.0.1"',
    `port: ${node.port}`,
    'http: "127.0.0.1:' + String(node.monitorPort) + '"',
    `jetstream { store_dir: ${JSON.stringify(node.storeDir)} }`,
  ];
  if (node.cluster) {
    lines.push(
      'cluster {',
      `  name: ${JSON.stringify(node.cluster.name)}`,
      `  listen: "127.0.0.1:${node.cluster.port}"`,
      `  routes: [${node.cluster.routes.map((r) => JSON.stringify(r)).join(', ')}]`,
      '}',
    );
  }
  return `${lines.join('\n')}\n`;
}

async function healthy(monitorPort: number, full = false): Promise<boolean> {
  const query = full ? '' : '?js-enabled-only=true';
  const res = await fetch(`http://127.0.0.1:${monitorPort}/healthz${query}`);
  return res.ok;
}

async function versionOf(monitorPort: number): Promise<string> {
  const res = await fetch(`http://127.0.0.1:${monitorPort}/varz`);
  return ((await res.json()) as { version: string }).version;
}

class LocalNatsServer implements NatsServer {
  readonly name: string;
  readonly url: string;
  readonly port: number;
  readonly monitorUrl: string;
  readonly storeDir: string;
  readonly runDir: string;
  version = '';
  private proc: ManagedProcess | undefined;
  private readonly configFile: string;
  private readonly opts: NatsOptions;
  private readonly run: RunDir;
  private readonly node: NodeConfig;
  private readonly ownsRunDir: boolean;

  constructor(opts: NatsOptions, run: RunDir, node: NodeConfig, ownsRunDir: boolean) {
    this.opts = opts;
    this.run = run;
    this.node = node;
    this.ownsRunDir = ownsRunDir;
    this.name = node.name;
    this.port = node.port;
    this.url = `nats://127.0.0.1:${node.port}`;
    this.monitorUrl = `http://127.0.0.1:${node.monitorPort}`;
    this.storeDir = node.storeDir;
    this.runDir = run.path;
    this.configFile = join(run.path, `${node.name}.conf`);
  }

  get running(): boolean {
    return this.proc?.running ?? false;
  }

  async start(waitHealthy = true): Promise<void> {
    await mkdir(this.storeDir, { recursive: true });
    await writeFile(this.configFile, configText(this.node));
    this.proc = new ManagedProcess({
      name: this.node.name,
      bin: this.opts.tool.path,
      runDir: this.run,
      args: ['-c', this.configFile],
    });
    if (waitHealthy) await this.waitHealthy();
  }

  async waitHealthy(): Promise<void> {
    const proc = this.proc;
    await waitFor(`${this.node.name} JetStream health`, () => healthy(this.node.monitorPort), {
      timeoutMs: this.opts.startTimeoutMs ?? 30_000,
      ...(proc ? { proc } : {}),
    });
    this.version = await versionOf(this.node.monitorPort);
  }

  async caughtUp(): Promise<boolean> {
    if (!this.running) return false;
    try {
      return await healthy(this.node.monitorPort, true);
    } catch {
      return false; // not listening yet
    }
  }

  async waitCaughtUp(timeoutMs = 60_000): Promise<void> {
    const proc = this.proc;
    await waitFor(`${this.node.name} caught up (/healthz)`, () => this.caughtUp(), {
      timeoutMs,
      ...(proc ? { proc } : {}),
    });
  }

  async stop(): Promise<void> {
    await this.proc?.stop();
  }

  async kill(): Promise<void> {
    await this.proc?.kill();
  }

  async restart(): Promise<void> {
    if (this.running) await this.stop();
    await this.start();
  }

  async dispose(): Promise<void> {
    await this.stop();
    if (this.ownsRunDir) await this.run.remove();
  }
}

/** Start one nats-server with JetStream and wait until JetStream answers. */
export async function startNats(opts: NatsOptions): Promise<NatsServer> {
  const run = await RunDir.create('nats');
  const node: NodeConfig = {
    name: 'nats-0',
    port: await freePort(),
    monitorPort: await freePort(),
    storeDir: join(run.path, 'store'),
  };
  const server = new LocalNatsServer(opts, run, node, true);
  try {
    await server.start();
  } catch (err) {
    await server.dispose();
    throw new Error(`nats-server did not start (logs in ${run.path})`, { cause: err });
  }
  return server;
}

/** Start a JetStream cluster of `size` nodes (3 by default) and wait until each is healthy. */
export async function startNatsCluster(
  opts: NatsOptions & { size?: number },
): Promise<NatsCluster> {
  const run = await RunDir.create('nats-cluster');
  const size = opts.size ?? 3;
  const clusterPorts = await Promise.all(Array.from({ length: size }, () => freePort()));
  const routes = clusterPorts.map((p) => `nats-route://127.0.0.1:${p}`);
  const servers: LocalNatsServer[] = [];
  for (let i = 0; i < size; i += 1) {
    const node: NodeConfig = {
      name: `nats-${i}`,
      port: await freePort(),
      monitorPort: await freePort(),
      storeDir: join(run.path, `store-${i}`),
      cluster: { name: 'eventwire', port: clusterPorts[i] ?? 0, routes },
    };
    servers.push(new LocalNatsServer(opts, run, node, false));
  }
  const dispose = async (): Promise<void> => {
    for (const s of servers) await s.stop();
    await run.remove();
  };
  try {
    // members only become healthy once a JetStream meta leader is elected, so start all first
    for (const s of servers) await s.start(false);
    for (const s of servers) await s.waitHealthy();
    // and until each knows the JetStream meta leader: before that, API requests time out
    for (const s of servers) await s.waitCaughtUp(opts.startTimeoutMs ?? 30_000);
  } catch (err) {
    await dispose();
    throw new Error(`the nats cluster did not start (logs in ${run.path})`, { cause: err });
  }
  return { servers, urls: servers.map((s) => s.url), dispose };
}
