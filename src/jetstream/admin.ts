// JetStream administration edges used by the controller: look-ups that answer undefined for
// "not found", errors wrapped with what was being done (and JetStream's error code), and how
// many servers with JetStream the NATS cluster has, for a stream whose replicas do not fit.
import {
  JetStreamApiCodes,
  JetStreamApiError,
  type ConsumerConfig,
  type ConsumerInfo,
  type JetStreamManager,
  type StreamConfig,
  type StreamInfo,
} from '@nats-io/jetstream';
import { BaseApiClientImpl } from '@nats-io/jetstream/internal';
import { OWNER_METADATA_KEY, type JetStreamServers } from './stream-plan.ts';

export class JetStreamAdminError extends Error {
  /** true when a retry may succeed (no responders, timeouts, cluster elections) */
  readonly transient: boolean;
  /** JetStream's error code (err_code) when JetStream answered with an error */
  readonly code: number | undefined;

  constructor(message: string, transient: boolean, cause: unknown, code?: number) {
    super(message, { cause });
    this.name = 'JetStreamAdminError';
    this.transient = transient;
    this.code = code;
  }
}

function apiCode(err: unknown): number | undefined {
  return err instanceof JetStreamApiError ? err.code : undefined;
}

function wrap(what: string, err: unknown): JetStreamAdminError {
  // an API error is JetStream refusing the request; anything else is connectivity
  const refused = err instanceof JetStreamApiError && err.status >= 400 && err.status < 500;
  const detail = err instanceof Error ? err.message : String(err);
  return new JetStreamAdminError(`${what}: ${detail}`, !refused, err, apiCode(err));
}

/** Every server answers this with its statistics, also those without connections of ours. */
const STATZ_PING = '$SYS.REQ.ACCOUNT.PING.STATZ';

interface StatzReply {
  readonly server?: { readonly cluster?: string; readonly jetstream?: boolean };
}

export class JetStreamAdmin {
  private readonly jsm: JetStreamManager;
  private readonly nc: BaseApiClientImpl['nc'] | undefined;

  constructor(jsm: JetStreamManager) {
    this.jsm = jsm;
    // nats.js's manager is a BaseApiClientImpl holding its connection
    this.nc = jsm instanceof BaseApiClientImpl ? jsm.nc : undefined;
  }

  /**
   * The servers with JetStream in the cluster of the server this connection is on, counted
   * from the replies to an account STATZ ping (which every server answers, within 2 s);
   * undefined when none answered (the account may not publish the ping).
   */
  async jetStreamServers(): Promise<JetStreamServers | undefined> {
    const nc = this.nc;
    if (nc === undefined) return undefined;
    const cluster = nc.info?.cluster;
    let servers = 0;
    try {
      const replies = await nc.requestMany(STATZ_PING, JSON.stringify({ include_unused: true }), {
        strategy: 'stall',
        stall: 300,
        maxWait: 2_000,
      });
      for await (const m of replies) {
        const server = m.json<StatzReply>().server;
        if (server?.jetstream === true && server.cluster === cluster) servers += 1;
      }
    } catch {
      return undefined; // no responders, or a permissions error: the size is unknown
    }
    return servers > 0 ? { cluster, servers } : undefined;
  }

  async streamInfo(name: string): Promise<StreamInfo | undefined> {
    try {
      return await this.jsm.streams.info(name);
    } catch (err) {
      if (apiCode(err) === JetStreamApiCodes.StreamNotFound) return undefined;
      throw wrap(`reading stream ${name}`, err);
    }
  }

  async addStream(cfg: Partial<StreamConfig> & { name: string }): Promise<StreamInfo> {
    try {
      return await this.jsm.streams.add(cfg);
    } catch (err) {
      throw wrap(`creating stream ${cfg.name}`, err);
    }
  }

  async updateStream(cfg: Partial<StreamConfig> & { name: string }): Promise<StreamInfo> {
    try {
      return await this.jsm.streams.update(cfg.name, cfg);
    } catch (err) {
      throw wrap(`updating stream ${cfg.name}`, err);
    }
  }

  async deleteStream(name: string): Promise<void> {
    try {
      await this.jsm.streams.delete(name);
    } catch (err) {
      if (apiCode(err) === JetStreamApiCodes.StreamNotFound) return;
      throw wrap(`deleting stream ${name}`, err);
    }
  }

  async consumerInfo(stream: string, name: string): Promise<ConsumerInfo | undefined> {
    try {
      return await this.jsm.consumers.info(stream, name);
    } catch (err) {
      const code = apiCode(err);
      if (
        code === JetStreamApiCodes.ConsumerNotFound ||
        code === JetStreamApiCodes.StreamNotFound
      ) {
        return undefined;
      }
      throw wrap(`reading consumer ${stream}/${name}`, err);
    }
  }

  async addConsumer(stream: string, cfg: Partial<ConsumerConfig>): Promise<ConsumerInfo> {
    try {
      return await this.jsm.consumers.add(stream, cfg);
    } catch (err) {
      throw wrap(`creating consumer ${stream}/${cfg.durable_name ?? ''}`, err);
    }
  }

  async updateConsumer(stream: string, cfg: Partial<ConsumerConfig>): Promise<ConsumerInfo> {
    const name = cfg.durable_name ?? cfg.name ?? '';
    try {
      return await this.jsm.consumers.update(stream, name, cfg);
    } catch (err) {
      throw wrap(`updating consumer ${stream}/${name}`, err);
    }
  }

  /** Names of the stream's consumers whose eventwire owner metadata is `owner`. */
  async consumersOwnedBy(stream: string, owner: string): Promise<string[]> {
    const names: string[] = [];
    try {
      for await (const ci of this.jsm.consumers.list(stream)) {
        if (ci.config.metadata?.[OWNER_METADATA_KEY] === owner) names.push(ci.name);
      }
    } catch (err) {
      if (apiCode(err) === JetStreamApiCodes.StreamNotFound) return [];
      throw wrap(`listing consumers of ${stream}`, err);
    }
    return names;
  }

  async deleteConsumer(stream: string, name: string): Promise<void> {
    try {
      await this.jsm.consumers.delete(stream, name);
    } catch (err) {
      const code = apiCode(err);
      if (
        code === JetStreamApiCodes.ConsumerNotFound ||
        code === JetStreamApiCodes.StreamNotFound
      ) {
        return;
      }
      throw wrap(`deleting consumer ${stream}/${name}`, err);
    }
  }
}
