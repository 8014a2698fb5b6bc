#!/usr/bin/env bash
# Run every test: unit tests, the HTTP/API tests and the real-Docker tests.
# Builds the registry-free base image first if the engine does not have it yet.
set -euo pipefail
cd "$(dirname "$0")/.."
docker/build-base-image.sh
cargo test --locked "$@"
