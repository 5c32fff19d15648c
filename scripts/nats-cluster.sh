#!/usr/bin/env bash
# Runs a three-node NATS JetStream cluster on 127.0.0.1 for development and tests of ACE's
# replicated store (`ace serve --store jetstream`).
#
# Usage:
#   scripts/nats-cluster.sh start   DIR [BASE_PORT]  start the nodes not running, wait until all are healthy
#   scripts/nats-cluster.sh stop    DIR              stop all nodes (SIGTERM, SIGKILL after a grace period)
#   scripts/nats-cluster.sh status  DIR              per-node state; exit 0 only if all three are healthy
#   scripts/nats-cluster.sh kill    DIR N            kill -9 node N (1, 2 or 3), keep its store
#   scripts/nats-cluster.sh restart DIR N            stop node N if running, start it on the same store,
#                                                    wait until it is healthy and has caught up
#   scripts/nats-cluster.sh urls    DIR              print the client URLs, comma-separated
#
# Ports, with BASE_PORT (default 4222) remembered in DIR/base_port by `start`:
#   node nI (I = 1..3)  client BASE_PORT+I-1, cluster route BASE_PORT+100+I-1,
#                       HTTP monitoring BASE_PORT+200+I-1 (/healthz, /jsz, /varz)
# Files in DIR: nI.conf (generated on each start), nI/ (JetStream store), nI.log (appended),
# nI.pid. Every node runs with `jetstream { sync_interval: always }`.
#
# Environment:
#   NATS_SERVER            nats-server binary (default: the one scripts/nats-install.sh installs)
#   ACE_NATS_DIR           passed on to scripts/nats-install.sh
#   NATS_CLUSTER_TIMEOUT   seconds to wait for health (default 30)
#   NATS_CLUSTER_GRACE     seconds between SIGTERM and SIGKILL on stop/restart (default 5)
set -euo pipefail

usage() {
  # The comment block at the top of this file, without the '# '.
  awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"
}
die() { echo "nats-cluster: $*" >&2; exit 1; }

if [ $# -ge 1 ] && { [ "$1" = -h ] || [ "$1" = --help ] || [ "$1" = help ]; }; then
  usage
  exit 0
fi
if [ $# -lt 2 ]; then
  usage >&2
  exit 2
fi

cmd=$1 dir=$2
shift 2
NODES=(1 2 3)
TIMEOUT=${NATS_CLUSTER_TIMEOUT:-30}
GRACE=${NATS_CLUSTER_GRACE:-5}
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)

is_uint() { case "$1" in '' | *[!0-9]*) return 1 ;; *) return 0 ;; esac; }
is_uint "$TIMEOUT" || die "NATS_CLUSTER_TIMEOUT must be a whole number of seconds, got '$TIMEOUT'"
is_uint "$GRACE" || die "NATS_CLUSTER_GRACE must be a whole number of seconds, got '$GRACE'"
node_arg() {
  case "${1:-}" in
    1 | 2 | 3) ;;
    *) die "node must be 1, 2 or 3, got '${1:-}'" ;;
  esac
}

saved_base() { cat "$dir/base_port" 2>/dev/null || true; }
base_port() {
  local b
  b=$(saved_base)
  [ -n "$b" ] || die "$dir/base_port not found; run '$0 start $dir [BASE_PORT]' first"
  echo "$b"
}
client_port() { echo $(($1 + $2 - 1)); }
route_port() { echo $(($1 + 100 + $2 - 1)); }
http_port() { echo $(($1 + 200 + $2 - 1)); }

pid_of() { cat "$dir/n$1.pid" 2>/dev/null || true; }

# True if PID is a live process that is not a zombie.
alive_pid() {
  local p=$1 state
  is_uint "$p" || return 1
  kill -0 "$p" 2>/dev/null || return 1
  if [ -d /proc/self ]; then
    # The process may exit between these reads; a missing /proc entry means it is gone.
    state=$(sed 's/^.*) //' "/proc/$p/stat" 2>/dev/null | cut -d' ' -f1)
    [ -n "$state" ] && [ "$state" != Z ]
  fi
}

