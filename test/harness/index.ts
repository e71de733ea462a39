// The test harness: real control plane and NATS, shared with `eventwire dev`.
export { startControlPlane, type ControlPlane } from '../../src/devenv/control-plane.ts';
export {
  startNats,
  startNatsCluster,
  type NatsServer,
  type NatsCluster,
} from '../../src/devenv/nats.ts';
export { sweepStaleRuns, freePort, isProcessAlive, waitFor } from '../../src/devenv/processes.ts';
export { harnessTools } from './tools.ts';
export { impersonating } from './kube.ts';
