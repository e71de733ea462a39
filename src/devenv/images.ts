// Every image a local Kubernetes node runs, assembled on this machine with podman, since no
// registry can be reached: Kubernetes' pause (the Pod sandbox), the eventwire image from the
// working tree, and stand-ins for the public images the chart and the shop example name
// (NATS, Node 24). Each is saved as a docker-archive tarball for `ctr images import`.
//
// A tarball is reused while its image's ID is unchanged (the ID is stored beside it). The
// stand-ins and pause carry a label with a fingerprint of what went into them, so they are
// imported again only when an input changes, and a second run takes seconds. The eventwire
// image is built every call; podman's layer cache makes that quick when nothing changed.
import { execFile, type ExecFileException } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  chmod,
  copyFile,
  mkdir,
  mkdtemp,
  readFile,
  readdir,
  realpath,
  rename,
  rm,
  stat,
  symlink,
  writeFile,
} from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, dirname, join } from 'node:path';
import { parse, parseAllDocuments } from 'yaml';
import { pinnedVersion, type ResolvedTools } from './tools.ts';

export interface LocalImage {
  readonly ref: string;
  /** the docker-archive tarball, for `ctr -n k8s.io images import` */
  readonly archive: string;
}

export interface LocalImagesOptions {
  /** the checkout: Dockerfile, scripts/build-image.sh, the chart, tools/go */
  readonly repoRoot: string;
  /** where tarballs and the pause binary are kept, outside the clone */
  readonly cacheDir: string;
  /** the tag the eventwire image is built as, e.g. localhost/eventwire:e2e */
  readonly eventwireRef: string;
  /** the pinned binaries (requireTools): the NATS stand-in packs this nats-server */
  readonly tools: Pick<ResolvedTools, 'nats-server'>;
  readonly log?: (line: string) => void;
}

/**
 * The sandbox (pause) image, for containerd's `sandbox_image`. Its tag is the Kubernetes
 * version pinned in tools/go/kubernetes/go.mod; buildLocalImages refuses to run when the two
 * differ, so moving Kubernetes means changing this line too. (A constant, not read from
 * go.mod at import: the CLI may load this module where tools/go is absent, as in the image.)
 */
export const PAUSE_IMAGE = 'localhost/eventwire/pause:v1.37.2';

/** The label every stand-in carries, as the stand-in of build-image.sh does. */
export const STANDIN_LABEL = 'io.eventwire.standin';
/** The label holding a fingerprint of an image's inputs; unchanged inputs: no new import. */
const INPUTS_LABEL = 'io.eventwire.inputs';
/** Bump when the way an image is assembled changes, so existing images are redone. */
const RECIPE = '1';

const STANDIN_PATH = '/usr/local/bin:/usr/bin:/bin';

// ---- child processes ----------------------------------------------------------------------

interface RunOptions {
  readonly cwd?: string;
  readonly timeoutMs?: number;
}

function tail(text: string, lines: number): string {
  return text.trimEnd().split('\n').slice(-lines).join('\n');
}

/** Runs a command; fails with the command, its exit and the tail of its output. */
function run(cmd: string, args: readonly string[], opts: RunOptions = {}): Promise<string> {
  return new Promise((resolvePromise, reject) => {
    execFile(
      cmd,
      args,
      {
        cwd: opts.cwd,
        timeout: opts.timeoutMs ?? 10 * 60_000,
        maxBuffer: 256 * 1024 * 1024,
        encoding: 'utf8',
      },
      (err: ExecFileException | null, stdout: string, stderr: string) => {
        if (!err) {
          resolvePromise(stdout);
          return;
        }
        const what = `${cmd} ${args.join(' ')}`;
        if (err.code === 'ENOENT') {
          reject(
            new Error(`${cmd} is not installed or not on PATH (needed for: ${what})`, {
              cause: err,
            }),
          );
          return;
        }
        const how = err.killed ? `killed (${err.signal ?? 'timeout'})` : `exit ${String(err.code)}`;
        const output = tail(`${stdout}\n${stderr}`, 30);
        reject(new Error(`${what} failed (${how}):\n${output}`, { cause: err }));
      },
    );
  });
}

