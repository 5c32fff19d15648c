#!/usr/bin/env bash
# The conformance suite against two `ace serve` replicas on one JetStream stream (three
# nats-server processes, R3, sync_interval: always): against both round-robin (the target
# lists both replicas' URLs for every surface; requests go to each in turn), then against
# each replica alone. The restart command kills both replicas with SIGKILL and starts them
# again (the durability checks); the lease passes once the dead leader's key expires.
# Usage: .ci/conformance-replicas.sh path/to/ace   (NATS_SERVER: the nats-server binary;
# KEEP=1 keeps the work directory, with both replicas' logs, and prints where it is)
set -euo pipefail
ace=$(realpath "$1")
repo=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
cleanup() {
  for r in a b; do kill -9 "$(cat "$work/$r.pid" 2>/dev/null)" 2>/dev/null || true; done
  bash "$repo/scripts/nats-cluster.sh" stop "$work/nats" >/dev/null 2>&1 || true
  if [ -n "${KEEP:-}" ]; then echo "work directory kept: $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }

# Three NATS nodes on loopback: client ports base..base+2 (routes +100, monitoring +200).
nats_base=$(( 20000 + RANDOM % 5000 ))
bash "$repo/scripts/nats-cluster.sh" start "$work/nats" "$nats_base" | tail -1
nats=$(bash "$repo/scripts/nats-cluster.sh" urls "$work/nats")

# One identity, made once and copied to each replica.
"$ace" init --data-dir "$work/a" --host localhost --host 127.0.0.1 >/dev/null
mkdir -p "$work/b"
cp "$work/a/"{ca.crt,ca.key,server.crt,server.key,admin.token} "$work/b/"

declare -A internal external gateway admin publish proxy
for r in a b; do
  internal[$r]=$(port); external[$r]=$(port); gateway[$r]=$(port)
  admin[$r]=$(port); publish[$r]=$(port); proxy[$r]=$(port)
done

# Both replicas hand out replica a's connector and gateway URLs, as replicas behind one load
# balancer hand out its URLs.
cat > "$work/start.sh" <<START
#!/usr/bin/env bash
for r in a b; do kill -9 \$(cat "$work/\$r.pid" 2>/dev/null) 2>/dev/null || true; done
sleep 0.2
START
for r in a b; do
  cat >> "$work/start.sh" <<START
"$ace" serve --data-dir "$work/$r" --store jetstream --nats "$nats" --replica-name $r \
  --replica-lease 2s --token-ttl 2s --retry-initial 100ms --retry-max 400ms \
  --connector-internal-addr 127.0.0.1:${internal[$r]} --connector-external-addr 127.0.0.1:${external[$r]} \
  --gateway-addr 127.0.0.1:${gateway[$r]} --admin-addr 127.0.0.1:${admin[$r]} \
  --publish-addr 127.0.0.1:${publish[$r]} --proxy-addr 127.0.0.1:${proxy[$r]} --kube-addr 127.0.0.1:0 \
  --proxy-url http://127.0.0.1:${proxy[$r]} \
  --connector-url https://localhost:${external[a]} --gateway-url https://localhost:${gateway[a]} \
  --allow-private-egress --backlog-window 8 --max-backlog-events 50 >>"$work/$r.log" 2>&1 &
echo \$! > "$work/$r.pid"
START
done
cat >> "$work/start.sh" <<START
for _ in \$(seq 100); do
  curl -sf "http://127.0.0.1:${admin[a]}/readyz" >/dev/null \
    && curl -sf "http://127.0.0.1:${admin[b]}/readyz" >/dev/null && exit 0
  sleep 0.2
done
echo "the replicas did not become ready" >&2; exit 1
START
chmod +x "$work/start.sh"
"$work/start.sh"

# target NAME REPLICAS...: a target file listing the replicas' URLs, replica a's first.
target() {
  local name=$1; shift
  join() { local IFS=,; echo "$*"; }
  local i=() e=() g=() p=() a=() x=() r
  for r in "$@"; do
    i+=("http://127.0.0.1:${internal[$r]}"); e+=("https://localhost:${external[$r]}")
    g+=("https://localhost:${gateway[$r]}"); p+=("http://127.0.0.1:${publish[$r]}")
    a+=("http://127.0.0.1:${admin[$r]}"); x+=("http://127.0.0.1:${proxy[$r]}")
  done
  cat > "$work/$name.yaml" <<TARGET
connector_internal: $(join "${i[@]}")
connector_external: $(join "${e[@]}")
gateway: $(join "${g[@]}")
publish: $(join "${p[@]}")
admin: $(join "${a[@]}")
admin_token: $(cat "$work/a/admin.token")
proxy: $(join "${x[@]}")
ca: $work/a/ca.crt
token_ttl_seconds: 2
max_backlog_events: 50
restart_command: $work/start.sh
TARGET
}

run() {
  local name=$1 status=0
  echo "== conformance against $name"
  "$ace" conformance --target "$work/$name.yaml" --junit "$work/$name.xml" || status=$?
  if [ $status -ne 0 ]; then
    for r in a b; do echo "--- replica $r log"; tail -40 "$work/$r.log"; done
    exit $status
  fi
  grep -q 'failures="0" skipped="0"' "$work/$name.xml" || { head -3 "$work/$name.xml"; exit 1; }
}

target round-robin a b
target replica-a a
target replica-b b
run round-robin
run replica-a
run replica-b
echo "ok: every check passed against two replicas round-robin and against each alone"
