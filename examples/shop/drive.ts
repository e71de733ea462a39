// Publishes the shop scenario to an ingress stream URL, for the example on a real cluster:
//   kubectl -n eventwire-system port-forward svc/eventwire-ingress 8080:80 &
//   node examples/shop/drive.ts http://127.0.0.1:8080/shop/shop
import { publish, scenarioEvents } from './scenario.ts';

const url = process.argv[2];
if (url === undefined || !/^https?:\/\/[^/]+\/[^/]+\/[^/]+$/.test(url)) {
  process.stderr.write(
    'usage: node examples/shop/drive.ts http://<ingress>/<namespace>/<stream>\n',
  );
  process.exit(2);
}
const { products, carts } = scenarioEvents();
for (const e of [...products, ...carts]) {
  await publish(url, e);
  process.stdout.write(`published ${e.type} ${e.id}\n`);
}
