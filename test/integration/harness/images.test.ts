// The images a local Kubernetes node runs, built with podman on this machine (no registry):
// each tarball is a docker-archive naming its image, the pause image is a working sandbox,
// the NATS stand-in runs as the chart runs it, the Node stand-in runs a shop handler as
// examples/shop/k8s/handlers.yaml does, and a second call reuses what did not change.
import { execFile, spawn } from 'node:child_process';
import { chmod, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseAllDocuments } from 'yaml';
import { buildLocalImages, PAUSE_IMAGE, type LocalImage } from '../../../src/devenv/images.ts';
import type { ResolvedTools } from '../../../src/devenv/tools.ts';
import { freePort, harnessTools, waitFor } from '../../harness/index.ts';

const run = promisify(execFile);
const root = join(import.meta.dirname, '..', '..', '..');
// a tag of its own; the layers are shared with every other build of the Dockerfile
const eventwireRef = 'localhost/eventwire:images-test';
const label = 'eventwire-images-test';

async function podman(args: readonly string[]): Promise<string> {
  return (await run('podman', [...args], { maxBuffer: 16 * 1024 * 1024 })).stdout;
}

/** The image the chart's NATS StatefulSet names, and its nats.conf, as helm renders them. */
async function chartNats(tools: ResolvedTools): Promise<{ image: string; conf: string }> {
  const { stdout } = await run(tools.helm.path, [
    'template',
    't',
    join(root, 'charts', 'eventwire'),
    '--show-only',
    'templates/nats.yaml',
  ]);
  let image = '';
  let conf = '';
  for (const doc of parseAllDocuments(stdout)) {
    const obj = doc.toJS() as {
      kind?: string;
      data?: Record<string, string>;
      spec?: { template?: { spec?: { containers?: { image?: string }[] } } };
    } | null;
    if (obj?.kind === 'ConfigMap') conf = obj.data?.['nats.conf'] ?? '';
    if (obj?.kind === 'StatefulSet') image = obj.spec?.template?.spec?.containers?.[0]?.image ?? '';
  }
  return { image, conf };
}

// the restricted Pod Security Standard the chart and the shop use, in podman's words
const restricted = ['--read-only', '--cap-drop', 'all', '--security-opt', 'no-new-privileges'];

/**
 * Runs a container on the host network until `url` answers 2xx, then `whileUp`, then removes
 * it; fails with the container's log.
 */
async function runUntil(
  what: string,
  flags: readonly string[],
  imageAndArgs: readonly string[],
  url: string,
  whileUp: () => Promise<void> = () => Promise.resolve(),
): Promise<void> {
  const name = `${label}-${what}-${process.pid}`;
  const base = ['run', '-d', '--name', name, '--label', label, '--network', 'host'];
  await podman([...base, ...flags, ...imageAndArgs]);
  try {
    try {
      await waitFor(`${what} to answer ${url}`, async () => (await fetch(url)).ok, {
        timeoutMs: 20_000,
        intervalMs: 200,
      });
    } catch (err) {
      const logs = await run('podman', ['logs', name]).catch(() => ({ stdout: '', stderr: '' }));
      throw new Error(`${what}: ${logs.stdout}${logs.stderr}`, { cause: err });
    }
    await whileUp();
  } finally {
    await podman(['rm', '-f', name]).catch(() => undefined);
  }
}

