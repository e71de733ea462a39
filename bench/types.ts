// A benchmark suite: bench/<name>/index.ts default-exports one.

export interface BenchResult {
  readonly name: string;
  readonly value: number;
  /** e.g. "events/s", "ms", "MiB", "s" */
  readonly unit: string;
  /** the same quantity for the baseline measured in the same run, when there is one */
  readonly baseline?: { readonly name: string; readonly value: number };
  readonly note?: string;
}

export interface BenchSuite {
  readonly description: string;
  run(): Promise<BenchResult[]>;
}
