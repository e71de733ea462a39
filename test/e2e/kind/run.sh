#!/usr/bin/env bash
# End-to-end on a kind cluster, for users with Docker (and CI): create a cluster, build and
# load the image, helm install the chart, deploy an example handler, kubectl apply a
# subscription, publish through the ingress, assert delivery and dead-lettering, run
# `helm test`, clean up.
#   test/e2e/kind/run.sh            (npm run test:e2e:kind)
# Needs: docker, kind, kubectl, helm. KEEP_CLUSTER=1 leaves the cluster for a look.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../../.."

cluster="${KIND_CLUSTER:-eventwire-e2e}"
image="localhost/eventwire:e2e"
ns="eventwire-system"
here="test/e2e/kind"

log() { printf '[e2e] %s\n' "$*"; }
fail() { printf '[e2e] FAIL: %s\n' "$*" >&2; exit 1; }

cleanup() {
  local rc=$?
  if [ "$rc" -ne 0 ]; then
    kubectl -n "$ns" get pods -o wide || true
    kubectl -n "$ns" logs -l app.kubernetes.io/instance=eventwire --all-containers --tail=80 || true
    kubectl -n shop get eventwire -o yaml || true
  fi
  if [ "${KEEP_CLUSTER:-0}" != "1" ]; then
    kind delete cluster --name "$cluster" >/dev/null 2>&1 || true
  fi
  exit "$rc"
}
trap cleanup EXIT

for tool in docker kind kubectl helm; do
  command -v "$tool" >/dev/null 2>&1 || fail "$tool is not installed"
done

log "creating kind cluster $cluster"
kind create cluster --name "$cluster" --wait 120s
kubectl config use-context "kind-$cluster"

log "building $image"
docker build -t "$image" .
kind load docker-image "$image" --name "$cluster"
# the bundled NATS server's image
docker pull -q nats:2.11.9-alpine
kind load docker-image nats:2.11.9-alpine --name "$cluster"

log "installing the chart"
kubectl create namespace "$ns"
kubectl label namespace "$ns" pod-security.kubernetes.io/enforce=restricted
helm install eventwire charts/eventwire -n "$ns" \
  --set image.repository=localhost/eventwire --set image.tag=e2e --set image.pullPolicy=Never \
  --wait --timeout 5m
kubectl -n "$ns" rollout status deployment/eventwire-controller deployment/eventwire-dispatcher deployment/eventwire-ingress --timeout=3m

log "helm test"
helm test eventwire -n "$ns" --logs --timeout 3m

log "deploying the example handler and subscription"
kubectl create namespace shop
kubectl label namespace shop pod-security.kubernetes.io/enforce=restricted
kubectl apply -f "$here/handler.yaml"
# a stream for the dead letters: captures shopdlq.>, apart from the shop stream
kubectl apply -f - <<'YAML'
apiVersion: eventwire.io/v1alpha1
kind: EventStream
metadata: { name: shop-dlq, namespace: shop }
spec: { subjectPrefix: shopdlq, storage: file }
YAML
kubectl -n shop rollout status deployment/order-handler --timeout=2m
kubectl -n shop wait --for=condition=Ready eventsubscription/orders --timeout=2m
kubectl -n shop wait --for=condition=Ready eventstream/shop-dlq --timeout=2m

publish() { # id type
  kubectl -n "$ns" exec deploy/eventwire-ingress -- node -e "
    fetch('http://127.0.0.1:8080/shop/shop', { method: 'POST', headers: {
      'ce-specversion': '1.0', 'ce-id': '$1', 'ce-source': '/e2e', 'ce-type': '$2',
      'content-type': 'application/json' }, body: '{\"total\": 1}' })
      .then(async (r) => { console.log(r.status, await r.text()); process.exit(r.status === 202 ? 0 : 1); })"
}

log "publishing through the ingress"
publish e2e-ok-1 com.example.order.created
publish e2e-poison-1 com.example.poison

log "asserting delivery"
for _ in $(seq 1 60); do
  if kubectl -n shop logs deploy/order-handler | grep -q '"received":"e2e-ok-1"'; then
    delivered=1
    break
  fi
  sleep 2
done
[ "${delivered:-0}" = "1" ] || fail "e2e-ok-1 never reached the handler"

log "asserting dead-lettering"
for _ in $(seq 1 60); do
  count="$(kubectl -n shop get eventsubscription orders -o jsonpath='{.status.stats.deadLettered}')"
  if [ "${count:-0}" -ge 1 ]; then
    dead=1
    break
  fi
  sleep 2
done
[ "${dead:-0}" = "1" ] || fail "e2e-poison-1 was not dead-lettered (status.stats.deadLettered)"

log "uninstalling (CRDs and resources are kept)"
helm uninstall eventwire -n "$ns" --wait
kubectl get crd eventsubscriptions.eventwire.io >/dev/null || fail "the CRD was deleted"
log "PASS"
