#!/usr/bin/env bash
# Generates the kind overlay's credentials (database and Redis passwords, the services'
# token, moto's keys) into deploy/overlays/kind/secrets/*.env, which kustomize's
# secretGenerator reads and git ignores. Values are made once and kept: run it again and
# nothing changes, so the in-cluster PostgreSQL and Redis keep accepting them. Delete the
# folder (and the cluster) for new ones. scripts/kind-up.sh and `make deploy-validate` run it.
set -euo pipefail
cd "$(dirname "$0")/../overlays/kind"

random_hex() { head -c "$1" /dev/urandom | od -An -v -tx1 | tr -d ' \n'; }

mkdir -p secrets
chmod 700 secrets
if [ -e secrets/.complete ]; then
  exit 0
fi
umask 077
db_password=$(random_hex 24)
redis_password=$(random_hex 24)
printf 'POSTGRES_PASSWORD=%s\n' "$db_password" > secrets/postgres.env
printf 'CLOUD_DB_URI=postgresql://dropfile:%s@postgres:5432/dropfile\n' "$db_password" > secrets/db.env
printf 'REDIS_PASSWORD=%s\n' "$redis_password" > secrets/redis-server.env
printf 'CLOUD_RD_URI=redis://:%s@redis:6379/0\n' "$redis_password" > secrets/redis.env
printf 'SERVICE_TOKEN=%s\n' "$(random_hex 32)" > secrets/service-token.env
# moto accepts any credentials; boto3 only needs some to sign requests.
printf 'AWS_ACCESS_KEY_ID=%s\nAWS_SECRET_ACCESS_KEY=%s\n' "KIND$(random_hex 8)" "$(random_hex 20)" \
  > secrets/moto.env
touch secrets/.complete
echo "kind secrets: generated in deploy/overlays/kind/secrets/ (kept, never committed)"
