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
  # one home for the stand-in Node images: assembleNodeStandin in src/devenv/images.ts
  local node="node_modules/node/bin/node"
  [ -x "$node" ] || { echo "build-image: $node is missing: run npm ci" >&2; return 1; }
  "$node" --input-type=module -e '
    import { assembleNodeStandin } from "./src/devenv/images.ts";
    const s = await assembleNodeStandin({ repoRoot: ".", ref: process.argv[1] });
    console.log("build-image: stand-in " + s.ref + " assembled (" + s.nodeVersion + ", npm " + s.npmVersion + ")");
  ' "$base"
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