async function imageField(ref: string, format: string): Promise<string | undefined> {
  try {
    return (await run('podman', ['image', 'inspect', '--format', format, ref])).trim();
  } catch {
    // no such image (podman's only way to say so here); the caller builds it
    return undefined;
  }
}

const imageId = (ref: string): Promise<string | undefined> => imageField(ref, '{{.Id}}');
const imageInputs = (ref: string): Promise<string | undefined> =>
  imageField(ref, `{{index .Labels "${INPUTS_LABEL}"}}`);

// ---- root filesystems ----------------------------------------------------------------------

/** The shared libraries `ldd` lists for the binaries (none for static ones). */
async function sharedLibraries(binaries: readonly string[]): Promise<string[]> {
  const libs = new Set<string>();
  for (const bin of binaries) {
    let out: string;
    try {
      out = await run('ldd', [bin]);
    } catch (err) {
      // ldd exits 1 on a static binary: nothing to copy
      if (err instanceof Error && err.message.includes('not a dynamic executable')) continue;
      throw err;
    }
    for (const line of out.split('\n')) {
      const m = /=>\s*(\/\S+)/.exec(line) ?? /^\s*(\/\S+)\s/.exec(line);
      if (m?.[1]) libs.add(m[1]);
    }
  }
  return [...libs].sort();
}

/** Copies host files into a root at the same paths (following symlinks). */
async function copyInto(root: string, files: readonly string[]): Promise<void> {
  for (const file of files) {
    await mkdir(join(root, dirname(file)), { recursive: true });
    await copyFile(file, join(root, file));
  }
}

async function writeUsers(root: string, passwd: readonly string[]): Promise<void> {
  await mkdir(join(root, 'etc'), { recursive: true });
  await writeFile(join(root, 'etc', 'passwd'), `${passwd.join('\n')}\n`);
  const groups = passwd.map((line) => {
    const [name, , , gid] = line.split(':');
    return `${name ?? ''}:x:${gid ?? ''}:`;
  });
  await writeFile(join(root, 'etc', 'group'), `${groups.join('\n')}\n`);
}

async function worldWritable(root: string, dirs: readonly string[]): Promise<void> {
  for (const dir of dirs) {
    await mkdir(join(root, dir), { recursive: true });
    await chmod(join(root, dir), 0o1777);
  }
}

/** A fingerprint of files (path, size, modification time) and other facts. */
async function fingerprint(files: readonly string[], facts: readonly string[]): Promise<string> {
  const hash = createHash('sha256').update(`recipe ${RECIPE}\n`);
  for (const fact of facts) hash.update(`${fact}\n`);
  for (const file of files) {
    const s = await stat(file);
    hash.update(`${file} ${s.size} ${s.mtimeMs}\n`);
  }
  return hash.digest('hex').slice(0, 32);
}

interface ImportSpec {
  readonly ref: string;
  readonly root: string;
  /** Dockerfile-style instructions, e.g. ENTRYPOINT ["/pause"] */
  readonly changes: readonly string[];
  readonly inputs: string;
}

/**
 * Packs a root filesystem (owned by root) and imports it as an image; the image the ref
 * named before is removed when nothing else uses it, so re-imports leave no dangling images.
 */
async function importRoot(spec: ImportSpec): Promise<void> {
  const tarball = `${spec.root}.tar`;
  const previous = await imageId(spec.ref);
  try {
    await run('tar', [
      '--owner=0',
      '--group=0',
      '--numeric-owner',
      '-C',
      spec.root,
      '-cf',
      tarball,
      '.',
    ]);
    const changes = [...spec.changes, `LABEL ${INPUTS_LABEL}=${spec.inputs}`];
    await run('podman', ['import', ...changes.flatMap((c) => ['--change', c]), tarball, spec.ref]);
  } finally {
    await rm(tarball, { force: true });
  }
  if (previous && previous !== (await imageId(spec.ref))) {
    // fails, and is left alone, while another tag or a container still uses it
    await run('podman', ['rmi', previous]).catch(() => undefined);
  }
}

