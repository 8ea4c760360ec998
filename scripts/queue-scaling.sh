#!/usr/bin/env bash
# Scaling of `s2i bench --queue` on this machine: the same benchmark run locally, then through a job queue with
# 1 worker process, 2 worker processes (each with all cores' threads) and 2 worker processes with --threads 1.
# Starts its own redis-server (loopback, no persistence) on a free port; prints the wall-clock time of each run
# and checks that every run wrote the same rows. Usage: scripts/queue-scaling.sh [ROUNDS] (default 1).
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-1}
S2I="node bin/s2i.js"
WORK=$(mktemp -d /tmp/s2i-queue-scaling-XXXXXX)
PORT=$(node -e "const s=require('net').createServer().listen(0,'127.0.0.1',()=>{console.log(s.address().port);s.close()})")
Q="redis://127.0.0.1:$PORT/0"
BENCH=(bench --suite shapes-2 --split tuning --limit 12 --seeds 0,1 --methods none,suppress --model models/shapes)
WORKERS=()
cleanup() {
  for p in "${WORKERS[@]}"; do kill "$p" 2>/dev/null || true; done
  [ -n "${REDIS:-}" ] && kill "$REDIS" 2>/dev/null || true
}
trap cleanup EXIT

redis-server --port "$PORT" --bind 127.0.0.1 --save '' --appendonly no --dir "$WORK" >"$WORK/redis.log" &
REDIS=$!
until redis-cli -p "$PORT" ping >/dev/null 2>&1; do sleep 0.1; done

# Warm ONNX Runtime's optimized-model cache, so that no configuration pays for the first compilation.
$S2I "${BENCH[@]}" --limit 1 --seeds 0 --out "$WORK/warm" >/dev/null 2>&1

start_workers() { # N [worker flags...]
  local n=$1
  shift
  WORKERS=()
  for i in $(seq "$n"); do
    $S2I worker --queue "$Q" --model models/shapes "$@" >"$WORK/worker-$i.log" 2>&1 &
    WORKERS+=($!)
  done
  for i in $(seq "$n"); do until grep -q 'taking jobs' "$WORK/worker-$i.log"; do sleep 0.2; done; done
}
stop_workers() {
  for p in "${WORKERS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${WORKERS[@]}"; do wait "$p" 2>/dev/null || true; done
  WORKERS=()
}
timed() { # NAME command... : wall-clock seconds of the command
  local name=$1
  shift
  local t0 t1
  t0=$(date +%s.%N)
  "$@" >"$WORK/$name.out" 2>"$WORK/$name.err"
  t1=$(date +%s.%N)
  echo "$name $(awk "BEGIN{printf \"%.1f\", $t1 - $t0}")" | tee -a "$WORK/times"
}

for r in $(seq "$ROUNDS"); do
  timed "local-$r" $S2I "${BENCH[@]}" --out "$WORK/local-$r"
  start_workers 1
  timed "queue-1worker-$r" $S2I "${BENCH[@]}" --out "$WORK/q1-$r" --queue "$Q"
  stop_workers
  start_workers 2
  timed "queue-2workers-$r" $S2I "${BENCH[@]}" --out "$WORK/q2-$r" --queue "$Q"
  stop_workers
  start_workers 2 --threads 1
  timed "queue-2workers-1thread-$r" $S2I "${BENCH[@]}" --out "$WORK/q2t1-$r" --queue "$Q"
  stop_workers
done

# Every run must have written the same rows (timing fields aside).
node -e '
const fs = require("fs");
const rows = (d) => fs.readFileSync(d + "/results.jsonl", "utf8").trim().split("\n").map((l) => {
  const r = JSON.parse(l); delete r.seconds; delete r.compile_seconds; delete r.timings; delete r.created;
  return JSON.stringify(r);
}).sort().join("\n");
const dirs = fs.readdirSync(process.argv[1]).filter((d) => /^(local|q)/.test(d)).map((d) => process.argv[1] + "/" + d).filter((d) => fs.statSync(d).isDirectory());
const ref = rows(dirs[0]);
for (const d of dirs) console.log((rows(d) === ref ? "same rows: " : "DIFFERENT rows: ") + d);
' "$WORK"
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg); outputs in $WORK"
