// The CRD installer lives with the local environment; tests use it from here.
export { crdDir, installCrds, loadCrds } from '../../src/devenv/crds.ts';
