// `eventwire ingress` in a child process of the benchmark, configured by the environment.
import { runIngress } from '../../src/cli/ingress.ts';

// exit when the ingress has stopped, as `eventwire ingress` does
process.exit(await runIngress(process.env));
