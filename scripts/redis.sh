#!/usr/bin/env bash
# redis.sh: make sure redis-server is installed, and optionally that one runs.
#
#   scripts/redis.sh install   install redis-server (and systemd-analyze, for the unit
#                              tests) if missing; tests start their own servers
#   scripts/redis.sh run CMD…  run CMD with JOBD_REDIS_URL pointing at a Redis:
#                              the one at 127.0.0.1:6379 if it answers, otherwise a
#                              private redis-server on a free port, stopped when CMD exits.
set -euo pipefail

hint="redis-server is not installed and could not be installed here.
Install it, then run this again:
    sudo apt-get update && sudo apt-get install -y redis-server"

# install [tests]: redis-server; with "tests", also systemd-analyze.
install() {
  local pkgs=""
  command -v redis-server >/dev/null 2>&1 || pkgs="redis-server"
  if [ "${1:-}" = tests ]; then
    command -v systemd-analyze >/dev/null 2>&1 || pkgs="$pkgs systemd"
  fi
  [ -z "$pkgs" ] && return 0
  hint="These packages are missing and could not be installed here:$pkgs
Install them, then run this again:
    sudo apt-get update && sudo apt-get install -y$pkgs"
  echo "redis.sh: installing$pkgs with apt-get" >&2
  local sudo=""
  if [ "$(id -u)" != 0 ]; then
    if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then sudo="sudo -n"; else
      echo "$hint" >&2; exit 1
    fi
  fi
  if ! command -v apt-get >/dev/null 2>&1; then echo "$hint" >&2; exit 1; fi
  # shellcheck disable=SC2086
  $sudo apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq $pkgs >&2 \
    || { echo "$hint" >&2; exit 1; }
  command -v redis-server >/dev/null 2>&1 || { echo "$hint" >&2; exit 1; }
}

# answers HOST PORT: does a Redis answer PING there?
answers() {
  timeout 2 bash -c "exec 3<>/dev/tcp/$1/$2 && printf 'PING\r\n' >&3 && head -c5 <&3" 2>/dev/null | grep -q PONG
}

run() {
  if [ -n "${JOBD_REDIS_URL:-}" ]; then exec "$@"; fi
  if answers 127.0.0.1 6379; then
    JOBD_REDIS_URL=redis://127.0.0.1:6379/0 exec "$@"
  fi
  install
  local port=16379
  while answers 127.0.0.1 "$port" || (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do port=$((port + 1)); done
  dir=$(mktemp -d)
  # Durable as jobd wants it (docs/failures.md), so the demo shows no warning.
  redis-server --port "$port" --bind 127.0.0.1 --save "" --appendonly yes --appendfsync always --dir "$dir" >"$dir/redis.log" 2>&1 &
  pid=$!
  trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null; rm -rf "$dir"' EXIT
  for _ in $(seq 50); do answers 127.0.0.1 "$port" && break; sleep 0.1; done
  answers 127.0.0.1 "$port" || { echo "redis.sh: private redis-server did not start:" >&2; cat "$dir/redis.log" >&2; exit 1; }
  echo "redis.sh: no Redis at 127.0.0.1:6379; started a private one at 127.0.0.1:$port" >&2
  echo "redis.sh: in another terminal: export JOBD_REDIS_URL=redis://127.0.0.1:$port/0 JOBD_CONFIG=$PWD/jobs.example.yaml (then bin/jobd status, bin/jobd history heartbeat, ...)" >&2
  JOBD_REDIS_URL="redis://127.0.0.1:$port/0" "$@"
}

case "${1:-}" in
  install) install tests ;;
  run) shift; run "$@" ;;
  *) echo "usage: scripts/redis.sh install | run CMD [ARGS...]" >&2; exit 2 ;;
esac