# True if PID is a live process started from node I's config file, so a stale pid file whose
# number was reused by another process is never signalled.
is_node_pid() {
  local i=$1 p=$2
  alive_pid "$p" || return 1
  if [ -d /proc/self ]; then
    { tr '\0' '\n' <"/proc/$p/cmdline"; } 2>/dev/null | grep -qxF "$dir/n$i.conf"
  else
    ps -p "$p" -o args= 2>/dev/null | grep -qF "$dir/n$i.conf"
  fi
}
running() { is_node_pid "$1" "$(pid_of "$1")"; }

healthy() {
  # Without js-enabled-only, /healthz also requires contact with a JetStream meta leader and
  # that this node's streams and consumers are current, so the cluster can take writes.
  curl -fsS --max-time 2 -o /dev/null "http://127.0.0.1:$(http_port "$(base_port)" "$1")/healthz" 2>/dev/null
}

# Just after a restart, nats-server 2.15.1 can answer /healthz OK before the node knows the
# leader of a stream and before it has caught up (seen: the last 100 messages missing for about
# a second). So a node is ready only when, for every replicated stream it holds, it knows the
# leader and its last sequence has reached the one the leader reported a moment before.
caught_up() {
  command -v python3 >/dev/null || return 0
  python3 - "$(base_port)" "$1" <<'PY'
import json, sys, urllib.request

base, me = int(sys.argv[1]), int(sys.argv[2])

def streams(node):
    url = f"http://127.0.0.1:{base + 200 + node - 1}/jsz?streams=true"
    with urllib.request.urlopen(url, timeout=2) as r:
        j = json.load(r)
    return {(a["name"], s["name"]): s
            for a in j.get("account_details") or [] for s in a.get("stream_detail") or []}

try:
    mine = streams(me)
    for key, s in mine.items():
        leader = (s.get("cluster") or {}).get("leader") or ""
        if not leader:
            sys.exit(1)  # no leader known yet
        if leader == f"n{me}":
            continue
        if not (leader.startswith("n") and leader[1:].isdigit()):
            continue  # not one of this script's nodes
        target = streams(int(leader[1:])).get(key)
        if target is None:
            sys.exit(1)
        now = streams(me).get(key)
        if now is None or now["state"]["last_seq"] < target["state"]["last_seq"]:
            sys.exit(1)
except Exception:
    sys.exit(1)
PY
}

meta_leader() {
  curl -fsS --max-time 2 "http://127.0.0.1:$(http_port "$(base_port)" "$1")/jsz" 2>/dev/null |
    tr -d '\n' | grep -o '"meta_cluster": *{[^}]*' | grep -o '"leader": *"[^"]*"' | sed 's/.*"\([^"]*\)"$/\1/' || true
}

port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

urls() {
  local b i out=
  b=$(base_port)
  for i in "${NODES[@]}"; do out+="${out:+,}nats://127.0.0.1:$(client_port "$b" "$i")"; done
  echo "$out"
}

find_binary() {
  local bin=${NATS_SERVER:-}
  if [ -z "$bin" ]; then
    bin=$("$here/nats-install.sh" | tail -n 1) || die "scripts/nats-install.sh failed"
  fi
  [ -x "$bin" ] || die "nats-server binary '$bin' is not executable (NATS_SERVER?)"
  echo "$bin"
}

