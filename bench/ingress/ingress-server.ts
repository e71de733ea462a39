// `eventwire ingress` in a child process of the benchmark, configured by the environment.
import { runIngress } from '../../src/cli/ingress.ts';

process.exitCode = await runIngress(process.env);
