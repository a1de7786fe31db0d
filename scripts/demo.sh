#!/usr/bin/env bash
# demo.sh: a private Redis and three jobd replicas on scripts/demo.yaml.
# Shows the jobs spread over the replicas, the shared-lock pair never
# overlapping, and one replica killed with -9 while the others take over.
# Ctrl-C stops everything; DEMO_ONCE=1 stops after the tour (for CI).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/redis.sh install >/dev/null
dir=$(mktemp -d)
pids=()
cleanup() {
  trap - EXIT INT TERM
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$dir"
  echo; echo "demo: stopped the replicas and Redis, removed $dir"
}
trap cleanup EXIT INT TERM

port=17379
while (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do port=$((port + 1)); done
redis-server --port "$port" --bind 127.0.0.1 --save "" --appendonly yes --appendfsync always --dir "$dir" >"$dir/redis.log" 2>&1 &
pids+=($!)
export JOBD_REDIS_URL="redis://127.0.0.1:$port/0" JOBD_CONFIG=scripts/demo.yaml JOBD_LOG_FORMAT=json
for _ in $(seq 50); do bin/jobd status >/dev/null 2>&1 && break; [ $? -eq 3 ] && break; sleep 0.1; done

declare -A replica
for r in r1 r2 r3; do
  bin/jobd run --replica-id "$r" --shutdown-grace 5s 2>"$dir/$r.log" &
  replica[$r]=$!
  pids+=($!)
done
say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
say "Redis on 127.0.0.1:$port, replicas r1 r2 r3 (logs in $dir). Waiting 7s..."
sleep 7
say "jobd status: the LAST RUN's REPLICA column shows the work spread over r1, r2 and r3"
bin/jobd status || true

say "backup and vacuum share the lock db-maintenance: their runs never overlap (skipped ticks name the holder)"
bin/jobd history backup -n 4 --output | grep -v '| ' || true
bin/jobd history vacuum -n 4 --output | grep -v '| ' || true

victim=$(bin/jobd status --json | grep -o '"holder": "r[123]"' | head -1 | cut -d'"' -f4 || true)
victim=${victim:-r2}
say "kill -9 $victim (it holds db-maintenance): its lock expires after 3s and the others take over"
kill -9 "${replica[$victim]}"
sleep 8
bin/jobd status || true
say "$victim's interrupted run is marked abandoned once its lock expired:"
bin/jobd history backup -n 6 | grep -E "abandoned|STATUS" || true
bin/jobd history vacuum -n 6 | grep abandoned || true

if [ "${DEMO_ONCE:-}" = 1 ]; then exit 0; fi
say "Now watching jobd status (its heartbeat disappears within 15s). Ctrl-C to stop everything."
bin/jobd status --watch || true