write_config() {
  local i=$1 b=$2
  mkdir -p "$dir/n$i"
  cat >"$dir/n$i.conf" <<CONF
# Generated by scripts/nats-cluster.sh; rewritten on every start. Node n$i of a development
# cluster. See deploy/nats/node.conf.example for an annotated production config.
server_name: n$i
listen: 127.0.0.1:$(client_port "$b" "$i")
http: 127.0.0.1:$(http_port "$b" "$i")
# Replicas forward requests (documents up to 4 MiB) to the leader as one message.
max_payload: 8MB

jetstream {
  store_dir: "$dir/n$i"
  # fsync each write before it is acknowledged, so kill -9 of a node loses nothing it acked.
  sync_interval: always
  max_memory_store: 256MB
  max_file_store: 4GB
}

cluster {
  name: ace-dev
  listen: 127.0.0.1:$(route_port "$b" "$i")
  routes: [
    nats-route://127.0.0.1:$(route_port "$b" 1)
    nats-route://127.0.0.1:$(route_port "$b" 2)
    nats-route://127.0.0.1:$(route_port "$b" 3)
  ]
}
CONF
}

# The end of each node's log, without the "Healthcheck failed" lines that our own polling
# causes, except for the last one, which says what the node was waiting for.
tail_logs() {
  local i
  for i in "$@"; do
    echo "---- $dir/n$i.log (last lines) ----" >&2
    if [ -f "$dir/n$i.log" ]; then
      grep -v 'Healthcheck failed' "$dir/n$i.log" | tail -n 20 >&2 || true
      grep 'Healthcheck failed' "$dir/n$i.log" | tail -n 1 >&2 || true
    else
      echo "(no log)" >&2
    fi
  done
}

# Fails if a port of one of the given nodes is taken: checked before any node starts, so that
# /healthz of another server on the same port can never pass for one of ours.
check_ports() {
  local b i p
  b=$(base_port)
  for i in "$@"; do
    for p in $(client_port "$b" "$i") $(route_port "$b" "$i") $(http_port "$b" "$i"); do
      if port_in_use "$p"; then
        die "port 127.0.0.1:$p (node n$i) is already in use by another process"
      fi
    done
  done
}

start_node() {
  local i=$1 bin=$2
  printf '==== %s: starting n%s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$i" >>"$dir/n$i.log"
  "$bin" -c "$dir/n$i.conf" </dev/null >>"$dir/n$i.log" 2>&1 &
  echo $! >"$dir/n$i.pid"
}

