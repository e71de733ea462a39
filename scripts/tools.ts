// `npm run tools`: build or find the pinned binaries the tests and `eventwire dev` need.
// --quiet-if-ready prints nothing when everything is already there.
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
