#!/usr/bin/env bash
# TTFT of one process (`dynamo serve`) against a frontend and a worker as
# separate processes over NATS, with discovery over NATS alone and in etcd,
# under the same load; two rounds, alternating. Needs nats-server and etcd
# (scripts/test.sh installs both).
#
#   benches/split_ttft.sh target/release/dynamo
set -euo pipefail
B=${1:?usage: benches/split_ttft.sh path/to/dynamo}
export DYN_LOG=error
work=$(mktemp -d)
NATS_PORT=14222 ETCD_PORT=12379 API=18080
nats=$(command -v nats-server || echo /usr/sbin/nats-server)
pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
"$nats" -a 127.0.0.1 -p $NATS_PORT >/dev/null 2>&1 & pids+=($!)
etcd --data-dir "$work/etcd" --listen-client-urls http://127.0.0.1:$ETCD_PORT \
  --advertise-client-urls http://127.0.0.1:$ETCD_PORT --listen-peer-urls http://127.0.0.1:12380 \
  --initial-advertise-peer-urls http://127.0.0.1:12380 --initial-cluster default=http://127.0.0.1:12380 \
  >/dev/null 2>&1 & pids+=($!)
until curl -sf http://127.0.0.1:$ETCD_PORT/health | grep -q true; do sleep 0.1; done
LOAD=(--url http://127.0.0.1:$API --requests 400 --concurrency 16 --max-tokens 32 --quiet)
up() { for _ in $(seq 300); do curl -sf localhost:$API/v1/models | grep -q mock-model && return; sleep 0.1; done; echo "frontend not up" >&2; exit 1; }
run() { # label, then the processes to start
  local label=$1; shift; local started=()
  for cmd in "$@"; do $cmd >/dev/null & started+=($!); done
  up
  "$B" load "${LOAD[@]}" | grep -E "TTFT|requests/s" | sed "s/^/$label: /"
  kill "${started[@]}"; wait "${started[@]}" 2>/dev/null || true
}
echo "columns of the TTFT line: mean p50 p90 p99 (ms)"
mock=(--ttft-ms 20 --itl-ms 2)
for round in 1 2; do
  run one-process "$B serve --http 127.0.0.1:$API --system-port 18081 ${mock[*]}"
  for d in nats etcd; do
    e=""; [ $d = etcd ] && e="--etcd 127.0.0.1:$ETCD_PORT"
    run "split-$d" "$B serve --nats nats://127.0.0.1:$NATS_PORT $e --role worker --system-port 18082 ${mock[*]}" \
      "$B serve --nats nats://127.0.0.1:$NATS_PORT $e --role frontend --http 127.0.0.1:$API"
  done
done
