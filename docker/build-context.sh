#!/usr/bin/env bash
# Prepares docker/context: a root filesystem holding the release `sluice` binary and the
# shared libraries it links (as `ldd` lists them), and the Dockerfile. `docker-compose build`
# then builds the image FROM scratch, with nothing pulled from a registry.
#
# SLUICE_PROFILE=debug uses the debug build instead (the docker tests do, to skip a
# release build).
set -euo pipefail
cd "$(dirname "$0")/.."
target=${CARGO_TARGET_DIR:-target}
profile=${SLUICE_PROFILE:-release}
case "$profile" in
  release) cargo build --release -p sluice-cli --bin sluice ;;
  debug) cargo build -p sluice-cli --bin sluice ;;
  *) echo "SLUICE_PROFILE must be release or debug" >&2; exit 1 ;;
esac
ctx=docker/context
rm -rf "$ctx" && mkdir -p "$ctx/rootfs/usr/local/bin" "$ctx/rootfs/data" "$ctx/rootfs/tmp"
# Debug info stays in target/ for profiling; the image needs none of it.
objcopy --strip-debug "$target/$profile/sluice" "$ctx/rootfs/usr/local/bin/sluice"
# Each library at the path the dynamic loader will look for it.
ldd "$target/$profile/sluice" | grep -o '/[^ ]*' | while read -r lib; do
  mkdir -p "$ctx/rootfs$(dirname "$lib")"
  cp -L "$lib" "$ctx/rootfs$lib"
done
cp docker/Dockerfile "$ctx/Dockerfile"
echo "docker/context is ready: docker-compose up -d --build"
