// The e2e suite runs the quickstart's marked commands; a marker that selects nothing, or the
// wrong thing, would silently drop a documented step from the suite.
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { markedBlocks, QUICKSTART } from '../e2e/docs.ts';

describe('the marked commands of a page', () => {
  it('takes the sh block after each marker, in page order', () => {
    const page = [
      '# T',
      '<!-- e2e: both -->',
      '',
      '```sh',
      'echo one',
      'echo two',
      '```',
      '```sh',
      'echo unmarked',
      '```',
      '<!-- e2e: cleanup -->',
      '```sh',
      'echo three',
      '```',
    ].join('\n');
    expect(markedBlocks(page)).toEqual([
      { mark: 'both', line: 5, text: 'echo one\necho two' },
      { mark: 'cleanup', line: 13, text: 'echo three' },
    ]);
  });

  it('refuses a marker without a sh block, and an unknown mark', () => {
    expect(() => markedBlocks('<!-- e2e: both -->\n```yaml\na: 1\n```')).toThrow(
      /line|not followed by a sh block/,
    );
    expect(() => markedBlocks('<!-- e2e: sometimes -->\n```sh\ntrue\n```')).toThrow(
      /unknown e2e mark "sometimes"/,
    );
  });

  it('finds every step of the quickstart: both cluster paths, the shared steps, the cleanup', () => {
    const blocks = markedBlocks(readFileSync(QUICKSTART, 'utf8'));
    const marks = blocks.map((b) => b.mark);
    expect(marks.filter((m) => m === 'local-start')).toHaveLength(1);
    expect(blocks.find((b) => b.mark === 'local-start')?.text).toBe(
      'npm run tools\nnpm run dev -- --cluster',
    );
    expect(blocks.find((b) => b.mark === 'kind')?.text).toMatch(/kind create cluster/);
    const shared = blocks.filter((b) => b.mark === 'both').map((b) => b.text);
    expect(shared.join('\n')).toMatch(/helm test eventwire -n eventwire-system --logs/);
    expect(shared.join('\n')).toMatch(/kubectl apply -k examples\/shop/);
    expect(blocks.find((b) => b.mark === 'cleanup')?.text).toMatch(/helm uninstall/);
  });
});
