// `eventwire tail <namespace>/<stream>` against the real control plane, controller and
// nats-server: finds the JetStream stream through the EventStream's status, decodes every
// event, follows new events live, and refuses wrong arguments (exit 2) and unknown streams (1).
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { KubeConfig } from '@kubernetes/client-node';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import type { EventStream } from '../../../src/api/types.ts';
import { runPublish } from '../../../src/cli/publish.ts';
import { runTail } from '../../../src/cli/tail.ts';
import type { ControllerHandle } from '../../../src/controller/controller.ts';
import {
  Resources,
  ensureNamespace,
  scoped,
  startTestController,
  waitForCondition,
} from '../../harness/controller.ts';
import { installCrds } from '../../harness/crds.ts';
import { waitFor } from '../../harness/index.ts';
import { capture, runCli, unique } from './helpers.ts';

const main = join(import.meta.dirname, '..', '..', '..', 'src', 'cli', 'main.ts');
const scope = 'cli-tail';
const ns = unique('cli-tail');
const prefix = ns.replace('-', '.');

describe('eventwire tail', () => {
  const kc = new KubeConfig();
  let controller: ControllerHandle;
  let env: NodeJS.ProcessEnv;

  async function publish(id: string, extra: string[] = []): Promise<void> {
    const { out } = capture();
    const code = await runPublish(
      [
        '--nats',
        '--nats-url',
        inject('natsUrl'),
        '--subject-prefix',
        prefix,
        '--source',
        '/cli/tail',
        '--type',
        'com.example.tailed',
        '--id',
        id,
        '--datacontenttype',
        'application/json',
        '--data',
        `{"n":"${id}"}`,
        ...extra,
      ],
      {},
      out,
    );
    expect(code).toBe(0);
  }

  beforeAll(async () => {
    kc.loadFromFile(inject('kubeconfigPath'));
    await installCrds(kc);
    await ensureNamespace(kc, ns);
    controller = await startTestController({
      kubeconfigPath: inject('kubeconfigPath'),
      natsUrl: inject('natsUrl'),
      scope,
    });
    const res = new Resources(kc);
    const stream: EventStream = scoped(
      {
        apiVersion: 'eventwire.io/v1alpha1',
        kind: 'EventStream',
        metadata: { name: 'events', namespace: ns },
        spec: { subjectPrefix: prefix, storage: 'memory', deletionPolicy: 'Delete' },
      },
      scope,
    );
    await res.createStream(stream);
    await waitForCondition('EventStream', () => res.getStream(ns, 'events'), 'Ready', 'True');
    env = { KUBECONFIG: inject('kubeconfigPath'), EVENTWIRE_NATS_URL: inject('natsUrl') };
  });
  afterAll(async () => {
    await new Resources(kc).deleteStream(ns, 'events');
    await controller.stop();
  });

  it('prints the stored events decoded, from the start, and stops after --count', async () => {
    await publish('one', ['--ext', 'partitionkey=k1']);
    await publish('two');
    const text = await runCli(runTail, [`${ns}/events`, '--from-start', '--count', '2'], env);
    expect(text.code, text.err).toBe(0);
    const lines = text.out.trim().split('\n');
    expect(lines).toHaveLength(2);
    expect(lines[0]).toContain('com.example.tailed  /cli/tail  one');
    expect(lines[0]).toContain(`${prefix}.com.example.tailed`);
    expect(lines[0]).toContain('partitionkey=k1');
    expect(lines[0]).toContain('{"n":"one"}');
    expect(text.err).toContain(`tailing EventStream ${ns}/events`);

    const json = await runCli(
      runTail,
      [`${ns}/events`, '--from-start', '--count', '2', '--json'],
      env,
    );
    expect(json.code).toBe(0);
    const events = json.out
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(events[0]).toMatchObject({
      id: 'one',
      type: 'com.example.tailed',
      source: '/cli/tail',
      extensions: { partitionkey: 'k1' },
      data: { n: 'one' },
      natsSubject: `${prefix}.com.example.tailed`,
    });
    expect(events[1]).toMatchObject({ id: 'two', data: { n: 'two' } });
  });

  it('follows new events only, by default', async () => {
    const c = capture();
    const tailing = runTail([`${ns}/events`, '--count', '1', '--json'], env, c.out, c.err);
    await waitFor('tail to start', () => Promise.resolve(c.errText().includes('tailing')), {
      timeoutMs: 10_000,
    });
    await publish('live');
    expect(await tailing).toBe(0);
    expect(JSON.parse(c.text())).toMatchObject({ id: 'live' }); // not "one" or "two"
  });

  it('runs as `eventwire tail` until Ctrl-C', async () => {
    const child = spawn(process.execPath, [main, 'tail', `${ns}/events`], {
      env: { ...process.env, ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    let err = '';
    child.stdout.on('data', (c: Buffer) => (out += c.toString()));
    child.stderr.on('data', (c: Buffer) => (err += c.toString()));
    const exited = new Promise<number | null>((r) => child.on('exit', r));
    await waitFor('tail to start', () => Promise.resolve(err.includes('Ctrl-C to stop')), {
      timeoutMs: 15_000,
    });
    await publish('via-main');
    await waitFor('the event to be printed', () => Promise.resolve(out.includes('via-main')), {
      timeoutMs: 10_000,
    });
    child.kill('SIGINT');
    expect(await exited, err).toBe(0);
    expect(out).not.toContain('  one  '); // only new events
  });

  it('says when the EventStream does not exist (exit 1)', async () => {
    const r = await runCli(runTail, [`${ns}/nope`], env);
    expect(r.code).toBe(1);
    expect(r.err).toContain(`EventStream ${ns}/nope not found`);
  });

  it('refuses wrong arguments with exit 2, naming them', async () => {
    const cases: [string[], string][] = [
      [[], 'name the EventStream'],
      [['events'], 'events: write <namespace>/<stream>'],
      [[`${ns}/events`, 'more'], 'one EventStream only'],
      [[`${ns}/events`, '--count', '0'], '--count 0'],
      [[`${ns}/events`, '--follow'], "Unknown option '--follow'"],
    ];
    for (const [argv, message] of cases) {
      const r = await runCli(runTail, argv, env);
      expect(r.code, argv.join(' ')).toBe(2);
      expect(r.err).toContain(message);
      expect(r.err).toContain('eventwire tail --help');
    }
    const help = await runCli(runTail, ['--help'], env);
    expect(help.code).toBe(0);
    expect(help.out).toContain('Usage: eventwire tail <namespace>/<stream>');
  });
});
