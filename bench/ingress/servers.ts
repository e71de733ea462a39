// Shared by the ingress suite and the profiling harness: start one of the two servers as a
// child process, and make the benchmark's single binary event.
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { makeEvent, toHttpRequest } from '../../src/cloudevents/index.ts';
import { freePort, waitFor } from '../../src/devenv/processes.ts';
import { stopChild } from '../child.ts';

export interface Server {
  readonly url: string;
  readonly pid: number;
  stop(): Promise<void>;
}

/** `script` (baseline-server.ts or ingress-server.ts) on a free port; BENCH_NODE_ARGS apply. */
export async function startServer(script: string, env: Record<string, string>): Promise<Server> {
  const port = await freePort();
  const child = spawn(
    process.execPath,
    [
      ...(process.env.BENCH_NODE_ARGS ?? '').split(' ').filter(Boolean),
      join(import.meta.dirname, script),
    ],
    {
      env: {
        ...process.env,
        ...env,
        EVENTWIRE_INGRESS_PORT: String(port),
        EVENTWIRE_LOG_LEVEL: 'warn',
      },
      stdio: ['ignore', 'ignore', 'inherit'],
    },
  );
  const url = `http://127.0.0.1:${String(port)}`;
  await waitFor(
    `${script} to listen`,
    async () => (await fetch(url, { method: 'POST' }).catch(() => undefined)) !== undefined,
    { timeoutMs: 20_000 },
  );
  return {
    url,
    pid: child.pid ?? 0,
    stop: () => stopChild(child, script),
  };
}

let seq = 0;

/** The next single binary event: a JSON object of about 120 bytes. */
export function singleEventRequest(): ReturnType<typeof toHttpRequest> {
  seq += 1;
  const event = makeEvent({
    id: `bench-${String(seq)}`,
    source: '/bench',
    type: 'com.example.bench.created',
    datacontenttype: 'application/json',
    data: new TextEncoder().encode(`{"n":${String(seq)},"payload":"${'x'.repeat(100)}"}`),
  });
  return toHttpRequest(event, 'binary');
}
