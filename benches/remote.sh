#!/usr/bin/env bash
# What a remote pod costs (a benchmark, not a test): the p50 latency of one request through a
# 3-pod chain run by `jinad flow` on host A, with the middle pod local, then on host B's daemon
# (`host:`), over a real link between two network namespaces (veth, own addresses; B's containers
# published on B's end of the link). wrk, 1 connection, 1 document per request, from host A.
# Goal (issue 9): the remote pod adds < 1 ms to the p50.
# Needs: root (ip netns), a release build, the base image (docker/build-base-image.sh), wrk.
set -euo pipefail
cd "$(dirname "$0")/.."
DEFAULT_TEMPLATE='jinad/python:{python}-bookworm'
BASE_TEMPLATE="${BASE_TEMPLATE:-$DEFAULT_TEMPLATE}"
BIN="$(pwd)/${JINAD_BIN:-target/release/jinad}"
DURATION="${DURATION:-10s}"
P=jrbench
WORK="$(mktemp -d /tmp/jinad-remote-bench.XXXXXX)"
TOKEN="bench-token-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')"
command -v wrk >/dev/null || { echo "wrk is needed: apt-get install wrk" >&2; exit 1; }
[ "$(id -u)" = 0 ] || { echo "run as root: the bench makes network namespaces" >&2; exit 1; }
[ -x "$BIN" ] || cargo build --release

down() {
  kill "${FLOW:-}" "${DAEMON:-}" 2>/dev/null || true
  sleep 1
  for n in a b; do ip netns del "$P$n" 2>/dev/null || true; ip link del "$P$n-r" 2>/dev/null || true; done
  while iptables -D DOCKER-USER -i "$P+" -o "$P+" -j ACCEPT 2>/dev/null; do :; done
  rm -rf "$WORK"
}
trap down EXIT
down; WORK="$(mktemp -d /tmp/jinad-remote-bench.XXXXXX)"
iptables -I DOCKER-USER -i "$P+" -o "$P+" -j ACCEPT
k=0
for n in a b; do
  k=$((k + 1)); ns="$P$n"
  ip netns add "$ns"
  ip link add "$ns-r" type veth peer name "$ns-n"
  ip link set "$ns-n" netns "$ns"
  ip addr add "10.79.$k.1/24" dev "$ns-r"; ip link set "$ns-r" up
  ip netns exec "$ns" ip addr add "10.79.$k.2/24" dev "$ns-n"
  ip netns exec "$ns" ip link set "$ns-n" up
  ip netns exec "$ns" ip link set lo up
  ip netns exec "$ns" ip route add default via "10.79.$k.1"
done

echo "$TOKEN" > "$WORK/token"
mkdir -p "$WORK/data"
ip netns exec "${P}b" "$BIN" serve --data-dir "$WORK/data" --host 10.79.2.2 --port 8000 --token-file "$WORK/token" \
  --publish-ip 10.79.2.1 --advertise-host 10.79.2.1 --network-pool 10.219.0.0/16 \
  --base-image-template "$BASE_TEMPLATE" >"$WORK/daemon.out" 2>"$WORK/daemon.err" &
DAEMON=$!
until grep -q listening "$WORK/daemon.out" 2>/dev/null; do sleep 0.1; done

cat > "$WORK/post.lua" <<'LUA'
wrk.method = "POST"
wrk.body = '{"data": [{"text": "hello world, one hundred bytes of text in a document, more or less, for the bench"}]}'
wrk.headers["Content-Type"] = "application/json"
LUA

run_flow() { # $1: YAML; prints "req/s p50"
  mkdir -p "$WORK/flow"; printf '%s' "$1" > "$WORK/flow/flow.yml"
  : > "$WORK/flow.out"
  ip netns exec "${P}a" env JINAD_TOKEN_B="$TOKEN" "$BIN" flow "$WORK/flow/flow.yml" --host 10.79.1.2 --port 9000 \
    --transport tcp >"$WORK/flow.out" 2>"$WORK/flow.err" &
  FLOW=$!
  until grep -q "ready" "$WORK/flow.out" 2>/dev/null; do
    kill -0 "$FLOW" 2>/dev/null || { cat "$WORK/flow.err" >&2; exit 1; }
    sleep 0.2
  done
  # The remote case must really run the pod on B: the flow says where, B lists it.
  if grep -q "host:" "$WORK/flow/flow.yml"; then
    grep -q "pod mid runs on 10.79.2.2:8000" "$WORK/flow.err" || { echo "mid is not on host B" >&2; cat "$WORK/flow.err" >&2; exit 1; }
    [ "$(curl -s -H "Authorization: Bearer $TOKEN" http://10.79.2.2:8000/pods | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))')" = 1 ] ||
      { echo "host B does not list the pod" >&2; exit 1; }
  fi
  ip netns exec "${P}a" wrk -t1 -c1 -d2s -s "$WORK/post.lua" http://10.79.1.2:9000/index >/dev/null   # warm-up
  ip netns exec "${P}a" wrk -t1 -c1 -d"$DURATION" --latency -s "$WORK/post.lua" http://10.79.1.2:9000/index |
    awk '/Requests\/sec/ {r=$2} /^ +50%/ {p=$2} END {print r, p}'
  kill -INT "$FLOW"; wait "$FLOW" || true; FLOW=
}

chain() { # $1: extra lines of the middle pod
  printf 'jtype: Flow\nexecutors:\n  - name: a\n  - name: mid\n%s  - name: c\n' "$1"
}
read -r local_rps local_p50 < <(run_flow "$(chain '')")
remote_mid="$(printf '    host: 10.79.2.2:8000\n    token: ${{ ENV.JINAD_TOKEN_B }}\n')
"
run_flow "$(chain "$remote_mid")" >/dev/null   # first run: upload + build on B
read -r remote_rps remote_p50 < <(run_flow "$(chain "$remote_mid")")

to_ms() { awk -v v="$1" 'BEGIN { if (v ~ /us$/) printf "%.3f", v / 1000; else if (v ~ /ms$/) printf "%.3f", v + 0; else printf "%.3f", v * 1000 }'; }
lp=$(to_ms "$local_p50"); rp=$(to_ms "$remote_p50")
printf '\n| 3-chain via the gateway on host A, 1 connection | requests/s | p50 |\n|---|---|---|\n'
printf '| middle pod local (`jinad flow --transport tcp`) | %s | %s ms |\n' "$local_rps" "$lp"
printf '| middle pod on host B (`host:`, over the namespace link) | %s | %s ms |\n' "$remote_rps" "$rp"
printf '| the remote pod adds | | **%s ms** (goal: < 1 ms) |\n' "$(awk -v a="$rp" -v b="$lp" 'BEGIN {printf "%.3f", a - b}')"
