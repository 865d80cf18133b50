#!/usr/bin/env bash
# Start a Docker Engine if none answers: the way machines without a bridge
# network or overlay storage can run it. Containers then use host networking.
set -euo pipefail
if docker info >/dev/null 2>&1; then exit 0; fi
if [ "$(id -u)" -ne 0 ]; then
  echo "Docker Engine is not running and this is not root: start it first" >&2
  exit 1
fi
nohup dockerd --iptables=false --ip-forward=false --bridge=none --storage-driver=vfs \
  >/tmp/fleetcore-dockerd.log 2>&1 &
for _ in $(seq 1 120); do
  docker info >/dev/null 2>&1 && exit 0
  sleep 0.5
done
echo "dockerd did not start; see /tmp/fleetcore-dockerd.log" >&2
tail -20 /tmp/fleetcore-dockerd.log >&2
exit 1
