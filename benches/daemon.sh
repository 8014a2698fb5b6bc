#!/usr/bin/env bash
# Daemon figures of DESIGN.md §4, printed as a table (a benchmark, not a test):
#   - idle RSS of `jinad serve`
#   - first workspace to ACTIVE (runtime image + pip), second workspace with the same
#     requirements.txt to ACTIVE (must reuse the dependency layer: no pip run)
#   - GET /workspaces/{id} requests per second (wrk, 2 threads, 32 connections, 10 s)
#   - POST /flows → ACTIVE for a 3-pod flow (every pea and the gateway its own container), next to
#     a bare `docker run` of one container of the same image to its readiness
#   - that 3-chain's throughput and p50 latency (wrk, 1 document per request), next to the same
#     flow run by `jinad flow --transport tcp` on the host
#   - operations: GET /metrics scrape time with 1,000 objects; GET /events first page with 100,000
#     rows; `jinad workspaces create` of a 50 MB directory: throughput and the CLI's peak RSS
#     (against a second daemon whose base image is missing, so 1,000 uploads end FAILED at once)
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
OPS_DATA="$(mktemp -d /tmp/jinad-bench-ops.XXXXXX)"
trap 'kill "${PID:-}" "${OPS:-}" 2>/dev/null || true; rm -rf "$DATA" "$WORK" "$OPS_DATA"' EXIT
[ "${ONLY:-}" = ops ] || command -v wrk >/dev/null || { echo "wrk is needed: apt-get install wrk" >&2; exit 1; }
[ -x "$BIN" ] || cargo build --release

if [ "${ONLY:-}" != ops ]; then  # ONLY=ops: the operations figures alone
"$BIN" serve --data-dir "$DATA" --port "$PORT" --base-image-template "$BASE_TEMPLATE" >"$DATA/out" 2>"$DATA/err" &
PID=$!
until grep -q listening "$DATA/out" 2>/dev/null; do sleep 0.05; done
sleep 1
idle_rss=$(awk '/VmRSS/ {print $2}' /proc/$PID/status)

