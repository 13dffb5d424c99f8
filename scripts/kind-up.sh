#!/usr/bin/env bash
# Runs Dropfile on a local kind cluster and prints its URL.
# Needs docker, kind (0.24 or later enforces NetworkPolicies), kubectl and openssl.
# Not run by CI (there is no Docker there): `make deploy-check` validates the image
# definition and the manifests offline instead.
set -euo pipefail
cd "$(dirname "$0")/.."

CLUSTER=${KIND_CLUSTER_NAME:-dropfile}
IMAGE=dropfile:dev
k() { kubectl --context "kind-$CLUSTER" --namespace dropfile "$@"; }

if ! kind get clusters | grep -qx "$CLUSTER"; then
  kind create cluster --name "$CLUSTER" --config deploy/kind/cluster.yaml \
    ${KIND_NODE_IMAGE:+--image "$KIND_NODE_IMAGE"}
fi

docker build --tag "$IMAGE" .
kind load docker-image "$IMAGE" --name "$CLUSTER"

# The JWT key pair is made here, once per cluster, and never written to the repository.
kubectl --context "kind-$CLUSTER" apply -f deploy/overlays/kind/namespace.yaml
if ! k get secret dropfile-jwt >/dev/null 2>&1; then
  keys=$(mktemp -d)
  trap 'rm -rf "$keys"' EXIT
  openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$keys/private.pem"
  openssl pkey -in "$keys/private.pem" -pubout -out "$keys/public.pem"
  k create secret generic dropfile-jwt \
    --from-file=PRIVATE_KEY="$keys/private.pem" --from-file=PUBLIC_KEY="$keys/public.pem"
fi

# The overlay's database, Redis, S3 and service credentials: generated once, never committed.
deploy/kind/secrets.sh

# A Job's pod template cannot change: the new image's migration and setup are new Jobs.
k delete job migrate setup --ignore-not-found
# moto was the overlay's S3 and SQS before SeaweedFS: a cluster made then drops it.
k delete deployment,service,serviceaccount,networkpolicy moto --ignore-not-found
k apply -k deploy/overlays/kind

for store in deployment/postgres deployment/redis statefulset/seaweedfs; do
  k rollout status "$store" --timeout=180s
done
# Services wait in their init containers until the schema is at the image's head revision.
if ! k wait --for=condition=complete job/migrate job/setup --timeout=300s; then
  k logs job/migrate --tail=50 || true
  k logs job/setup --tail=50 || true
  exit 1
fi
for service in auth upload events gateway; do
  k rollout status "deployment/$service" --timeout=300s
done

echo "Dropfile is running: http://localhost:8080"
echo "(browsers upload parts to SeaweedFS, the cluster's S3, on http://localhost:5000)"
