// `npm run bench`: runs every suite in bench/<name>/index.ts (or only those named on the
// command line) and prints each result next to the baseline it was measured against in the
// same run. Speed is reported as ratios, never asserted: these machines are noisy.
import { readdirSync, existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import type { BenchResult, BenchSuite } from './types.ts';

const here = dirname(fileURLToPath(import.meta.url));
const wanted = process.argv.slice(2);
const suites = readdirSync(here, { withFileTypes: true })
  .filter((d) => d.isDirectory() && existsSync(join(here, d.name, 'index.ts')))
  .map((d) => d.name)
  .filter((name) => wanted.length === 0 || wanted.includes(name))
  .sort();

function format(r: BenchResult): string {
  const ratio =
    r.baseline === undefined
      ? ''
      : `  ratio ${(r.value / r.baseline.value).toFixed(2)} vs ${r.baseline.name} (${r.baseline.value.toFixed(2)} ${r.unit})`;
  return `${r.name.padEnd(56)} ${r.value.toFixed(2).padStart(12)} ${r.unit}${ratio}${r.note ? `  (${r.note})` : ''}`;
}

const all: (BenchResult & { suite: string })[] = [];
for (const name of suites) {
  const mod = (await import(pathToFileURL(join(here, name, 'index.ts')).href)) as {
    default: BenchSuite;
  };
  console.log(`\n## ${name}: ${mod.default.description}`);
  const started = Date.now();
  const results = await mod.default.run();
  for (const r of results) {
    console.log(format(r));
    all.push({ ...r, suite: name });
  }
  console.log(`(${name} took ${Math.round((Date.now() - started) / 1000)} s)`);
}
const out = join(here, '..', '.eventwire', 'bench-results.json');
mkdirSync(dirname(out), { recursive: true });
writeFileSync(out, `${JSON.stringify({ at: new Date().toISOString(), results: all }, null, 2)}\n`);
console.log(`\nresults written to ${out}`);
// every suite stopped what it started; a handle one of them leaked must not keep this alive
process.exit(0);
