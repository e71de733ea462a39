#!/usr/bin/env bash
# Builds the eventwire image from the Dockerfile with podman.
#   scripts/build-image.sh [tag]            (default tag: localhost/eventwire:dev)
# Without network access to a registry (EVENTWIRE_STANDIN_BASE=1, or when the pull fails),
# it first assembles a stand-in for the base image node:24-bookworm-slim from this Debian
# machine's packages (dash, coreutils' env, glibc, libstdc++) plus the Node 24 binary of the
# `node` devDependency and npm, tags it as the real one, and builds offline from the npm cache.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

tag="${1:-localhost/eventwire:dev}"
base="docker.io/library/node:24-bookworm-slim"
npm_cache="${npm_config_cache:-$HOME/.npm}"
build_args=()
volumes=()

standin_base() {
  local root node npm_dir
  root="$(mktemp -d)"
  trap 'rm -rf "$root"' RETURN
  node="node_modules/node/bin/node"
  npm_dir="$(dirname "$(dirname "$(readlink -f "$(command -v npm)")")")"
  [ -x "$node" ] || { echo "build-image: $node is missing: run npm ci" >&2; return 1; }
  mkdir -p "$root"/{bin,usr/bin,usr/local/bin,usr/local/lib/node_modules,etc,tmp,root,lib64,lib/x86_64-linux-gnu}
  chmod 1777 "$root/tmp"
  cp /bin/dash "$root/bin/dash"
  ln -s dash "$root/bin/sh"
  cp /usr/bin/env "$root/usr/bin/env"
  cp "$node" "$root/usr/local/bin/node"
  cp -r "$npm_dir" "$root/usr/local/lib/node_modules/npm"
  ln -s ../lib/node_modules/npm/bin/npm-cli.js "$root/usr/local/bin/npm"
  ln -s ../lib/node_modules/npm/bin/npx-cli.js "$root/usr/local/bin/npx"
  local lib
  for lib in $(ldd "$node" /bin/dash /usr/bin/env | awk '/=>/ {print $3} /ld-linux/ {print $1}' | sort -u); do
    cp -L "$lib" "$root$lib"
  done
  printf 'root:x:0:0:root:/root:/bin/sh\nnode:x:1000:1000::/home/node:/bin/sh\nnonroot:x:65532:65532::/tmp:/bin/sh\n' >"$root/etc/passwd"
  printf 'root:x:0:\nnode:x:1000:\nnonroot:x:65532:\n' >"$root/etc/group"
  tar -C "$root" -c . | podman import \
    --change 'ENV PATH=/usr/local/bin:/usr/bin:/bin' \
    --change 'ENV NODE_VERSION=24' \
    --change 'CMD ["node"]' \
    --change 'LABEL io.eventwire.standin=true' - "$base" >/dev/null
  echo "build-image: stand-in $base assembled ($("$node" --version), npm $(npm --version))"
}

if ! podman image exists "$base"; then
  if [ "${EVENTWIRE_STANDIN_BASE:-0}" = "1" ] || ! podman pull -q "$base" >/dev/null 2>&1; then
    standin_base
  fi
fi
standin="$(podman image inspect "$base" --format '{{index .Labels "io.eventwire.standin"}}' 2>/dev/null || true)"
if [ "$standin" = "true" ]; then
  # the stand-in comes with no registry access: install from the npm cache only
  build_args+=(--build-arg "NPM_FLAGS=--offline")
  volumes+=(--volume "$npm_cache:/root/.npm")
  network=()
else
  network=()
fi

started=$(date +%s)
podman build --pull=never --isolation="${EVENTWIRE_BUILD_ISOLATION:-chroot}" "${network[@]}" "${volumes[@]}" "${build_args[@]}" -t "$tag" -f Dockerfile .
echo "build-image: built $tag in $(( $(date +%s) - started ))s"
