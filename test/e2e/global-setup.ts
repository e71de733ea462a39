// Vitest global setup of the e2e project: one real cluster for the whole suite, with eventwire
// installed from this working tree (the docs' own commands; see backend.ts).
import type { TestProject } from 'vitest/node';
import { checkHost } from '../../src/devenv/node.ts';
import { defaultCacheDir, findTools } from '../../src/devenv/tools.ts';
import { backendOf, startCluster, type Backend } from './backend.ts';

declare module 'vitest' {
  export interface ProvidedContext {
    kubeconfigPath: string;
    e2eBackend: Backend;
    e2eTools: { kubectl: string; helm: string };
  }
}

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const backend = backendOf(process.env);
  // kubectl and helm: the pinned ones (npm run tools), or matching versions on PATH (kind users)
  const { found } = await findTools({
    cacheDir: defaultCacheDir(process.env),
    path: process.env.PATH,
  });
  const kubectl = found.kubectl?.path;
  const helm = found.helm?.path;
  if (!kubectl || !helm) {
    throw new Error('the e2e suite needs kubectl 1.36-1.38 and helm 3: run `npm run tools`');
  }
  if (backend === 'local') {
    try {
      checkHost();
    } catch (err) {
      throw new Error(
        'the e2e suite runs on a local node, which needs root on Linux; with Docker and kind, ' +
          'run it on kind instead: npm run test:e2e:kind',
        { cause: err },
      );
    }
  }
  const started = Date.now();
  const log = (line: string): void => {
    process.stdout.write(`${line}\n`);
  };
  const cluster = await startCluster(backend, log);
  log(
    `[e2e] ${backend} cluster with eventwire installed in ${Math.round((Date.now() - started) / 1000)} s`,
  );
  project.provide('kubeconfigPath', cluster.kubeconfigPath);
  project.provide('e2eBackend', backend);
  project.provide('e2eTools', { kubectl, helm });
  return () => cluster.stop();
}
