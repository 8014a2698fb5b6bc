#!/usr/bin/env bash
# Run the daemon on 127.0.0.1:8000 with its data in ./jinad-data, building workspaces on the
# registry-free base image (built first if missing). Extra arguments go to `jinad serve`.
set -euo pipefail
cd "$(dirname "$0")/.."
docker/build-base-image.sh
exec cargo run --release -- serve \
  --data-dir "${JINAD_DATA_DIR:-$PWD/jinad-data}" \
  --base-image-template 'jinad/python:{python}-bookworm' "$@"
