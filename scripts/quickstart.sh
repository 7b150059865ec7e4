#!/usr/bin/env bash
# Shoal quickstart: on a fresh Debian machine, as root, installs what is missing, builds Shoal,
# starts a local cluster (a private containerd, three coordinators and three agents as separate
# processes on loopback, each agent its own node), builds a small demo image, applies
# examples/demo/stack.yaml and shows where everything runs.
#
#   bash scripts/quickstart.sh          # bring it up
#   bash scripts/quickstart.sh stop     # stop everything and delete its state
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
QS=${SHOAL_QUICKSTART_DIR:-/tmp/shoal-quickstart}
BIN=$REPO/target/debug
NS_PREFIX=shoal-qs

stop() {
  if [ -d "$QS/pids" ]; then
    for f in "$QS"/pids/*; do
      [ -e "$f" ] || continue
      kill "$(cat "$f")" 2>/dev/null || true
    done
  fi
  if [ -S "$QS/containerd.sock" ]; then
    for ns in $(ctr --address "$QS/containerd.sock" namespaces ls -q 2>/dev/null | grep "^$NS_PREFIX" || true); do
      for t in $(ctr --address "$QS/containerd.sock" -n "$ns" tasks ls -q 2>/dev/null || true); do
        ctr --address "$QS/containerd.sock" -n "$ns" tasks kill -s SIGKILL "$t" >/dev/null 2>&1 || true
      done
      sleep 1
      for t in $(ctr --address "$QS/containerd.sock" -n "$ns" tasks ls -q 2>/dev/null || true); do
        ctr --address "$QS/containerd.sock" -n "$ns" tasks rm -f "$t" >/dev/null 2>&1 || true
      done
    done
    kill "$(cat "$QS/containerd.pid" 2>/dev/null)" 2>/dev/null || true
    sleep 1
  fi
  # Log helpers and shims outlive the agents by design; the quickstart cleans up its own.
  pkill -f "$QS/" 2>/dev/null || true
  for m in $(awk -v qs="$QS" '$2 ~ "^"qs {print $2}' /proc/mounts | sort -r); do umount -l "$m" 2>/dev/null || true; done
  rm -rf "$QS"
  echo "quickstart stopped and cleaned up ($QS removed)"
}

if [ "${1:-}" = "stop" ]; then
  stop
  exit 0
fi
if [ -d "$QS" ]; then
  echo "an earlier quickstart is still here; stopping it first"
  stop
fi

echo "==> installing dependencies"
bash scripts/install-deps.sh
echo "==> building (debug)"
cargo build --locked --workspace --bins

mkdir -p "$QS/pids"
cat > "$QS/containerd.toml" <<TOML
version = 2
root = "$QS/containerd/root"
state = "$QS/containerd/state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "$QS/containerd.sock"
[debug]
  address = ""
[metrics]
  address = ""
TOML
echo "==> starting containerd ($QS/containerd.sock)"
containerd --config "$QS/containerd.toml" --address "$QS/containerd.sock" \
  --root "$QS/containerd/root" --state "$QS/containerd/state" >"$QS/containerd.log" 2>&1 &
echo $! > "$QS/containerd.pid"
for _ in $(seq 100); do [ -S "$QS/containerd.sock" ] && break; sleep 0.1; done

echo "==> bootstrapping the first coordinator (cluster CA, admin certificate, join tokens)"
"$BIN/shoal-coordinator" --id 1 --listen 127.0.0.1:17401 --data-dir "$QS/coordinator-1" --bootstrap \
  >"$QS/coordinator-1.log" 2>&1 &
echo $! > "$QS/pids/coordinator-1"
# shoalctl authenticates with the admin certificate the bootstrap wrote.
export SHOAL_TLS_DIR=$QS/coordinator-1/admin
export SHOAL_COORDINATORS=127.0.0.1:17401
for _ in $(seq 100); do
  "$BIN/shoalctl" token show coordinator >"$QS/coordinator.token" 2>/dev/null && break
  sleep 0.2
done
"$BIN/shoalctl" token show agent >"$QS/agent.token"
chmod 600 "$QS/coordinator.token" "$QS/agent.token"

echo "==> joining two more coordinators with the coordinator token"
ENDPOINTS=127.0.0.1:17401
for i in 2 3; do
  port=$((17400 + i))
  "$BIN/shoal-coordinator" --id "$i" --listen "127.0.0.1:$port" --data-dir "$QS/coordinator-$i" \
    --join 127.0.0.1:17401 --token-file "$QS/coordinator.token" >"$QS/coordinator-$i.log" 2>&1 &
  echo $! > "$QS/pids/coordinator-$i"
  ENDPOINTS="$ENDPOINTS,127.0.0.1:$port"
  sleep 1
done
export SHOAL_COORDINATORS=$ENDPOINTS
for _ in $(seq 100); do
  n=$("$BIN/shoalctl" -o json cluster status 2>/dev/null | grep -c '"role": "voter"\|"role": "leader"' || true)
  [ "$n" = 3 ] && break
  sleep 0.3
done
"$BIN/shoalctl" cluster status

echo "==> building the demo image"
"$BIN/shoal-demo-image" "$QS/shoal-demo.tar" shoal-demo:latest

echo "==> starting three agents (each joins with the agent token)"
for i in 1 2 3; do
  "$BIN/shoal-agent" --node-name "node-$i" --label "role=$([ "$i" = 3 ] && echo compute || echo controller)" \
    --coordinators "$ENDPOINTS" --containerd-socket "$QS/containerd.sock" --namespace "$NS_PREFIX-node-$i" \
    --data-dir "$QS/agent-$i/data" --log-dir "$QS/agent-$i/logs" --volumes-dir "$QS/agent-$i/volumes" \
    --listen "127.0.0.1:$((17500 + i))" --import-image "$QS/shoal-demo.tar" \
    --token-file "$QS/agent.token" >"$QS/agent-$i.log" 2>&1 &
  echo $! > "$QS/pids/agent-$i"
done
for _ in $(seq 200); do
  n=$("$BIN/shoalctl" -o json node ls 2>/dev/null | grep -c '"status": "ready"' || true)
  [ "$n" = 3 ] && break
  sleep 0.3
done
"$BIN/shoalctl" node ls

echo "==> planning and applying examples/demo/stack.yaml"
"$BIN/shoalctl" plan -f examples/demo/stack.yaml
"$BIN/shoalctl" apply -f examples/demo/stack.yaml

echo "==> waiting for every demo service to run"
ok=""
for _ in $(seq 300); do
  if "$BIN/shoalctl" -o json task ls 2>/dev/null | python3 -c '
import json, sys
tasks = json.load(sys.stdin)
live = [t for t in tasks if t["desired_state"] == "running"]
want = {"db": 1, "api": 1, "node-agent": 3}
running = {}
for t in live:
    if t["state"] == "running":
        running[t["service"]] = running.get(t["service"], 0) + 1
jobs = [t for t in tasks if t["service"] == "db-bootstrap" and t["state"] == "complete"]
sys.exit(0 if all(running.get(s, 0) >= n for s, n in want.items()) and jobs else 1)
'; then ok=1; break; fi
  sleep 1
done
"$BIN/shoalctl" service ls
"$BIN/shoalctl" task ls
if [ -z "$ok" ]; then
  echo "quickstart: the demo stack did not converge; logs are in $QS" >&2
  exit 1
fi
cat <<MSG

Shoal is running: three coordinators, three agents (node-1..3), the demo stack converged.
Every connection is mutual TLS with the cluster's own CA; shoalctl uses the admin certificate.
Try:
  export SHOAL_COORDINATORS=$ENDPOINTS SHOAL_TLS_DIR=$SHOAL_TLS_DIR
  $BIN/shoalctl cluster status
  $BIN/shoalctl service ps api
  $BIN/shoalctl events
  $BIN/shoalctl exec \$($BIN/shoalctl -o json task ls --service db | python3 -c 'import json,sys; print([t["id"] for t in json.load(sys.stdin) if t["state"]=="running"][0])') -- ls /
Logs: $QS/*.log.  Stop and clean up:  bash scripts/quickstart.sh stop
MSG
