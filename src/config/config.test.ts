import { describe, expect, it } from 'vitest';
import { parseControllerConfig } from '../controller/config.ts';
import { parseDispatcherConfig } from '../dispatcher/config.ts';
import { parseIngressConfig } from '../ingress/config.ts';
import { parseCommonConfig } from './common.ts';
import { ConfigError } from './env.ts';

describe('configuration from the environment', () => {
  it('applies the documented defaults', () => {
    const c = parseCommonConfig({}, 'dispatcher', 8080);
    expect(c).toEqual({
      nats: { servers: ['nats://127.0.0.1:4222'], name: 'eventwire-dispatcher' },
      logLevel: 'info',
      opsHost: '0.0.0.0',
      opsPort: 8080,
    });
    expect(parseIngressConfig({}).opsPort).toBe(8081);
    const ctl = parseControllerConfig({});
    expect(ctl.resyncMs).toBe(30_000);
    expect(ctl.leaderElection).toMatchObject({ enabled: true, leaseDurationMs: 15_000 });
    expect(parseDispatcherConfig({}).gracePeriodMs).toBe(25_000);
  });

  it('reads credentials, TLS and several servers', () => {
    const c = parseCommonConfig(
      {
        EVENTWIRE_NATS_URL: 'nats://a:4222, tls://b:4222',
        EVENTWIRE_NATS_CREDS_FILE: '/secrets/nats.creds',
        EVENTWIRE_NATS_TLS_CA_FILE: '/secrets/ca.crt',
        KUBECONFIG: '/home/me/.kube/config',
      },
      'ingress',
      8081,
    );
    expect(c.nats).toMatchObject({
      servers: ['nats://a:4222', 'tls://b:4222'],
      credsFile: '/secrets/nats.creds',
      tls: { caFile: '/secrets/ca.crt' },
    });
    expect(c.kubeconfig).toBe('/home/me/.kube/config');
  });

  it('refuses bad values, naming the variable and the fix', () => {
    const cases: [Record<string, string>, string, RegExp][] = [
      [{ EVENTWIRE_OPS_PORT: '70000' }, 'EVENTWIRE_OPS_PORT', /whole number from 0 to 65535/],
      [{ EVENTWIRE_NATS_URL: 'http://x' }, 'EVENTWIRE_NATS_URL', /use nats:\/\/host:4222/],
      [{ EVENTWIRE_NATS_USER: 'u' }, 'EVENTWIRE_NATS_PASSWORD_FILE', /set both/],
      [{ EVENTWIRE_NATS_TLS_CERT_FILE: '/c' }, 'EVENTWIRE_NATS_TLS_CERT_FILE', /needs its key/],
      [{ EVENTWIRE_LEADER_ELECT: 'yes' }, 'EVENTWIRE_LEADER_ELECT', /use true or false/],
      [{ EVENTWIRE_RESYNC_PERIOD: '30' }, 'EVENTWIRE_RESYNC_PERIOD', /such as 500ms/],
      [{ EVENTWIRE_DEFAULT_STREAM: 'nostream' }, 'EVENTWIRE_DEFAULT_STREAM', /namespace\/name/],
    ];
    for (const [env, variable, fix] of cases) {
      let err: unknown;
      try {
        parseControllerConfig(env);
      } catch (e) {
        err = e;
      }
      expect(err, variable).toBeInstanceOf(ConfigError);
      expect((err as ConfigError).variable).toBe(variable);
      expect((err as Error).message).toMatch(fix);
    }
  });
});