# Waits until each given node answers /healthz and has caught up; fails early if one exits.
wait_healthy() {
  local deadline=$((SECONDS + TIMEOUT)) i pending
  while :; do
    pending=()
    for i in "$@"; do
      # alive_pid, not running: just after the fork the child may not have exec'd nats-server yet.
      alive_pid "$(pid_of "$i")" || { echo "nats-cluster: node n$i exited during startup" >&2; tail_logs "$i"; return 1; }
      { healthy "$i" && caught_up "$i"; } || pending+=("$i")
    done
    [ ${#pending[@]} -gt 0 ] || return 0
    if [ $SECONDS -ge $deadline ]; then
      echo "nats-cluster: not healthy after ${TIMEOUT}s:$(for i in "${pending[@]}"; do printf ' n%s (http://127.0.0.1:%s/healthz)' "$i" "$(http_port "$(base_port)" "$i")"; done)" >&2
      tail_logs "${pending[@]}"
      return 1
    fi
    sleep 0.2
  done
}

stop_node() {
  local i=$1 p deadline
  p=$(pid_of "$i")
  if is_node_pid "$i" "$p"; then
    kill -TERM "$p" 2>/dev/null || true
    deadline=$((SECONDS + GRACE))
    while is_node_pid "$i" "$p" && [ $SECONDS -lt $deadline ]; do sleep 0.1; done
    if is_node_pid "$i" "$p"; then
      echo "nats-cluster: n$i (pid $p) still running ${GRACE}s after SIGTERM; sending SIGKILL" >&2
      kill -KILL "$p" 2>/dev/null || true
      while is_node_pid "$i" "$p"; do sleep 0.1; done
    fi
    echo "n$i stopped (pid $p)"
  fi
  rm -f "$dir/n$i.pid"
}

kill_node() {
  local i=$1 p
  p=$(pid_of "$i")
  if is_node_pid "$i" "$p"; then
    kill -KILL "$p" 2>/dev/null || true
    while is_node_pid "$i" "$p"; do sleep 0.05; done
    echo "n$i killed (pid $p, SIGKILL)"
  else
    echo "n$i was not running"
  fi
  rm -f "$dir/n$i.pid"
}

# Absolute path, so the generated configs and the pid checks do not depend on the caller's cwd.
if [ "$cmd" = start ]; then
  mkdir -p "$dir"
fi
[ -d "$dir" ] || die "$dir is not a directory"
dir=$(cd "$dir" && pwd -P)

case $cmd in
  start)
    [ $# -le 1 ] || { usage >&2; exit 2; }
    command -v curl >/dev/null || die "curl not found (Debian: apt-get install curl)"
    base=${1:-$(saved_base)}
    base=${base:-4222}
    if ! is_uint "$base" || [ "$base" -lt 1 ] || [ $((base + 202)) -gt 65535 ]; then
      die "bad BASE_PORT '$base' (need 1..65333: ports BASE_PORT..BASE_PORT+202 are used)"
    fi
    old=$(saved_base)
    if [ -n "$old" ] && [ "$old" != "$base" ]; then
      for i in "${NODES[@]}"; do
        running "$i" && die "cluster in $dir runs on base port $old; stop it before starting it on $base"
      done
    fi
    bin=$(find_binary)
    echo "$base" >"$dir/base_port"
    todo=()
    for i in "${NODES[@]}"; do running "$i" || todo+=("$i"); done
    check_ports "${todo[@]}"
    started=()
    for i in "${todo[@]}"; do
      write_config "$i" "$base"
      start_node "$i" "$bin"
      started+=("$i")
    done
    if ! wait_healthy "${NODES[@]}"; then
      for i in "${started[@]}"; do stop_node "$i" >/dev/null; done
      die "start failed; stopped the node(s) this command had started: ${started[*]:-none}"
    fi
    for i in "${NODES[@]}"; do echo "n$i running (pid $(pid_of "$i")) client 127.0.0.1:$(client_port "$base" "$i") monitor http://127.0.0.1:$(http_port "$base" "$i")"; done
    echo "JetStream meta leader: $(meta_leader 1)"
    echo "NATS URLs: $(urls)"
    ;;
  stop)
    [ $# -eq 0 ] || { usage >&2; exit 2; }
    for i in "${NODES[@]}"; do stop_node "$i"; done
    ;;
  status)
    [ $# -eq 0 ] || { usage >&2; exit 2; }
    b=$(base_port)
    ok=0
    for i in "${NODES[@]}"; do
      if ! running "$i"; then
        echo "n$i stopped"
        ok=1
      elif healthy "$i"; then
        echo "n$i running (pid $(pid_of "$i")) healthy, meta leader: $(meta_leader "$i")"
      else
        echo "n$i running (pid $(pid_of "$i")) NOT healthy (http://127.0.0.1:$(http_port "$b" "$i")/healthz)"
        ok=1
      fi
    done
    echo "NATS URLs: $(urls)"
    exit $ok
    ;;
  kill)
    [ $# -eq 1 ] || { usage >&2; exit 2; }
    node_arg "$1"
    kill_node "$1"
    ;;
  restart)
    [ $# -eq 1 ] || { usage >&2; exit 2; }
    node_arg "$1"
    command -v curl >/dev/null || die "curl not found (Debian: apt-get install curl)"
    b=$(base_port)
    bin=$(find_binary)
    stop_node "$1"
    check_ports "$1"
    write_config "$1" "$b"
    start_node "$1" "$bin"
    wait_healthy "$1" || { stop_node "$1" >/dev/null; die "restart of n$1 failed; node stopped"; }
    echo "n$1 running (pid $(pid_of "$1")) healthy, meta leader: $(meta_leader "$1")"
    ;;
  urls)
    [ $# -eq 0 ] || { usage >&2; exit 2; }
    urls
    ;;
  *)
    usage >&2
    exit 2
    ;;
esac