printf 'python = 3.11\n' > "$WORK/.jinad"
printf 'jtype: Flow\nexecutors:\n  - name: a\n  - name: b\n  - name: c\n' > "$WORK/chain3.yml"
printf './wheels/jinad_fixture_tiny-0.1.0-py3-none-any.whl\n' > "$WORK/requirements.txt"
tar czf "$WORK/wheels.tar.gz" -C tests/fixtures wheels
state() { curl -s "$URL/workspaces/$1" | python3 -c 'import json,sys; print(json.load(sys.stdin)["state"])'; }
create() { # $1: a distinct app file content
  echo "$1" > "$WORK/app.py"
  curl -s -F "files=@$WORK/.jinad;filename=.jinad" -F "files=@$WORK/requirements.txt;filename=requirements.txt" \
       -F "files=@$WORK/wheels.tar.gz" -F "files=@$WORK/app.py;filename=app.py" -F "files=@$WORK/chain3.yml;filename=chain3.yml" "$URL/workspaces" |
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

# A 3-pod flow through the daemon: POST /flows → ACTIVE.
field() { python3 -c "import json,sys; print(json.load(sys.stdin).get('$1') or '')"; }
t0=$(date +%s.%N)
flow=$(curl -s -X POST "$URL/flows?workspace_id=$id1&filename=chain3.yml" | field id)
while s=$(curl -s "$URL/flows/$flow" | field state); [ "$s" = PENDING ]; do sleep 0.02; done
flow_active=$(echo "$(date +%s.%N) - $t0" | bc)
[ "$s" = ACTIVE ] || { echo "flow $flow ended $s: $(curl -s "$URL/flows/$flow")" >&2; exit 1; }
gateway=$(curl -s "$URL/flows/$flow" | field gateway_url)
direct=$(curl -s "$URL/flows/$flow" | field gateway_direct_url)
# The floor: one bare container of the same image, from `docker run` to its readiness.
image=$(curl -s "$URL/workspaces/$id1" | field image_id)
printf 'jtype: Flow\nexecutors:\n  - name: a\n' > "$WORK/one.yml"
t0=$(date +%s.%N)
cid=$(docker run -d --rm -p 127.0.0.1::8080 -v "$WORK/one.yml:/one.yml:ro" --entrypoint /usr/local/bin/jinad "$image" flow /one.yml --host 0.0.0.0 --port 8080)
bare_port=$(docker port "$cid" 8080/tcp | head -1 | sed 's/.*://')
until curl -sf "http://127.0.0.1:$bare_port/ready" >/dev/null; do sleep 0.02; done
bare_ready=$(echo "$(date +%s.%N) - $t0" | bc)
docker rm -f "$cid" >/dev/null
# Throughput and p50 of the chain in containers, then of the same chain on the host over TCP.
cat > "$WORK/post.lua" <<'LUA'
wrk.method = "POST"
wrk.body = '{"data": [{"text": "hello world, one hundred bytes of text in a document, more or less, for the bench"}]}'
wrk.headers["Content-Type"] = "application/json"
LUA
measure() { # $1: gateway URL → "req/s p50"
  wrk -t2 -c4 -d5s --latency -s "$WORK/post.lua" "$1/index" | awk '/Requests\/sec/ {r=$2} /^ +50%/ {p=$2} END {print r, p}'
}
read -r containers_rps containers_p50 < <(measure "$gateway")
read -r direct_rps direct_p50 < <(measure "$direct")
"$BIN" flow "$WORK/chain3.yml" --transport tcp --port 0 >"$WORK/local.out" 2>"$WORK/local.err" &
LOCAL=$!
until grep -q 'ready:' "$WORK/local.out" 2>/dev/null; do sleep 0.05; done
local_url=$(grep -o 'http://[0-9.:]*' "$WORK/local.out" | head -1)
read -r local_rps local_p50 < <(measure "$local_url")
kill -INT "$LOCAL"; wait "$LOCAL" 2>/dev/null || true
curl -s -X DELETE "$URL/flows/$flow" >/dev/null

for id in "$id1" "$id2"; do curl -s -X DELETE "$URL/workspaces/$id" >/dev/null; done
while [ "$(curl -s "$URL/workspaces")" != "[]" ]; do sleep 0.2; done

fi

# Operations, on a daemon whose base image is missing: every upload ends FAILED at once.
OPS_URL="http://127.0.0.1:$((PORT + 1))"
"$BIN" serve --data-dir "$OPS_DATA" --port "$((PORT + 1))" --base-image-template 'jinad/bench-missing:{python}' >"$OPS_DATA/out" 2>"$OPS_DATA/err" &
OPS=$!
until grep -q listening "$OPS_DATA/out" 2>/dev/null; do sleep 0.05; done
echo 'print(1)' > "$WORK/one.py"
for _ in $(seq 1000); do curl -s -o /dev/null -F "files=@$WORK/one.py;filename=app.py" "$OPS_URL/workspaces"; done
objects=$(curl -s "$OPS_URL/status" | python3 -c 'import json,sys; s=json.load(sys.stdin); print(sum(sum(s[k].values()) for k in ("workspaces","flows","pods","peas")))')
mean_time() { # $1: URL → mean seconds of 20 GETs
  for _ in $(seq 20); do curl -s -o /dev/null -w '%{time_total}\n' "$1"; done | awk '{t+=$1} END {printf "%.1f", 1000*t/NR}'
}
metrics_ms=$(mean_time "$OPS_URL/metrics")
# 100,000 events: the 1,000 uploads made ~2,000; the rest go straight into the table.
sqlite3 "$OPS_DATA/jinad.sqlite" "PRAGMA busy_timeout=10000; WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n WHERE i < 100000 - (SELECT COUNT(*) FROM events)) INSERT INTO events (object_id, kind, workspace_id, from_state, to_state) SELECT 'jworkspace-bench-' || i, 'workspace', 'jworkspace-bench-' || i, 'PENDING', 'ACTIVE' FROM n;" >/dev/null
event_rows=$(sqlite3 "$OPS_DATA/jinad.sqlite" 'SELECT COUNT(*) FROM events')
events_ms=$(mean_time "$OPS_URL/events")
events_late_ms=$(mean_time "$OPS_URL/events?since=99000&limit=1000")
events_object_ms=$(mean_time "$OPS_URL/events?object=jworkspace-bench-50000")
# The CLI uploads 50 MB of incompressible files.
mkdir -p "$WORK/big"
for i in $(seq 50); do head -c 1048576 /dev/urandom > "$WORK/big/part-$i.bin"; done
read -r upload_s upload_rss < <(JINAD_HOST="$OPS_URL" python3 - "$BIN" "$WORK/big" <<'PY'
import resource, subprocess, sys, time
t0 = time.time()
subprocess.run([sys.argv[1], "workspaces", "create", "--detach", sys.argv[2]], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
print(f"{time.time() - t0:.3f}", resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
PY
)
kill "$OPS"; wait "$OPS" 2>/dev/null || true

printf '| figure | measured | goal |\n|---|---|---|\n'
if [ "${ONLY:-}" != ops ]; then
printf '| idle daemon RSS | %.1f MiB | <= 30 MiB |\n' "$(echo "$idle_rss/1024" | bc -l)"
printf '| first workspace to ACTIVE (runtime image if new + pip) | %.2f s | - |\n' "$first"
printf '| second workspace, same requirements, to ACTIVE | %.2f s (pip runs: %s) | <= 2 s, 0 pip runs |\n' "$second" "$pip_runs"
printf '| GET /workspaces/{id} | %s req/s | >= 10,000 req/s |\n' "$rps"
printf '| daemon RSS after the load | %.1f MiB | - |\n' "$(echo "$busy_rss/1024" | bc -l)"
printf '| POST /flows -> ACTIVE, 3 pods, 4 containers | %.2f s | < 2 s |\n' "$flow_active"
printf '| bare docker run of one container -> /ready (same image) | %.2f s | - |\n' "$bare_ready"
printf '| 3-chain, every pea in a container, via gateway_url (engine port proxy): req/s, p50 | %s req/s, %s | - |\n' "$containers_rps" "$containers_p50"
printf '| the same via gateway_direct_url (workspace network): req/s, p50 | %s req/s, %s | - |\n' "$direct_rps" "$direct_p50"
printf '| 3-chain, jinad flow --transport tcp: req/s, p50 | %s req/s, %s | - |\n' "$local_rps" "$local_p50"
printf '| containers / local tcp throughput: gateway_url, gateway_direct_url | %.0f %%, %.0f %% | >= 70 %% |\n' "$(echo "100*$containers_rps/$local_rps" | bc -l)" "$(echo "100*$direct_rps/$local_rps" | bc -l)"
fi
printf '| GET /metrics with %s objects (mean of 20) | %s ms | - |\n' "$objects" "$metrics_ms"
printf '| GET /events, first page (100), %s rows (mean of 20) | %s ms | - |\n' "$event_rows" "$events_ms"
printf '| GET /events, 1,000 after seq 99,000 / one object of %s rows | %s ms / %s ms | - |\n' "$event_rows" "$events_late_ms" "$events_object_ms"
printf '| jinad workspaces create, 50 MiB directory: throughput, CLI peak RSS | %.0f MiB/s, %.1f MiB | - |\n' "$(echo "50/$upload_s" | bc -l)" "$(echo "$upload_rss/1024" | bc -l)"
