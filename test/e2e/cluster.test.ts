// The e2e suite: eventwire on a real cluster (a local node here and in CI, or kind), in the
// order a user meets it: installed, the quickstart, faults under load, uninstalled. One file,
// so the steps run in this order on one cluster.
import { faultsSuite } from './suites/faults.ts';
import { installSuite } from './suites/install.ts';
import { quickstartSuite } from './suites/quickstart.ts';
import { uninstallSuite } from './suites/uninstall.ts';

installSuite();
quickstartSuite();
faultsSuite();
uninstallSuite();
