#!/usr/bin/env bash
# Runtime figures of DESIGN.md §4 (a benchmark, not a test): throughput of a 1-executor flow and a
# 3-executor chain at request sizes 100/10/1, p50/p99 latency, a replicas=2 → shards=2 chain,
# cold start and peak RSS — against real `jinad flow` processes. Extra arguments go to
# `jinad bench` (e.g. --transport tcp, --seconds 5, --connections 8).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --locked
exec target/release/jinad bench "$@"
