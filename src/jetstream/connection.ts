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
import { settleWithin } from '../util/shutdown.ts';

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

/** How long connecting to one server may take before the next one is tried. */
export const HANDSHAKE_TIMEOUT_MS = 2_000;

/** Whether each connection made by connectNats is connected now (false while reconnecting). */
const connected = new WeakMap<NatsConnection, boolean>();

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
      // the handshake with one server (nats.js waits 20 s by default, nats.go 2 s): a server
      // that is shutting down still accepts TCP connections for a while without serving
      // them, and a reconnection that tries it first should move on to the others quickly
      timeout: HANDSHAKE_TIMEOUT_MS,
      ...(opts.noAsyncTraces === true ? { noAsyncTraces: true } : {}),
      ...(await authOptions(cfg)),
      ...(cfg.tls ? { tls: { ...cfg.tls } } : {}),
    });
  } catch (err) {
    throw new Error(`cannot connect to NATS at ${cfg.servers.join(',')}`, { cause: err });
  }
  connected.set(nc, true);
  void (async () => {
    for await (const s of nc.status()) {
      if (s.type === 'disconnect') connected.set(nc, false);
      if (s.type === 'reconnect') connected.set(nc, true);
      if (s.type === 'disconnect' || s.type === 'reconnect' || s.type === 'error') {
        log.warn({ status: s.type, server: nc.getServer() }, 'nats connection status');
      }
    }
  })();
  log.info({ server: nc.getServer() }, 'connected to nats');
  return nc;
}

/**
 * Closes a connection within `timeoutMs`. A connected one is drained first (subscriptions
 * end, pending publishes and acks are flushed). drain() waits for the server to answer a
 * PING, which a connection that lost its server (reconnecting) never gets: drained then, it
 * would wait forever. Such a connection, or one whose drain does not finish in time, is
 * closed at once instead; whatever it still buffered is lost, as it would be in a crash.
 */
export async function closeNats(nc: NatsConnection, log: Logger, timeoutMs = 3_000): Promise<void> {
  if (nc.isClosed()) return;
  if (connected.get(nc) !== false) {
    const drained = await settleWithin(nc.drain(), timeoutMs);
    if (drained.kind === 'done') return;
    log.warn(
      drained.kind === 'failed' ? { err: drained.err } : { timeoutMs },
      'draining the NATS connection did not finish; closing it',
    );
  } else {
    log.warn({ server: nc.getServer() }, 'NATS is unreachable; closing the connection undrained');
  }
  await nc.close();
}
