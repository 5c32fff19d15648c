#!/usr/bin/env bash
# The conformance suite against a separate `ace serve` process, as against any deployment:
# URLs and the CA from a target file, and a restart command that kills the server with
# SIGKILL and starts it again on the same data directory (the durability checks).
# Usage: .ci/conformance-live.sh path/to/ace
set -euo pipefail
ace=$(realpath "$1")
work=$(mktemp -d)
trap 'kill -9 $(cat "$work/pid" 2>/dev/null) 2>/dev/null || true; rm -rf "$work"' EXIT
# Free ports, chosen once: the restarted server listens where the first one did.
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }
internal=$(port); external=$(port); gateway=$(port); admin=$(port); publish=$(port); proxy=$(port); kube=$(port)

cat > "$work/start.sh" <<START
#!/usr/bin/env bash
kill -9 \$(cat "$work/pid" 2>/dev/null) 2>/dev/null || true
sleep 0.2
"$ace" serve --data-dir "$work/data" --token-ttl 2s --retry-initial 100ms --retry-max 400ms \
  --connector-internal-addr 127.0.0.1:$internal --connector-external-addr 127.0.0.1:$external \
  --gateway-addr 127.0.0.1:$gateway --admin-addr 127.0.0.1:$admin --publish-addr 127.0.0.1:$publish \
  --proxy-addr 127.0.0.1:$proxy --proxy-url http://127.0.0.1:$proxy --kube-addr 127.0.0.1:$kube \
  --allow-private-egress --backlog-window 8 --max-backlog-events 50 >>"$work/server.log" 2>&1 &
echo \$! > "$work/pid"
START
chmod +x "$work/start.sh"
"$work/start.sh"
for _ in $(seq 50); do
  curl -sf "http://127.0.0.1:$admin/healthz" >/dev/null && break
  sleep 0.2
done

# The suite's subscriber, OAuth server and API listen on loopback: the server allows private
# egress (--allow-private-egress above); ACE's own listeners stay refused.
cat > "$work/target.yaml" <<TARGET
connector_internal: http://127.0.0.1:$internal
connector_external: https://localhost:$external
gateway: https://localhost:$gateway
publish: http://127.0.0.1:$publish
admin: http://127.0.0.1:$admin
admin_token: $(cat "$work/data/admin.token")
proxy: http://127.0.0.1:$proxy
ca: $work/data/ca.crt
token_ttl_seconds: 2
max_backlog_events: 50
restart_command: $work/start.sh
TARGET

status=0
"$ace" conformance --target "$work/target.yaml" --junit "$work/junit.xml" --json "$work/report.json" || status=$?
if [ $status -ne 0 ]; then
  echo "--- server log"; tail -50 "$work/server.log"
  exit $status
fi
# Every check ran (none skipped) and the JUnit report says so.
grep -q 'failures="0" skipped="0"' "$work/junit.xml" || { head -3 "$work/junit.xml"; exit 1; }
echo "ok: every check passed against a separate process, restarts by SIGKILL included"

# Again, with every resource managed through the Kubernetes API (the adapter that checks a
# Kyma cluster), from the kubeconfig the server wrote: the same results.
status=0
"$ace" conformance --target "$work/target.yaml" --kubeconfig "$work/data/kubeconfig" \
  --junit "$work/junit-kube.xml" || status=$?
if [ $status -ne 0 ]; then
  echo "--- server log"; tail -50 "$work/server.log"
  exit $status
fi
grep -q 'failures="0" skipped="0"' "$work/junit-kube.xml" || { head -3 "$work/junit-kube.xml"; exit 1; }
echo "ok: the same through the Kubernetes API"
