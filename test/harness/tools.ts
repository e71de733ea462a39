// The pinned binaries, as `npm run tools` left them; tests never build them.
import { defaultCacheDir, requireTools, type ResolvedTools } from '../../src/devenv/tools.ts';

let cached: Promise<ResolvedTools> | undefined;

export function harnessTools(): Promise<ResolvedTools> {
  cached ??= requireTools({
    cacheDir: defaultCacheDir(process.env),
    kubebuilderAssets: process.env.KUBEBUILDER_ASSETS,
    path: process.env.PATH,
  });
  return cached;
}
