#!/usr/bin/env bash
# Property-based checks of the connector, gateway, publish and admin OpenAPI specs against a live
# `ace serve`: zero server errors, zero responses that violate the spec, every request the spec
# allows accepted and every one it forbids refused. Usage: .ci/schemathesis.sh ACE_BINARY
set -euo pipefail
ace=$(realpath "$1")
root=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
# On any failure the server's log is shown (debug level for connections), so that a run that
# fails once can be understood from CI's output alone.
finish() {
  status=$?
  kill "${pid:-}" 2>/dev/null || true
  if [ "$status" -ne 0 ] && [ -f "$work/serve.log" ]; then
    echo "ace serve's log (last 200 lines):"; tail -n 200 "$work/serve.log"
  fi
  rm -rf "$work"
}
trap finish EXIT
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }
internal=$(port); external=$(port); gateway=$(port); admin=$(port); publish=$(port); proxy=$(port); kube=$(port)
RUST_LOG="${RUST_LOG:-info,ace_server::edge::listen=debug}" "$ace" serve --data-dir "$work/data" \
  --connector-internal-addr "127.0.0.1:$internal" --connector-external-addr "127.0.0.1:$external" \
  --gateway-addr "127.0.0.1:$gateway" --admin-addr "127.0.0.1:$admin" \
  --publish-addr "127.0.0.1:$publish" --proxy-addr "127.0.0.1:$proxy" --kube-addr "127.0.0.1:$kube" \
  --egress-allow 0.0.0.0/0,::/0 --idle-timeout 10m >"$work/serve.log" 2>&1 &
# Generated targetUrls name any address (0.0.0.0 among them), which the default egress policy
# refuses with a 400 the schema cannot express; every address is allowed here (ACE's own
# listeners stay refused), and the policy itself is checked by impl/server/tests/server/egress.rs.
# Schemathesis keeps several keep-alive connections, some idle for a long while as it tests
# through another; ACE closes a connection idle for --idle-timeout (60s by default), and a
# request sent on one at that very moment fails on the client's side (HTTP/1.1's keep-alive
# race: a client retries, Python's requests does not). The longer limit keeps that race out
# of these checks; the limit itself is checked by impl/server/tests/server/protection.rs.
pid=$!
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$admin/healthz" >/dev/null && break; sleep 0.1; done
admin_url="http://127.0.0.1:$admin"
# The admin API's bearer token, made at the first start (`ace apply` reads it from --data-dir).
admin_token=$(cat "$work/data/admin.token")
printf 'apiVersion: applicationconnector.kyma-project.io/v1alpha1\nkind: RemoteEnvironment\nmetadata:\n  name: ec-default\n' \
  | "$ace" apply -f - --admin-url "$admin_url" --data-dir "$work/data"
url=$("$ace" token ec-default --internal-url "http://127.0.0.1:$internal")
"$ace" connect "$url" --out "$work/client" --ca "$work/data/ca.crt" --key-algorithm ecdsa-p256
cat "$work/client/cert.pem" "$work/client/ca.pem" > "$work/client/chain.pem"
cd "$root"
common=(--config-file .ci/schemathesis.toml --tls-verify "$work/data/ca.crt" --max-examples 50 --seed "${SCHEMATHESIS_SEED:-1}")
# connector.yaml describes two listeners: the tokens operation is the internal API's.
tokens='/v1/remoteenvironments/{reName}/tokens'
schemathesis "${common[0]}" "${common[1]}" run specs/connector.yaml -u "https://localhost:$external" "${common[@]:2}" --exclude-path "$tokens"
schemathesis "${common[0]}" "${common[1]}" run specs/connector.yaml -u "http://127.0.0.1:$internal" --max-examples 50 --seed 1 --include-path "$tokens"
schemathesis "${common[0]}" "${common[1]}" run specs/gateway.yaml -u "https://localhost:$gateway" "${common[@]:2}" \
  --request-cert "$work/client/chain.pem" --request-cert-key "$work/client/key.pem"
schemathesis "${common[0]}" "${common[1]}" run specs/publish.yaml -u "http://127.0.0.1:$publish" "${common[@]:4}"
# The Kubernetes resource API: HTTPS with ACE's CA, the admin token.
schemathesis "${common[0]}" "${common[1]}" run specs/kubernetes.yaml -u "https://localhost:$kube" "${common[@]:2}" \
  -H "Authorization: Bearer $admin_token"
# Last: it creates, changes and deletes resources of every kind.
schemathesis "${common[0]}" "${common[1]}" run specs/admin.yaml -u "http://127.0.0.1:$admin" "${common[@]:4}" \
  -H "Authorization: Bearer $admin_token"
if grep -q -e ' ERROR ' -e 'panicked' "$work/serve.log"; then
  echo "ace serve logged errors:"; grep -e ' ERROR ' -e 'panicked' "$work/serve.log"; exit 1
fi