describe('the local node images (buildLocalImages)', () => {
  let tools: ResolvedTools;
  let cacheDir: string;
  let images: readonly LocalImage[];
  const firstLog: string[] = [];

  beforeAll(async () => {
    await run(join(root, 'scripts', 'podman-setup.sh'));
    tools = await harnessTools();
    cacheDir = await mkdtemp(join(tmpdir(), 'eventwire-images-'));
    // the eventwire image is built too: when `npm run test:image` ran first (as in CI) or
    // any build of the Dockerfile did, podman's layer cache makes it a matter of seconds
    images = await buildLocalImages({
      repoRoot: root,
      cacheDir,
      eventwireRef,
      tools,
      log: (line) => firstLog.push(line),
    });
  }, 600_000);

  afterAll(async () => {
    await podman(['rm', '-f', '--filter', `label=${label}`]).catch(() => undefined);
    await podman(['rmi', eventwireRef]).catch(() => undefined);
    await rm(cacheDir, { recursive: true, force: true });
  });

  it('gives pause first, then eventwire, the chart NATS image and the shop handlers image, each a docker-archive naming its image', async () => {
    const { image: natsImage } = await chartNats(tools);
    expect(natsImage).toMatch(/^nats:/);
    const handlers = await readFile(join(root, 'examples', 'shop', 'k8s', 'handlers.yaml'), 'utf8');
    expect(handlers).toContain('image: node:24-alpine');
    // the names kubelet and containerd resolve those short names to
    expect(images.map((i) => i.ref)).toEqual([
      PAUSE_IMAGE,
      eventwireRef,
      `docker.io/library/${natsImage}`,
      'docker.io/library/node:24-alpine',
    ]);
    for (const { ref, archive } of images) {
      expect(archive.startsWith(cacheDir)).toBe(true);
      const { stdout: list } = await run('tar', ['-tf', archive]);
      expect(list.split('\n')).toContain('manifest.json');
      const { stdout: manifest } = await run('tar', ['-xOf', archive, 'manifest.json']);
      const tags = (JSON.parse(manifest) as { RepoTags: string[] }[]).flatMap((m) => m.RepoTags);
      expect(tags).toEqual([ref]);
    }
    expect(firstLog).toHaveLength(4);
    // one line per image: its ref, the tarball's size, and saved (a fresh cache)
    for (const [i, line] of firstLog.entries()) {
      expect(line.startsWith(`[images] ${images[i]?.ref ?? '?'} `)).toBe(true);
      expect(line).toMatch(/ \d+\.\d MB saved /);
    }
  });

  it('pause runs as a sandbox and exits 0 on SIGTERM', async () => {
    const name = `${label}-pause-${process.pid}`;
    const child = spawn('podman', ['run', '--rm', '--name', name, '--label', label, PAUSE_IMAGE], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let output = '';
    child.stdout.on('data', (c: Buffer) => (output += c.toString()));
    child.stderr.on('data', (c: Buffer) => (output += c.toString()));
    const exited = new Promise<number | null>((res) => child.on('exit', res));
    const state = ['container', 'inspect', '--format', '{{.State.Status}}', name];
    await waitFor(
      'the pause container to run',
      async () => (await podman(state)).trim() === 'running',
      {
        timeoutMs: 20_000,
        intervalMs: 200,
      },
    );
    await podman(['kill', '--signal', 'TERM', name]);
    expect(await exited).toBe(0);
    expect(output).toContain('Shutting down, got signal');
  });

  it('the NATS stand-in is the pinned nats-server and serves JetStream with the chart config, user and read-only root', async () => {
    const natsRef = images[2]?.ref ?? '';
    const version = await podman(['run', '--rm', '--label', label, natsRef, '--version']);
    expect(version.trim()).toBe(`nats-server: ${tools['nats-server'].version}`);
    const { conf } = await chartNats(tools);
    // host network here: the chart's ports become free ones, the rest is the chart's config
    const [port, monitor] = [await freePort(), await freePort()];
    expect(conf).toMatch(/^\s*port: 4222$/m);
    expect(conf).toMatch(/^\s*http_port: 8222$/m);
    const dir = await mkdtemp(join(tmpdir(), 'eventwire-images-nats-'));
    const ours = conf
      .replace(/^(\s*)port: 4222$/m, `$1port: ${port}`)
      .replace(/^(\s*)http_port: 8222$/m, `$1http_port: ${monitor}`);
    await writeFile(join(dir, 'nats.conf'), ours);
    // readable by the container's user, as a ConfigMap's files are
    await chmod(dir, 0o755);
    try {
      // as the chart runs it: uid/gid 65532, an emptyDir at /data, the ConfigMap at
      // /etc/nats, args --config /etc/nats/nats.conf, probed at its liveness probe's URL
      await runUntil(
        'nats',
        [...restricted, '--user', '65532:65532', '--tmpfs', '/data', '-v', `${dir}:/etc/nats:ro`],
        [natsRef, '--config', '/etc/nats/nats.conf'],
        `http://127.0.0.1:${monitor}/healthz?js-enabled-only=true`,
        async () => {
          const varz = (await (await fetch(`http://127.0.0.1:${monitor}/varz`)).json()) as {
            port: number;
            jetstream?: { config?: { store_dir?: string } };
          };
          expect(varz.port).toBe(port);
          expect(varz.jetstream?.config?.store_dir).toMatch(/^\/data/);
        },
      );
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('the Node stand-in runs node 24 as uid 1000 and serves a shop handler as handlers.yaml runs it', async () => {
    const nodeRef = images[3]?.ref ?? '';
    const script = 'console.log(process.getuid(), process.version)';
    const asNode = [...restricted, '--user', '1000'];
    const out = await podman([
      'run',
      '--rm',
      '--label',
      label,
      ...asNode,
      nodeRef,
      'node',
      '-e',
      script,
    ]);
    expect(out.trim()).toMatch(/^1000 v24\.\d+\.\d+$/);
    // the Deployment: uid 1000, read-only root, the handlers' sources at /app, node /app/x.ts
    const port = await freePort();
    const handlers = join(root, 'examples', 'shop', 'handlers');
    const env = ['-e', `PORT=${port}`, '-e', 'HOST=127.0.0.1'];
    await runUntil(
      'handler',
      [...asNode, '-v', `${handlers}:/app:ro`, ...env],
      [nodeRef, 'node', '/app/product.ts'],
      `http://127.0.0.1:${port}/healthz`,
    );
  });

  it('a second call reuses the pause and stand-in tarballs', async () => {
    const before = await Promise.all(images.map(async (i) => (await stat(i.archive)).mtimeMs));
    const log: string[] = [];
    const again = await buildLocalImages({
      repoRoot: root,
      cacheDir,
      eventwireRef,
      tools,
      log: (line) => log.push(line),
    });
    expect(again).toEqual(images);
    for (const [i, image] of images.entries()) {
      if (image.ref === eventwireRef) continue; // rebuilt every call; the tree may have changed
      expect(log[i]).toMatch(/ reused /);
      expect((await stat(image.archive)).mtimeMs).toBe(before[i]);
    }
  }, 300_000);
});
