#!/usr/bin/env bash
# Generates the kind overlay's credentials (database and Redis passwords, the services'
# token, the S3 keys and SeaweedFS's identity holding them) into deploy/overlays/kind/secrets/,
# which kustomize's secretGenerator reads and git ignores. Values are made once and kept: run
# it again and nothing changes, so the in-cluster PostgreSQL, Redis and SeaweedFS keep
# accepting them; a set whose files are missing (a clone older than it) is made then. Delete
# the folder (and the cluster) for new ones. scripts/kind-up.sh and `make deploy-validate` run it.
set -euo pipefail
cd "$(dirname "$0")/../overlays/kind"

random_hex() { head -c "$1" /dev/urandom | od -An -v -tx1 | tr -d ' \n'; }
missing() { for file in "$@"; do [ -s "secrets/$file" ] || return 0; done; return 1; }

mkdir -p secrets
chmod 700 secrets
umask 077
made=()
if missing postgres.env db.env; then
  db_password=$(random_hex 24)
  printf 'POSTGRES_PASSWORD=%s\n' "$db_password" > secrets/postgres.env
  printf 'CLOUD_DB_URI=postgresql://dropfile:%s@postgres:5432/dropfile\n' "$db_password" > secrets/db.env
  made+=(postgres)
fi
if missing redis-server.env redis.env; then
  redis_password=$(random_hex 24)
  printf 'REDIS_PASSWORD=%s\n' "$redis_password" > secrets/redis-server.env
  printf 'CLOUD_RD_URI=redis://:%s@redis:6379/0\n' "$redis_password" > secrets/redis.env
  made+=(redis)
fi
if missing service-token.env; then
  printf 'SERVICE_TOKEN=%s\n' "$(random_hex 32)" > secrets/service-token.env
  made+=(service-token)
fi
# SeaweedFS checks every request's signature against its identities (the same file format
# tools/engines.py writes for `make run`); upload, events and setup sign with these keys.
if missing s3.env seaweedfs-s3.json; then
  access_key="DF$(random_hex 9 | tr a-f A-F)"
  secret_key=$(random_hex 24)
  printf 'AWS_ACCESS_KEY_ID=%s\nAWS_SECRET_ACCESS_KEY=%s\n' "$access_key" "$secret_key" \
    > secrets/s3.env
  printf '{"identities": [{"name": "dropfile", "credentials": [{"accessKey": "%s", "secretKey": "%s"}], "actions": ["Admin", "Read", "Write", "List", "Tagging"]}]}\n' \
    "$access_key" "$secret_key" > secrets/seaweedfs-s3.json
  made+=(s3)
fi
rm -f secrets/moto.env secrets/.complete  # left by older versions of this script
if [ ${#made[@]} -gt 0 ]; then
  echo "kind secrets: generated ${made[*]} in deploy/overlays/kind/secrets/ (kept, never committed)"
fi
