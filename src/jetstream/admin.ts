// JetStream administration edges used by the controller: look-ups that answer undefined for
// "not found" and errors wrapped with what was being done.
import {
  JetStreamApiCodes,
  JetStreamApiError,
  type ConsumerConfig,
  type ConsumerInfo,
  type JetStreamManager,
  type StreamConfig,
  type StreamInfo,
} from '@nats-io/jetstream';
import { OWNER_METADATA_KEY } from './stream-plan.ts';

export class JetStreamAdminError extends Error {
  /** true when a retry may succeed (no responders, timeouts, cluster elections) */
  readonly transient: boolean;

  constructor(message: string, transient: boolean, cause: unknown) {
    super(message, { cause });
    this.name = 'JetStreamAdminError';
    this.transient = transient;
  }
}

function apiCode(err: unknown): number | undefined {
  return err instanceof JetStreamApiError ? err.code : undefined;
}

function wrap(what: string, err: unknown): JetStreamAdminError {
  // an API error is JetStream refusing the request; anything else is connectivity
  const refused = err instanceof JetStreamApiError && err.status >= 400 && err.status < 500;
  const detail = err instanceof Error ? err.message : String(err);
  return new JetStreamAdminError(`${what}: ${detail}`, !refused, err);
}

export class JetStreamAdmin {
  private readonly jsm: JetStreamManager;

  constructor(jsm: JetStreamManager) {
    this.jsm = jsm;
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