/** A temporary folder for a root filesystem, removed after `use`. */
async function withRoot<T>(use: (root: string) => Promise<T>): Promise<T> {
  const parent = await mkdtemp(join(tmpdir(), 'eventwire-rootfs-'));
  try {
    return await use(join(parent, 'root'));
  } finally {
    await rm(parent, { recursive: true, force: true });
  }
}

// ---- the Node stand-in (shared with scripts/build-image.sh) ---------------------------------

export interface NodeStandinOptions {
  /** the checkout: its node_modules/node/bin/node is the Node 24 packed */
  readonly repoRoot: string;
  /** the ref to import it as, e.g. docker.io/library/node:24-bookworm-slim */
  readonly ref: string;
  /** only assemble when the image is missing or was made from other inputs */
  readonly onlyWhenChanged?: boolean;
}

export interface NodeStandin {
  readonly ref: string;
  readonly nodeVersion: string;
  readonly npmVersion: string;
  /** false when an image made from the same inputs was already there */
  readonly assembled: boolean;
}

interface NodeInputs {
  readonly node: string;
  readonly npmDir: string;
  readonly nodeVersion: string;
  readonly npmVersion: string;
  readonly hostFiles: readonly string[];
  readonly key: string;
}

/** npm's package folder: the npm on PATH is <folder>/bin/npm-cli.js behind a symlink. */
async function findNpm(): Promise<{ npmDir: string; npmVersion: string }> {
  try {
    const npmBin = (await run('sh', ['-c', 'command -v npm'])).trim();
    const npmDir = dirname(dirname(await realpath(npmBin)));
    const pkg = JSON.parse(await readFile(join(npmDir, 'package.json'), 'utf8')) as {
      name?: unknown;
      version?: unknown;
    };
    if (pkg.name !== 'npm') throw new Error(`${npmDir} is not the npm package`);
    return { npmDir, npmVersion: String(pkg.version) };
  } catch (err) {
    throw new Error('npm (on PATH) is needed for the Node stand-in and was not found', {
      cause: err,
    });
  }
}

async function nodeInputs(repoRoot: string): Promise<NodeInputs> {
  const node = join(repoRoot, 'node_modules', 'node', 'bin', 'node');
  try {
    await stat(node);
  } catch (err) {
    throw new Error(`${node} is missing: run npm ci`, { cause: err });
  }
  const { npmDir, npmVersion } = await findNpm();
  const nodeVersion = (await run(node, ['--version'])).trim();
  const tools = ['/bin/dash', '/usr/bin/env'];
  const hostFiles = [...tools, ...(await sharedLibraries([node, ...tools]))];
  const key = await fingerprint([node, ...hostFiles], [`node ${nodeVersion}`, `npm ${npmVersion}`]);
  return { node, npmDir, nodeVersion, npmVersion, hostFiles, key };
}

async function nodeRoot(root: string, inputs: NodeInputs): Promise<void> {
  await copyInto(root, inputs.hostFiles);
  await symlink('dash', join(root, 'bin', 'sh'));
  await mkdir(join(root, 'usr', 'local', 'bin'), { recursive: true });
  await copyFile(inputs.node, join(root, 'usr', 'local', 'bin', 'node'));
  await chmod(join(root, 'usr', 'local', 'bin', 'node'), 0o755);
  const npmTarget = join(root, 'usr', 'local', 'lib', 'node_modules', 'npm');
  await mkdir(dirname(npmTarget), { recursive: true });
  await run('cp', ['-r', inputs.npmDir, npmTarget]);
  await symlink('../lib/node_modules/npm/bin/npm-cli.js', join(root, 'usr', 'local', 'bin', 'npm'));
  await symlink('../lib/node_modules/npm/bin/npx-cli.js', join(root, 'usr', 'local', 'bin', 'npx'));
  await worldWritable(root, ['tmp']);
  await mkdir(join(root, 'root'), { recursive: true });
  await writeUsers(root, [
    'root:x:0:0:root:/root:/bin/sh',
    'node:x:1000:1000::/home/node:/bin/sh',
    'nonroot:x:65532:65532::/tmp:/bin/sh',
  ]);
}

