// The runnable commands of a Markdown page: each ```sh block preceded by a marker comment
// `<!-- e2e: <mark> -->` is run by the e2e suite exactly as written.
//   kind        sets up the kind backend's cluster (docs/quickstart-kind.md section 1a)
//   local-start starts the local node's cluster; runs until Ctrl-C (section 1b)
//   both        runs on either backend, in page order
//   cleanup     runs at the end, on either backend
//   kind-stop   removes the kind cluster
import { readFileSync } from 'node:fs';
import { join } from 'node:path';

export const MARKS = ['kind', 'local-start', 'both', 'cleanup', 'kind-stop'] as const;
export type Mark = (typeof MARKS)[number];

export interface DocBlock {
  readonly mark: Mark;
  /** 1-based line of the block's first command, for error messages */
  readonly line: number;
  readonly text: string;
}

/** The marked blocks of `markdown`, in page order; a marker not followed by a sh block throws. */
export function markedBlocks(markdown: string, file = 'the page'): DocBlock[] {
  const lines = markdown.split('\n');
  const out: DocBlock[] = [];
  for (let i = 0; i < lines.length; i += 1) {
    const m = /^<!-- e2e: ([a-z-]+) -->$/.exec(lines[i] ?? '');
    if (!m) continue;
    const mark = m[1] as Mark;
    if (!MARKS.includes(mark)) throw new Error(`${file}:${i + 1}: unknown e2e mark "${mark}"`);
    let j = i + 1;
    while ((lines[j] ?? '').trim() === '' && j < lines.length) j += 1;
    if (lines[j] !== '```sh') {
      throw new Error(`${file}:${i + 1}: the e2e mark "${mark}" is not followed by a sh block`);
    }
    const start = j + 1;
    let end = start;
    while (end < lines.length && lines[end] !== '```') end += 1;
    if (end >= lines.length) throw new Error(`${file}:${start}: unterminated sh block`);
    out.push({ mark, line: start + 1, text: lines.slice(start, end).join('\n') });
    i = end;
  }
  return out;
}

export const QUICKSTART = join(import.meta.dirname, '..', '..', 'docs', 'quickstart-kind.md');

export function quickstartBlocks(mark: Mark): DocBlock[] {
  return markedBlocks(readFileSync(QUICKSTART, 'utf8'), 'docs/quickstart-kind.md').filter(
    (b) => b.mark === mark,
  );
}
