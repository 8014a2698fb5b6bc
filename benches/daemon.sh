#!/usr/bin/env bash
# Daemon figures of DESIGN.md §4, printed as a table (a benchmark, not a test):
#   - idle RSS of `jinad serve`
#   - first workspace to ACTIVE (runtime image + pip), second workspace with the same
#     requirements.txt to ACTIVE (must reuse the dependency layer: no pip run)
#   - GET /workspaces/{id} requests per second (wrk, 2 threads, 32 connections, 10 s)
# Needs: a release build (cargo build --release), the base image (docker/build-base-image.sh), wrk.
set -euo pipefail
cd "$(dirname "$0")/.."
DEFAULT_TEMPLATE='jinad/python:{python}-bookworm'
BASE_TEMPLATE="${BASE_TEMPLATE:-$DEFAULT_TEMPLATE}"   # another base image template
BIN="${JINAD_BIN:-target/release/jinad}"   # JINAD_BIN: compare another build
PORT="${PORT:-18123}"
URL="http://127.0.0.1:$PORT"
DATA="$(mktemp -d /tmp/jinad-bench.XXXXXX)"
WORK="$(mktemp -d /tmp/jinad-bench-files.XXXXXX)"
trap 'kill "${PID:-}" 2>/dev/null || true; rm -rf "$DATA" "$WORK"' EXIT
command -v wrk >/dev/null || { echo "wrk is needed: apt-get install wrk" >&2; exit 1; }
[ -x "$BIN" ] || cargo build --release

"$BIN" serve --data-dir "$DATA" --port "$PORT" --base-image-template "$BASE_TEMPLATE" >"$DATA/out" 2>"$DATA/err" &
PID=$!
until grep -q listening "$DATA/out" 2>/dev/null; do sleep 0.05; done
sleep 1
idle_rss=$(awk '/VmRSS/ {print $2}' /proc/$PID/status)

printf 'python = 3.11\n' > "$WORK/.jinad"
printf './wheels/jinad_fixture_tiny-0.1.0-py3-none-any.whl\n' > "$WORK/requirements.txt"
tar czf "$WORK/wheels.tar.gz" -C tests/fixtures wheels
state() { curl -s "$URL/workspaces/$1" | python3 -c 'import json,sys; print(json.load(sys.stdin)["state"])'; }
create() { # $1: a distinct app file content
  echo "$1" > "$WORK/app.py"
  curl -s -F "files=@$WORK/.jinad;filename=.jinad" -F "files=@$WORK/requirements.txt;filename=requirements.txt" \
       -F "files=@$WORK/wheels.tar.gz" -F "files=@$WORK/app.py;filename=app.py" "$URL/workspaces" |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])'
}
timed_active() { # prints seconds from upload to ACTIVE
  local t0 id s
  t0=$(date +%s.%N); id=$(create "$1")
  while s=$(state "$id"); [ "$s" = PENDING ]; do sleep 0.05; done
  [ "$s" = ACTIVE ] || { echo "workspace $id ended $s" >&2; curl -s "$URL/workspaces/$id/logs" >&2; exit 1; }
  echo "$(echo "$(date +%s.%N) - $t0" | bc) $id"
}
read -r first id1 < <(timed_active "print('first $RANDOM')")
read -r second id2 < <(timed_active "print('second $RANDOM')")
pip_runs=$(curl -s "$URL/workspaces/$id2/logs" | grep -c "Successfully installed" || true)
rps=$(wrk -t2 -c32 -d10s "$URL/workspaces/$id1" | awk '/Requests\/sec/ {print $2}')
busy_rss=$(awk '/VmRSS/ {print $2}' /proc/$PID/status)
for id in "$id1" "$id2"; do curl -s -X DELETE "$URL/workspaces/$id" >/dev/null; done
while [ "$(curl -s "$URL/workspaces")" != "[]" ]; do sleep 0.2; done

printf '| figure | measured | goal |\n|---|---|---|\n'
printf '| idle daemon RSS | %.1f MiB | <= 30 MiB |\n' "$(echo "$idle_rss/1024" | bc -l)"
printf '| first workspace to ACTIVE (runtime image if new + pip) | %.2f s | - |\n' "$first"
printf '| second workspace, same requirements, to ACTIVE | %.2f s (pip runs: %s) | <= 2 s, 0 pip runs |\n' "$second" "$pip_runs"
printf '| GET /workspaces/{id} | %s req/s | >= 10,000 req/s |\n' "$rps"
printf '| daemon RSS after the load | %.1f MiB | - |\n' "$(echo "$busy_rss/1024" | bc -l)"