/**
 * A stand-in for the official Node 24 images (node:24-bookworm-slim, node:24-alpine) from
 * this Debian machine: Node 24 of the `node` devDependency, npm, dash as /bin/sh, env and
 * the glibc libraries they need; users root, node (1000) and nonroot (65532); /tmp 1777;
 * PATH; CMD node; label io.eventwire.standin=true. scripts/build-image.sh uses it for its
 * base image, buildLocalImages for the image the shop handlers run in.
 */
export async function assembleNodeStandin(opts: NodeStandinOptions): Promise<NodeStandin> {
  const inputs = await nodeInputs(opts.repoRoot);
  const facts = { ref: opts.ref, nodeVersion: inputs.nodeVersion, npmVersion: inputs.npmVersion };
  if (opts.onlyWhenChanged && (await imageInputs(opts.ref)) === inputs.key) {
    return { ...facts, assembled: false };
  }
  await withRoot(async (root) => {
    await nodeRoot(root, inputs);
    await importRoot({
      ref: opts.ref,
      root,
      inputs: inputs.key,
      changes: [
        `ENV PATH=${STANDIN_PATH}`,
        'ENV NODE_VERSION=24',
        'CMD ["node"]',
        `LABEL ${STANDIN_LABEL}=true`,
      ],
    });
  });
  return { ...facts, assembled: true };
}

// ---- pause -------------------------------------------------------------------------------

async function kubernetesVersion(repoRoot: string): Promise<string> {
  const goMod = join(repoRoot, 'tools', 'go', 'kubernetes', 'go.mod');
  const version = pinnedVersion(await readFile(goMod, 'utf8'), 'k8s.io/kubernetes');
  if (!version) throw new Error(`${goMod} does not require k8s.io/kubernetes`);
  const tag = PAUSE_IMAGE.slice(PAUSE_IMAGE.lastIndexOf(':') + 1);
  if (tag !== version) {
    throw new Error(
      `PAUSE_IMAGE (${PAUSE_IMAGE}) does not match Kubernetes ${version} pinned in ${goMod}: change PAUSE_IMAGE in src/devenv/images.ts`,
    );
  }
  return version;
}

/** Kubernetes' pause.c at `version`, compiled static and stripped; cached by version. */
async function pauseBinary(repoRoot: string, cacheDir: string, version: string): Promise<string> {
  const binary = join(cacheDir, `pause-${version}`, 'pause');
  if (await exists(binary)) return binary;
  const wrapper = join(repoRoot, 'tools', 'go', 'kubernetes');
  const info = JSON.parse(
    await run('go', ['mod', 'download', '-json', `k8s.io/kubernetes@${version}`], { cwd: wrapper }),
  ) as { Dir?: string; Error?: string };
  if (!info.Dir) {
    throw new Error(`go mod download k8s.io/kubernetes@${version}: ${info.Error ?? 'no Dir'}`);
  }
  const source = join(info.Dir, 'build', 'pause', 'linux', 'pause.c');
  const tmp = await mkdtemp(join(cacheDir, '.tmp-pause-'));
  try {
    const out = join(tmp, 'pause');
    await run('gcc', ['-Os', '-static', `-DVERSION=${version}`, '-o', out, source]);
    await run('strip', [out]);
    const said = await run(out, ['-v']);
    if (!said.includes(version)) {
      throw new Error(`${out} -v printed ${said.trim()}, not ${version}`);
    }
    await mkdir(dirname(binary), { recursive: true });
    await rename(out, binary);
  } finally {
    await rm(tmp, { recursive: true, force: true });
  }
  return binary;
}

async function pauseImage(opts: LocalImagesOptions): Promise<void> {
  const version = await kubernetesVersion(opts.repoRoot);
  const binary = await pauseBinary(opts.repoRoot, opts.cacheDir, version);
  // by content: the same pause.c compiles to the same bytes, wherever the cache is
  const sha = createHash('sha256')
    .update(await readFile(binary))
    .digest('hex');
  const key = await fingerprint([], [`pause ${version}`, `sha256 ${sha}`]);
  if ((await imageInputs(PAUSE_IMAGE)) === key) return;
  await withRoot(async (root) => {
    await mkdir(root, { recursive: true });
    await copyFile(binary, join(root, 'pause'));
    await chmod(join(root, 'pause'), 0o755);
    await importRoot({ ref: PAUSE_IMAGE, root, inputs: key, changes: ['ENTRYPOINT ["/pause"]'] });
  });
}

