#!/usr/bin/env bash
# Installs podman on a Debian/Ubuntu machine and writes a containers.conf that works inside an
# unprivileged CI container. Idempotent: returns at once when podman is already usable.
#   scripts/podman-setup.sh            (needs root, or sudo without a password)
set -euo pipefail

conf_dir=/etc/containers
if [ "$(id -u)" -ne 0 ]; then
  conf_dir="${XDG_CONFIG_HOME:-$HOME/.config}/containers"
fi

write_conf() {
  mkdir -p "$conf_dir"
  if [ ! -f "$conf_dir/containers.conf" ] || ! grep -q '^default_ulimits' "$conf_dir/containers.conf"; then
    cat >>"$conf_dir/containers.conf" <<'CONF'
[containers]
# CI containers often forbid raising rlimits; do not ask for any
default_ulimits = []

[engine]
# crun refuses hosts with cgroups in hybrid mode (common in CI containers); runc with
# cgroupfs works there and everywhere else
runtime = "runc"
cgroup_manager = "cgroupfs"
CONF
  fi
}

if command -v podman >/dev/null 2>&1 && command -v runc >/dev/null 2>&1; then
  write_conf
  exit 0
fi

sudo=""
if [ "$(id -u)" -ne 0 ]; then
  sudo="sudo"
fi

export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends podman runc fuse-overlayfs uidmap >/dev/null
write_conf
podman info >/dev/null
echo "podman-setup: $(podman --version)"
