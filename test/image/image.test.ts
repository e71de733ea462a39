// The image, built from the Dockerfile with podman (scripts/build-image.sh; a stand-in base
// image when no registry is reachable), runs each component as a non-root user with a
// read-only root filesystem and answers /healthz. Components reach a real kube-apiserver
// and nats-server on the host network, with the admin kubeconfig mounted read-only.
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { chmod, copyFile, mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { installCrds } from '../harness/crds.ts';
import {
  freePort,
  harnessTools,
  startControlPlane,
  startNats,
  waitFor,
  type ControlPlane,
  type NatsServer,
} from '../harness/index.ts';

const run = promisify(execFile);
const root = join(import.meta.dirname, '..', '..');
const tag = 'localhost/eventwire:test';

describe('the eventwire image', () => {
  let plane: ControlPlane;
  let nats: NatsServer;
  const children: ChildProcess[] = [];
  // a copy the container's user 65532 can read (the original is 0600, owned by this user)
  let kubeconfig = '';

  beforeAll(async () => {
    await run(join(root, 'scripts', 'podman-setup.sh'));
    await run(join(root, 'scripts', 'build-image.sh'), [tag], {
      cwd: root,
      maxBuffer: 64 * 1024 * 1024,
    });
    const tools = await harnessTools();
    plane = await startControlPlane({ tools, controllerManager: false });
    nats = await startNats({ tool: tools['nats-server'] });
    await installCrds(plane.kubeConfig);
    kubeconfig = join(await mkdtemp(join(tmpdir(), 'eventwire-image-')), 'kubeconfig');
    await copyFile(plane.kubeconfigPath, kubeconfig);
    await chmod(kubeconfig, 0o644);
  });
  afterAll(async () => {
    for (const c of children) c.kill('SIGTERM');
    await run('podman', ['rm', '-f', '--filter', 'label=eventwire-image-test']).catch(
      () => undefined,
    );
    await plane.stop();
    await nats.dispose();
  });

  it('runs as a non-root user and holds only production dependencies', async () => {
    const { stdout } = await run('podman', [
      'image',
      'inspect',
      tag,
      '--format',
      '{{.Config.User}}',
    ]);
    expect(stdout.trim()).toBe('65532:65532');
    const ls = await run('podman', [
      'run',
      '--rm',
      '--read-only',
      '--entrypoint',
      'node',
      tag,
      '-e',
      "const fs=require('fs');console.log(JSON.stringify({uid:process.getuid(),vitest:fs.existsSync('/app/node_modules/vitest'),ts:fs.existsSync('/app/node_modules/typescript'),dist:fs.existsSync('/app/dist/src/cli/main.js'),v:process.version}))",
    ]);
    const facts = JSON.parse(ls.stdout) as Record<string, unknown>;
    expect(facts).toMatchObject({ uid: 65532, vitest: false, ts: false, dist: true });
    expect(String(facts.v)).toMatch(/^v24\./);
  });

  it.each(['controller', 'dispatcher', 'ingress'])(
    'starts the %s read-only and answers /healthz',
    async (component) => {
      const ops = await freePort();
      const env = {
        KUBECONFIG: '/etc/eventwire/kubeconfig',
        EVENTWIRE_NATS_URL: nats.url,
        EVENTWIRE_OPS_HOST: '127.0.0.1',
        EVENTWIRE_OPS_PORT: String(ops),
        EVENTWIRE_INGRESS_HOST: '127.0.0.1',
        EVENTWIRE_INGRESS_PORT: String(await freePort()),
        EVENTWIRE_LEADER_ELECT: 'false',
      };
      const child = spawn(
        'podman',
        [
          'run',
          '--rm',
          '--read-only',
          '--network=host',
          '--user',
          '65532:65532',
          '--label',
          'eventwire-image-test',
          '--tmpfs',
          '/tmp',
          '--cap-drop=ALL',
          '--security-opt',
          'no-new-privileges',
          '-v',
          `${kubeconfig}:/etc/eventwire/kubeconfig:ro`,
          ...Object.entries(env).flatMap(([k, v]) => ['-e', `${k}=${v}`]),
          tag,
          component,
        ],
        { stdio: 'ignore' },
      );
      children.push(child);
      await waitFor(
        `${component} /healthz`,
        async () =>
          (await fetch(`http://127.0.0.1:${String(ops)}/healthz`).catch(() => undefined))
            ?.status === 200,
        { timeoutMs: 60_000, intervalMs: 500 },
      );
      expect((await fetch(`http://127.0.0.1:${String(ops)}/metrics`)).status).toBe(200);
      child.kill('SIGTERM');
    },
  );
});