// ---- the NATS stand-in --------------------------------------------------------------------

/** The full reference a container runtime resolves a short image name to. */
export function normalizeImageRef(name: string): string {
  const slash = name.indexOf('/');
  const first = slash < 0 ? '' : name.slice(0, slash);
  const hasDomain = first.includes('.') || first.includes(':') || first === 'localhost';
  let full = hasDomain ? name : `docker.io/${slash < 0 ? 'library/' : ''}${name}`;
  const last = full.slice(full.lastIndexOf('/') + 1);
  if (!last.includes(':') && !last.includes('@')) full += ':latest';
  return full;
}

/** The NATS image the chart runs (natsServer.image in charts/eventwire/values.yaml). */
export async function chartNatsImage(repoRoot: string): Promise<string> {
  const file = join(repoRoot, 'charts', 'eventwire', 'values.yaml');
  const values = parse(await readFile(file, 'utf8')) as {
    natsServer?: { image?: { repository?: unknown; tag?: unknown } };
  };
  const image = values.natsServer?.image;
  if (typeof image?.repository !== 'string' || typeof image.tag !== 'string') {
    throw new Error(`${file} has no natsServer.image.repository and tag`);
  }
  return normalizeImageRef(`${image.repository}:${image.tag}`);
}

async function natsImage(opts: LocalImagesOptions, ref: string): Promise<void> {
  const bin = opts.tools['nats-server'].path;
  const libs = await sharedLibraries([bin]);
  const key = await fingerprint([bin, ...libs], [`nats ${opts.tools['nats-server'].version}`]);
  if ((await imageInputs(ref)) === key) return;
  await withRoot(async (root) => {
    await copyInto(root, libs);
    await mkdir(join(root, 'usr', 'local', 'bin'), { recursive: true });
    await copyFile(bin, join(root, 'usr', 'local', 'bin', 'nats-server'));
    await chmod(join(root, 'usr', 'local', 'bin', 'nats-server'), 0o755);
    // the chart mounts its config at /etc/nats and an emptyDir (or a claim) at /data
    await mkdir(join(root, 'etc', 'nats'), { recursive: true });
    await worldWritable(root, ['tmp', 'data']);
    await writeUsers(root, [
      'root:x:0:0:root:/root:/sbin/nologin',
      'nonroot:x:65532:65532::/tmp:/sbin/nologin',
    ]);
    await importRoot({
      ref,
      root,
      inputs: key,
      changes: [
        `ENV PATH=${STANDIN_PATH}`,
        'ENTRYPOINT ["/usr/local/bin/nats-server"]',
        `LABEL ${STANDIN_LABEL}=true`,
      ],
    });
  });
}

// ---- the Node stand-in for the shop handlers -----------------------------------------------

/** The image examples/shop/k8s/handlers.yaml runs the handlers in (one for all of them). */
export async function shopHandlerImage(repoRoot: string): Promise<string> {
  const file = join(repoRoot, 'examples', 'shop', 'k8s', 'handlers.yaml');
  const images = new Set<string>();
  for (const doc of parseAllDocuments(await readFile(file, 'utf8'))) {
    const obj = doc.toJS() as {
      spec?: { template?: { spec?: { containers?: { image?: unknown }[] } } };
    } | null;
    for (const c of obj?.spec?.template?.spec?.containers ?? []) {
      if (typeof c.image === 'string') images.add(c.image);
    }
  }
  const [image, ...others] = images;
  if (!image || others.length > 0) {
    throw new Error(
      `${file} should run every handler in one image, found: ${[...images].join(', ') || 'none'}`,
    );
  }
  return normalizeImageRef(image);
}

// ---- archives ----------------------------------------------------------------------------

async function exists(path: string): Promise<boolean> {
  try {
    await stat(path);
    return true;
  } catch {
    return false;
  }
}

async function readOptional(path: string): Promise<string | undefined> {
  try {
    return (await readFile(path, 'utf8')).trim();
  } catch {
    return undefined;
  }
}

