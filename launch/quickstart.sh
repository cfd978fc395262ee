#!/usr/bin/env bash
# From a fresh clone: install what is missing, build, fetch and prepare the default corpus (State of the Union
# speeches, byte-level), train configs/tiny.yaml on 2 ranks, and say where the results are.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
start=$(date +%s)

launch/install_deps.sh
echo "== build"
launch/build.sh msatrain
echo "== data"
data/prepare_sotu.sh
echo "== train (2 ranks)"
launch/mpirun.sh 2 build/msatrain train --config configs/tiny.yaml "$@"

echo
echo "Done in $(( $(date +%s) - start )) s."
echo "Results: runs/tiny/ (config.yaml = the resolved config, metrics.jsonl = one JSON line per logged step;"
echo "         the last val_loss line there is the final validation loss)"
grep val_loss runs/tiny/metrics.jsonl | tail -n 1
