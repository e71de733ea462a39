// Pinned binaries for the local control plane: kube-apiserver, kube-controller-manager,
// kubectl, etcd, nats-server and helm; and for the local node: kubelet, kube-scheduler,
// kube-proxy and CoreDNS. Each is built from the Go module proxy inside a
// wrapper module under tools/go/, and cached outside the clone, keyed by version.
// A binary already on PATH or in KUBEBUILDER_ASSETS is reused when its version matches.
import { execFile, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rename, rm } from 'node:fs/promises';
import { homedir } from 'node:os';
import { delimiter, dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const execFileAsync = promisify(execFile);

export type ToolName =
  | 'kube-apiserver'
  | 'kube-controller-manager'
  | 'kubectl'
  | 'etcd'
  | 'nats-server'
  | 'helm'
  | 'kubelet'
  | 'kube-scheduler'
  | 'kube-proxy'
  | 'coredns';

export const TOOL_NAMES: readonly ToolName[] = [
  'kube-apiserver',
  'kube-controller-manager',
  'kubectl',
  'etcd',
  'nats-server',
  'helm',
  'kubelet',
  'kube-scheduler',
  'kube-proxy',
  'coredns',
];

export interface ToolSpec {
  readonly name: ToolName;
  /** folder under tools/go holding the wrapper module */
  readonly wrapper: string;
  /** the Go package that builds the command */
  readonly pkg: string;
  /** the module whose version in the wrapper's go.mod is the tool's version */
  readonly versionModule: string;
  /** arguments that make the binary print its version */
  readonly versionArgs: readonly string[];
  /** extra -ldflags -X settings so the binary reports the right version */
  readonly ldflagsX: (version: string) => readonly string[];
  /** does a found binary, reporting `found`, stand in for the pinned `pinned`? */
  readonly accepts: (found: SemVer, pinned: SemVer) => boolean;
}

export interface SemVer {
  readonly major: number;
  readonly minor: number;
  readonly patch: number;
}

export interface ResolvedTool {
  readonly name: ToolName;
  readonly path: string;
  readonly version: string;
  readonly source: 'KUBEBUILDER_ASSETS' | 'PATH' | 'cache' | 'built';
}

export type ResolvedTools = Readonly<Record<ToolName, ResolvedTool>>;

const k8sLdflags = (v: string): readonly string[] => {
  const s = parseSemVer(v);
  return [
    `k8s.io/component-base/version.gitVersion=${v}`,
    `k8s.io/component-base/version.gitMajor=${s?.major ?? ''}`,
    `k8s.io/component-base/version.gitMinor=${s?.minor ?? ''}`,
    `k8s.io/client-go/pkg/version.gitVersion=${v}`,
    `k8s.io/client-go/pkg/version.gitMajor=${s?.major ?? ''}`,
    `k8s.io/client-go/pkg/version.gitMinor=${s?.minor ?? ''}`,
  ];
};
const sameMinor = (f: SemVer, p: SemVer): boolean => f.major === p.major && f.minor === p.minor;

/** a command of the k8s.io/kubernetes module, which must match the API server's minor */
const kubernetesCommand = (name: ToolName): ToolSpec => ({
  name,
  wrapper: 'kubernetes',
  pkg: `k8s.io/kubernetes/cmd/${name}`,
  versionModule: 'k8s.io/kubernetes',
  versionArgs: ['--version'],
  ldflagsX: k8sLdflags,
  accepts: sameMinor,
});

export const TOOL_SPECS: Readonly<Record<ToolName, ToolSpec>> = {
  'kube-apiserver': kubernetesCommand('kube-apiserver'),
  'kube-controller-manager': kubernetesCommand('kube-controller-manager'),
  kubectl: {
    name: 'kubectl',
    wrapper: 'kubernetes',
    pkg: 'k8s.io/kubernetes/cmd/kubectl',
    versionModule: 'k8s.io/kubernetes',
    versionArgs: ['version', '--client'],
    ldflagsX: k8sLdflags,
    // kubectl's supported skew is one minor either side of the API server
    accepts: (f, p) => f.major === p.major && Math.abs(f.minor - p.minor) <= 1,
  },
  etcd: {
    name: 'etcd',
    wrapper: 'etcd',
    pkg: 'go.etcd.io/etcd/server/v3',
    versionModule: 'go.etcd.io/etcd/server/v3',
    versionArgs: ['--version'],
    ldflagsX: () => [],
    accepts: (f) => f.major === 3 && f.minor >= 6,
  },
  'nats-server': {
    name: 'nats-server',
    wrapper: 'nats',
    pkg: 'github.com/nats-io/nats-server/v2',
    versionModule: 'github.com/nats-io/nats-server/v2',
    versionArgs: ['--version'],
    ldflagsX: () => [],
    accepts: (f) => f.major === 2 && f.minor >= 11,
  },
  helm: {
    name: 'helm',
    wrapper: 'helm',
    pkg: 'helm.sh/helm/v3/cmd/helm',
    versionModule: 'helm.sh/helm/v3',
    versionArgs: ['version', '--short'],
    ldflagsX: (v) => [`helm.sh/helm/v3/internal/version.version=${v}`],
    accepts: (f) => f.major === 3,
  },
  // the local node (`eventwire dev --cluster`, the e2e suite): same module as the API server
  kubelet: kubernetesCommand('kubelet'),
  'kube-scheduler': kubernetesCommand('kube-scheduler'),
  'kube-proxy': kubernetesCommand('kube-proxy'),
  coredns: {
    name: 'coredns',
    wrapper: 'coredns',
    pkg: 'github.com/coredns/coredns',
    versionModule: 'github.com/coredns/coredns',
    versionArgs: ['-version'],
    ldflagsX: () => [],
    accepts: (f, p) => sameMinor(f, p),
  },
};

export function parseSemVer(text: string): SemVer | undefined {
  const m = /v?(\d+)\.(\d+)\.(\d+)/.exec(text);
  if (!m) return undefined;
  return { major: Number(m[1]), minor: Number(m[2]), patch: Number(m[3]) };
}

/** The version pinned for `module` in a wrapper go.mod's text. */
export function pinnedVersion(goMod: string, module: string): string | undefined {
  const escaped = module.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');
  const m = new RegExp(`^\\s*(?:require\\s+)?${escaped}\\s+(v\\S+)`, 'm').exec(goMod);
  return m?.[1];
}

export interface ToolsOptions {
  /** repository root (holds tools/go); defaults to this file's repository */
  readonly repoRoot?: string;
  /** cache root; defaults to $EVENTWIRE_TOOLS_DIR, then $XDG_CACHE_HOME/eventwire/tools */
  readonly cacheDir: string;
  /** KUBEBUILDER_ASSETS, when set */
  readonly kubebuilderAssets?: string | undefined;
  /** PATH to search for binaries */
  readonly path?: string | undefined;
  /** progress lines go here */
  readonly log?: (line: string) => void;
}

export function defaultRepoRoot(): string {
  return resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
}

export function defaultCacheDir(env: NodeJS.ProcessEnv): string {
  if (env.EVENTWIRE_TOOLS_DIR) return env.EVENTWIRE_TOOLS_DIR;
  const base = env.XDG_CACHE_HOME ?? join(homedir(), '.cache');
  return join(base, 'eventwire', 'tools');
}

async function pinnedFor(spec: ToolSpec, repoRoot: string): Promise<string> {
  const goModPath = join(repoRoot, 'tools', 'go', spec.wrapper, 'go.mod');
  const text = await readFile(goModPath, 'utf8');
  const v = pinnedVersion(text, spec.versionModule);
  if (!v) throw new Error(`${goModPath} does not require ${spec.versionModule}`);
  return v;
}

async function probeVersion(bin: string, spec: ToolSpec): Promise<SemVer | undefined> {
  try {
    const { stdout, stderr } = await execFileAsync(bin, [...spec.versionArgs], { timeout: 20_000 });
    return parseSemVer(`${stdout}\n${stderr}`);
  } catch {
    // a binary that cannot report its version is not reused; the caller builds its own
    return undefined;
  }
}

function cachedPath(cacheDir: string, spec: ToolSpec, version: string): string {
  return join(cacheDir, `${spec.wrapper}-${version}`, spec.name);
}

async function findExisting(
  spec: ToolSpec,
  pinned: string,
  opts: ToolsOptions,
): Promise<ResolvedTool | undefined> {
  const want = parseSemVer(pinned);
  if (!want) throw new Error(`pinned version ${pinned} of ${spec.name} is not semver`);
  const candidates: [string, ResolvedTool['source']][] = [];
  if (opts.kubebuilderAssets) {
    candidates.push([join(opts.kubebuilderAssets, spec.name), 'KUBEBUILDER_ASSETS']);
  }
  for (const dir of (opts.path ?? '').split(delimiter).filter(Boolean)) {
    candidates.push([join(dir, spec.name), 'PATH']);
  }
  for (const [bin, source] of candidates) {
    if (!existsSync(bin)) continue;
    const found = await probeVersion(bin, spec);
    if (found && spec.accepts(found, want)) {
      return {
        name: spec.name,
        path: bin,
        version: `v${found.major}.${found.minor}.${found.patch}`,
        source,
      };
    }
  }
  const cached = cachedPath(opts.cacheDir, spec, pinned);
  if (existsSync(cached))
    return { name: spec.name, path: cached, version: pinned, source: 'cache' };
  return undefined;
}

/** Resolve every tool without building; lists what is missing. */
export async function findTools(
  opts: ToolsOptions,
): Promise<{ found: Partial<Record<ToolName, ResolvedTool>>; missing: ToolName[] }> {
  const repoRoot = opts.repoRoot ?? defaultRepoRoot();
  const found: Partial<Record<ToolName, ResolvedTool>> = {};
  const missing: ToolName[] = [];
  for (const name of TOOL_NAMES) {
    const spec = TOOL_SPECS[name];
    const tool = await findExisting(spec, await pinnedFor(spec, repoRoot), opts);
    if (tool) found[name] = tool;
    else missing.push(name);
  }
  return { found, missing };
}

/** Resolve every tool, failing with the fix when one is missing. */
export async function requireTools(opts: ToolsOptions): Promise<ResolvedTools> {
  const { found, missing } = await findTools(opts);
  if (missing.length > 0) {
    throw new Error(
      `missing binaries: ${missing.join(', ')}; run \`npm run tools\` to build them into ${opts.cacheDir}`,
    );
  }
  return found as ResolvedTools;
}

/** The file name `go build -o dir/` gives a command: its last path element, skipping a /vN suffix. */
export function goBinaryName(pkg: string): string {
  const parts = pkg.split('/');
  const last = parts.at(-1) ?? pkg;
  return /^v\d+$/.test(last) && parts.length > 1 ? (parts.at(-2) ?? last) : last;
}

function formatDuration(ms: number): string {
  const s = Math.round(ms / 1000);
  return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`;
}

async function goBuild(
  wrapperDir: string,
  specs: readonly [ToolSpec, ...ToolSpec[]],
  version: string,
  outDir: string,
  log: (line: string) => void,
): Promise<void> {
  const ldflags = ['-s', '-w', ...specs[0].ldflagsX(version).flatMap((x) => ['-X', x])].join(' ');
  const args = ['build', '-v', '-trimpath', '-ldflags', ldflags, '-o', `${outDir}/`];
  args.push(...specs.map((s) => s.pkg));
  const started = Date.now();
  let compiled = 0;
  const tail: string[] = [];
  const child = spawn('go', args, { cwd: wrapperDir, stdio: ['ignore', 'pipe', 'pipe'] });
  const onLine = (chunk: Buffer): void => {
    for (const line of chunk.toString('utf8').split('\n')) {
      if (!line) continue;
      compiled += 1;
      tail.push(line);
      if (tail.length > 40) tail.shift();
    }
  };
  child.stdout.on('data', onLine);
  child.stderr.on('data', onLine);
  const timer = setInterval(() => {
    log(`  ... ${compiled} packages compiled, ${formatDuration(Date.now() - started)} so far`);
  }, 30_000);
  const code = await new Promise<number | null>((res, rej) => {
    child.on('error', rej);
    child.on('close', res);
  }).finally(() => {
    clearInterval(timer);
  });
  if (code !== 0) {
    throw new Error(`go build in ${wrapperDir} failed (exit ${code}):\n${tail.join('\n')}`);
  }
  log(`  built in ${formatDuration(Date.now() - started)}`);
}

/** Resolve every tool, building what is missing into the cache. */
export async function ensureTools(opts: ToolsOptions): Promise<ResolvedTools> {
  const repoRoot = opts.repoRoot ?? defaultRepoRoot();
  const log = opts.log ?? ((): void => undefined);
  const { found, missing } = await findTools(opts);
  const byWrapper = new Map<string, [ToolSpec, ...ToolSpec[]]>();
  for (const name of missing) {
    const spec = TOOL_SPECS[name];
    const group = byWrapper.get(spec.wrapper);
    byWrapper.set(spec.wrapper, group ? [...group, spec] : [spec]);
  }
  for (const [wrapper, specs] of byWrapper) {
    const version = await pinnedFor(specs[0], repoRoot);
    const finalDir = dirname(cachedPath(opts.cacheDir, specs[0], version));
    await mkdir(opts.cacheDir, { recursive: true });
    const tmp = await mkdtemp(join(opts.cacheDir, `.build-${wrapper}-`));
    log(
      `[tools] building ${specs.map((s) => s.name).join(', ')} ${version} from tools/go/${wrapper} (a cold build takes minutes)`,
    );
    try {
      await goBuild(join(repoRoot, 'tools', 'go', wrapper), specs, version, tmp, log);
      await mkdir(finalDir, { recursive: true });
      for (const spec of specs) {
        const built = join(tmp, goBinaryName(spec.pkg));
        await rename(built, join(finalDir, spec.name));
        found[spec.name] = {
          name: spec.name,
          path: join(finalDir, spec.name),
          version,
          source: 'built',
        };
      }
    } finally {
      await rm(tmp, { recursive: true, force: true });
    }
  }
  return found as ResolvedTools;
}
