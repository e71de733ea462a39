// The README's run command: `eventwire dev` brings up the whole system without a cluster.
// An event published to its ingress reaches a subscription's sink, and Ctrl-C cleans up.
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { KubeConfig } from '@kubernetes/client-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Resources, waitForCondition } from '../../harness/controller.ts';
import { waitFor } from '../../harness/index.ts';
import { startSink, type TestSink } from '../../harness/sink.ts';

const main = join(import.meta.dirname, '..', '..', '..', 'src', 'cli', 'main.ts');

interface Ready {
  kubeconfig: string;
  nats: string;
  ingress: string;
}

describe('eventwire dev', () => {
  let child: ChildProcess;
  let ready: Ready;
  let sink: TestSink;
  let output = '';

  beforeAll(async () => {
    sink = await startSink();
    child = spawn(process.execPath, [main, 'dev'], { stdio: ['ignore', 'pipe', 'pipe'] });
    child.stderr?.on('data', (c: Buffer) => {
      output += c.toString();
    });
    ready = await new Promise<Ready>((resolveReady, reject) => {
      child.stdout?.on('data', (c: Buffer) => {
        output += c.toString();
        const m = /EVENTWIRE_DEV_READY (.*)\n/.exec(output);
        if (m?.[1]) resolveReady(JSON.parse(m[1]) as Ready);
      });
      child.on('exit', (code) => {
        reject(new Error(`eventwire dev exited with ${code}:\n${output}`));
      });
    });
  }, 120_000);
  afterAll(async () => {
    if (child.exitCode === null) child.kill('SIGKILL');
    await sink.close();
  });

  it('delivers an event published to its ingress, and stops cleanly on Ctrl-C', async () => {
    expect(output).toContain('export KUBECONFIG=');
    const kc = new KubeConfig();
    kc.loadFromFile(ready.kubeconfig);
    const res = new Resources(kc);
    // no spec.stream: the default stream of the installation
    await res.createSub({
      apiVersion: 'eventwire.io/v1alpha1',
      kind: 'EventSubscription',
      metadata: { name: 'hello', namespace: 'default' },
      spec: { filters: [{ exact: { type: 'demo.hello' } }], sink: { uri: `${sink.url}/hello` } },
    });
    await waitForCondition(
      'EventSubscription hello',
      () => res.getSub('default', 'hello'),
      'Ready',
      'True',
    );
    await waitFor(
      'the dispatcher to pick up the subscription',
      async () => {
        const answer = await fetch(ready.ingress, {
          method: 'POST',
          headers: {
            'ce-specversion': '1.0',
            'ce-id': 'probe',
            'ce-source': '/dev-test',
            'ce-type': 'demo.hello',
            'content-type': 'application/json',
          },
          body: JSON.stringify({ hello: 'world' }),
        });
        expect(answer.status).toBe(202);
        return sink.delivered().some((e) => e.id === 'probe');
      },
      { timeoutMs: 30_000, intervalMs: 1_000 },
    );
    const got = sink.delivered().find((e) => e.id === 'probe');
    expect(got?.type).toBe('demo.hello');
    expect(new TextDecoder().decode(got?.data)).toBe('{"hello":"world"}');
    expect(sink.requests.find((r) => r.event?.id === 'probe')?.path).toBe('/hello');

    const runDir = dirname(ready.kubeconfig);
    expect(existsSync(runDir)).toBe(true);
    child.kill('SIGINT');
    const code = await new Promise<number | null>((r) => child.on('exit', r));
    expect(code).toBe(0);
    expect(existsSync(runDir)).toBe(false);
  });
});
