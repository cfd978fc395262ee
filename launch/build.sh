#!/usr/bin/env bash
# Configures and builds msatrain into build/ (Release, Ninja). Arguments name targets (default: all);
# extra configure options go in MSATRAIN_CMAKE_ARGS, e.g. MSATRAIN_CMAKE_ARGS=-DMSATRAIN_CUDA=OFF.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck disable=SC2086
cmake -S "$root" -B "$root/build" -G Ninja -DCMAKE_BUILD_TYPE=Release ${MSATRAIN_CMAKE_ARGS:-} >/dev/null
targets=()
for t in "$@"; do targets+=(--target "$t"); done
cmake --build "$root/build" -j "$(nproc)" "${targets[@]}"