/** Writes a file whole or not at all. */
async function writeAtomic(path: string, text: string): Promise<void> {
  const tmp = join(dirname(path), `.tmp-${basename(path)}-${process.pid}-${Date.now()}`);
  await writeFile(tmp, text);
  await rename(tmp, path);
}

/**
 * Saves `ref` as <cacheDir>/<name>.tar, unless the tarball there was saved from the same
 * image ID (kept in <name>.id). Written under a temporary name and renamed, the ID last.
 */
async function saveArchive(
  cacheDir: string,
  name: string,
  ref: string,
): Promise<{ archive: string; reused: boolean }> {
  const archive = join(cacheDir, `${name}.tar`);
  const idFile = join(cacheDir, `${name}.id`);
  const id = await imageId(ref);
  if (!id) throw new Error(`podman has no image ${ref} after building it`);
  if ((await readOptional(idFile)) === id && (await exists(archive))) {
    return { archive, reused: true };
  }
  await rm(idFile, { force: true });
  const tmp = await mkdtemp(join(cacheDir, `.tmp-save-${name}-`));
  try {
    const out = join(tmp, `${name}.tar`);
    await run('podman', ['save', '-q', '--format', 'docker-archive', '-o', out, ref]);
    await rename(out, archive);
  } finally {
    await rm(tmp, { recursive: true, force: true });
  }
  await writeAtomic(idFile, `${id}\n`);
  return { archive, reused: false };
}

/** Removes temporary folders a killed run left (older than an hour: not a running one's). */
async function sweepStale(cacheDir: string): Promise<void> {
  const hourAgo = Date.now() - 3_600_000;
  for (const entry of await readdir(cacheDir)) {
    if (!entry.startsWith('.tmp-')) continue;
    const path = join(cacheDir, entry);
    const s = await stat(path).catch(() => undefined);
    if (s && s.mtimeMs < hourAgo) await rm(path, { recursive: true, force: true });
  }
}

function megabytes(bytes: number): string {
  return `${(bytes / 1024 / 1024).toFixed(1)} MB`;
}

// ---- all of them ---------------------------------------------------------------------------

interface Step {
  readonly name: string;
  readonly ref: string;
  readonly make: () => Promise<unknown>;
}

async function steps(opts: LocalImagesOptions): Promise<Step[]> {
  const list: Step[] = [
    { name: 'pause', ref: PAUSE_IMAGE, make: () => pauseImage(opts) },
    {
      name: 'eventwire',
      ref: opts.eventwireRef,
      make: () =>
        run(join(opts.repoRoot, 'scripts', 'build-image.sh'), [opts.eventwireRef], {
          cwd: opts.repoRoot,
          timeoutMs: 30 * 60_000,
        }),
    },
  ];
  const nats = await chartNatsImage(opts.repoRoot);
  list.push({ name: 'nats', ref: nats, make: () => natsImage(opts, nats) });
  const node = await shopHandlerImage(opts.repoRoot);
  list.push({
    name: 'node',
    ref: node,
    make: () => assembleNodeStandin({ repoRoot: opts.repoRoot, ref: node, onlyWhenChanged: true }),
  });
  return list;
}

/**
 * Builds (or finds) every image a local node needs and saves each as a docker-archive
 * tarball in opts.cacheDir: pause first, then eventwire, NATS and Node. One log line each.
 */
export async function buildLocalImages(opts: LocalImagesOptions): Promise<readonly LocalImage[]> {
  const log = opts.log ?? ((): void => undefined);
  await mkdir(opts.cacheDir, { recursive: true });
  await sweepStale(opts.cacheDir);
  const images: LocalImage[] = [];
  for (const step of await steps(opts)) {
    const started = Date.now();
    try {
      await step.make();
      const { archive, reused } = await saveArchive(opts.cacheDir, step.name, step.ref);
      const size = megabytes((await stat(archive)).size);
      const seconds = ((Date.now() - started) / 1000).toFixed(1);
      log(`[images] ${step.ref} ${size} ${reused ? 'reused' : 'saved'} ${archive} (${seconds} s)`);
      images.push({ ref: step.ref, archive });
    } catch (err) {
      throw new Error(`building image ${step.ref} failed`, { cause: err });
    }
  }
  return images;
}
