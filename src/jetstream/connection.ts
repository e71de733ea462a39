// Connect to NATS from a NatsConfig: credentials and TLS material are read from files.
import { readFile } from 'node:fs/promises';
import {
  credsAuthenticator,
  nkeyAuthenticator,
  type ConnectionOptions,
  type NatsConnection,
} from '@nats-io/nats-core';
import { connect } from '@nats-io/transport-node';
import type { NatsConfig } from '../config/nats.ts';
import type { Logger } from '../observability/logger.ts';

async function authOptions(cfg: NatsConfig): Promise<Partial<ConnectionOptions>> {
  if (cfg.credsFile) return { authenticator: credsAuthenticator(await readFile(cfg.credsFile)) };
  if (cfg.nkeySeedFile) {
    return { authenticator: nkeyAuthenticator(await readFile(cfg.nkeySeedFile)) };
  }
  if (cfg.tokenFile) return { token: (await readFile(cfg.tokenFile, 'utf8')).trim() };
  if (cfg.user && cfg.passwordFile) {
    return { user: cfg.user, pass: (await readFile(cfg.passwordFile, 'utf8')).trim() };
  }
  return {};
}

export interface ConnectOptions {
  /**
   * nats.js builds an Error (with a stack trace) for every request up front, to give async
   * traces should it fail; at thousands of requests per second that is a large share of the
   * CPU. Off (nats.js's default) unless set.
   */
  readonly noAsyncTraces?: boolean;
}

export async function connectNats(
  cfg: NatsConfig,
  log: Logger,
  opts: ConnectOptions = {},
): Promise<NatsConnection> {
  let nc: NatsConnection;
  try {
    nc = await connect({
      servers: [...cfg.servers],
      name: cfg.name,
      maxReconnectAttempts: -1,
      reconnectTimeWait: 1_000,
      ...(opts.noAsyncTraces === true ? { noAsyncTraces: true } : {}),
      ...(await authOptions(cfg)),
      ...(cfg.tls ? { tls: { ...cfg.tls } } : {}),
    });
  } catch (err) {
    throw new Error(`cannot connect to NATS at ${cfg.servers.join(',')}`, { cause: err });
  }
  void (async () => {
    for await (const s of nc.status()) {
      if (s.type === 'disconnect' || s.type === 'reconnect' || s.type === 'error') {
        log.warn({ status: s.type, server: nc.getServer() }, 'nats connection status');
      }
    }
  })();
  log.info({ server: nc.getServer() }, 'connected to nats');
  return nc;
}
