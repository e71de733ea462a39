// `npm run tools`: build or find the pinned binaries the tests and `eventwire dev` need, and
// install the host packages the local node needs (containerd, runc, CNI plugins, iptables,
// conntrack) from Debian when they are missing and this is root on a Debian/Ubuntu machine,
// and podman, which assembles the node's images (scripts/podman-setup.sh).
// --quiet-if-ready prints nothing when everything is already there.
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { hostProblems, NODE_PACKAGES } from '../src/devenv/node-host.ts';
import { defaultCacheDir, ensureTools, findTools } from '../src/devenv/tools.ts';

const quiet = process.argv.includes('--quiet-if-ready');
const opts = {
  cacheDir: defaultCacheDir(process.env),
  kubebuilderAssets: process.env.KUBEBUILDER_ASSETS,
  path: process.env.PATH,
  log: (line: string): void => {
    console.log(line);
  },
};

const { missing } = await findTools(opts);
if (missing.length > 0 || !quiet) {
  const started = Date.now();
  const tools = await ensureTools(opts);
  for (const t of Object.values(tools)) {
    console.log(
      `[tools] ${t.name.padEnd(24)} ${t.version.padEnd(10)} ${t.source.padEnd(18)} ${t.path}`,
    );
  }
  if (missing.length > 0) {
    console.log(
      `[tools] built ${missing.join(', ')} in ${Math.round((Date.now() - started) / 1000)}s`,
    );
  }
}

const host = { platform: process.platform, uid: process.getuid?.() };
if (hostProblems(host).length > 0 && host.uid === 0 && existsSync('/usr/bin/apt-get')) {
  const started = Date.now();
  console.log(`[tools] installing the local node's host packages: ${NODE_PACKAGES.join(' ')}`);
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  execFileSync('apt-get', ['update', '-qq'], { stdio: 'inherit', env });
  execFileSync('apt-get', ['install', '-y', '-qq', '--no-install-recommends', ...NODE_PACKAGES], {
    stdio: ['ignore', 'ignore', 'inherit'],
    env,
  });
  console.log(`[tools] installed in ${Math.round((Date.now() - started) / 1000)}s`);
}
if (host.platform === 'linux' && host.uid === 0) {
  // the local node's images are assembled with podman (installed and configured when missing)
  execFileSync(join(import.meta.dirname, 'podman-setup.sh'), { stdio: 'inherit' });
}
const left = hostProblems(host);
if (left.length > 0 && !quiet) {
  console.log(
    `[tools] the local node (e2e suite, dev --cluster) cannot run here: ${left.join('; ')}`,
  );
}
