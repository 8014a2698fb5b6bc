#!/usr/bin/env bash
# Run every test: unit tests, the HTTP/API tests, the real-Docker tests and the contract tests.
# First builds the registry-free base image if the engine does not have it yet, and installs the
# contract-test tools (a validator, a client generator, Schemathesis) into .venv-contract.
set -euo pipefail
cd "$(dirname "$0")/.."
docker/build-base-image.sh
tests/contract/setup.sh
cargo test --locked "$@"
