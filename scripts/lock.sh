#!/usr/bin/env bash
# Locks Dropfile's dependencies: the ranges in pyproject.toml (the server's runtime and the
# dependency groups protos, test, bench, engines, lint) and client/pyproject.toml become exact
# versions in requirements/<name>.txt, written by uv (pinned in requirements/uv.txt).
#
#   make lock                                  # after changing a range: changes only what must
#   make lock LOCK_ARGS="--upgrade-package boto3"   # move one package (and what it drags)
#   make lock LOCK_ARGS=--upgrade              # move everything to the newest allowed
#
# A version already in a lock is kept while its range allows it. The runtime is locked first;
# each later lock is constrained to agree with the ones before it, so that together they are
# one consistent environment (requirements.txt, what `make install` installs) and the image,
# which installs requirements/runtime.txt alone, runs exactly the versions the tests ran.
set -euo pipefail
cd "$(dirname "$0")/.."
UV=${UV:-.venv/bin/uv}
read -r -a extra <<< "${LOCK_ARGS:-}"

compile() {
  # --universal: one lock for every platform (markers where a dependency is platform-specific);
  # Python 3.11 is the oldest the project supports.
  "$UV" pip compile --quiet --universal --python-version 3.11 --no-strip-markers \
    --custom-compile-command "make lock" "${extra[@]}" "$@"
}

constraints=()
lock() {  # lock NAME SOURCE...
  local name=$1
  shift
  compile "$@" "${constraints[@]}" --output-file "requirements/$name.txt"
  constraints+=(--constraints "requirements/$name.txt")
  echo "locked requirements/$name.txt"
}

lock runtime pyproject.toml
lock client client/pyproject.toml
for group in protos test bench engines lint; do
  lock "$group" --group "pyproject.toml:$group"
done
