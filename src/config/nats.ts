// NATS connection settings: URL, credentials (creds file, nkey seed, token, user/password)
// and TLS, each read from a file path so they can come from mounted Secrets.
import { ConfigError, optionalStr, str, type Env } from './env.ts';

export interface NatsConfig {
  readonly servers: readonly string[];
  readonly name: string;
  readonly credsFile?: string;
  readonly nkeySeedFile?: string;
  readonly tokenFile?: string;
  readonly user?: string;
  readonly passwordFile?: string;
  readonly tls?: {
    readonly caFile?: string;
    readonly certFile?: string;
    readonly keyFile?: string;
  };
}

export function parseNatsConfig(env: Env, clientName: string): NatsConfig {
  const servers = str(env, 'EVENTWIRE_NATS_URL', 'nats://127.0.0.1:4222')
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
  for (const s of servers) {
    if (!/^(nats|tls|wss?):\/\/[^\s]+$/.test(s)) {
      throw new ConfigError(
        'EVENTWIRE_NATS_URL',
        `"${s}" is not a NATS URL; use nats://host:4222 (comma-separated for several)`,
      );
    }
  }
  const user = optionalStr(env, 'EVENTWIRE_NATS_USER');
  const passwordFile = optionalStr(env, 'EVENTWIRE_NATS_PASSWORD_FILE');
  if ((user === undefined) !== (passwordFile === undefined)) {
    throw new ConfigError(
      user === undefined ? 'EVENTWIRE_NATS_USER' : 'EVENTWIRE_NATS_PASSWORD_FILE',
      'set both EVENTWIRE_NATS_USER and EVENTWIRE_NATS_PASSWORD_FILE, or neither',
    );
  }
  const caFile = optionalStr(env, 'EVENTWIRE_NATS_TLS_CA_FILE');
  const certFile = optionalStr(env, 'EVENTWIRE_NATS_TLS_CERT_FILE');
  const keyFile = optionalStr(env, 'EVENTWIRE_NATS_TLS_KEY_FILE');
  if ((certFile === undefined) !== (keyFile === undefined)) {
    throw new ConfigError(
      'EVENTWIRE_NATS_TLS_CERT_FILE',
      'a client certificate needs its key: set both EVENTWIRE_NATS_TLS_CERT_FILE and EVENTWIRE_NATS_TLS_KEY_FILE',
    );
  }
  const optional = <K extends string, V>(k: K, v: V | undefined): Partial<Record<K, V>> =>
    v === undefined ? {} : ({ [k]: v } as Record<K, V>);
  const tls =
    (caFile ?? certFile)
      ? {
          tls: {
            ...optional('caFile', caFile),
            ...optional('certFile', certFile),
            ...optional('keyFile', keyFile),
          },
        }
      : {};
  return {
    servers,
    name: clientName,
    ...optional('credsFile', optionalStr(env, 'EVENTWIRE_NATS_CREDS_FILE')),
    ...optional('nkeySeedFile', optionalStr(env, 'EVENTWIRE_NATS_NKEY_SEED_FILE')),
    ...optional('tokenFile', optionalStr(env, 'EVENTWIRE_NATS_TOKEN_FILE')),
    ...optional('user', user),
    ...optional('passwordFile', passwordFile),
    ...tls,
  };
}
