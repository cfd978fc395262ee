# Shared helpers for the end-to-end and MPI test scripts (sourced). CTest sets MSATRAIN_BIN,
# MSATRAIN_SOURCE_DIR and MSATRAIN_TEST_TMP.
set -euo pipefail
BIN="${MSATRAIN_BIN:?run through ctest}"
SRC="${MSATRAIN_SOURCE_DIR:?run through ctest}"
TMP="${MSATRAIN_TEST_TMP:?run through ctest}"
rm -rf "$TMP"
mkdir -p "$TMP"

fail() { echo "FAIL: $*" >&2; exit 1; }

# A small byte-level corpus prepared from the cached speeches (data/fetch_npm_assets.sh puts them there).
small_corpus() {
  local out="$TMP/shards"
  [[ -f "$out/meta.yaml" ]] && { echo "$out"; return; }
  local speeches="$SRC/data/cache/sotu/package/data"
  [[ -d "$speeches" ]] || fail "missing $speeches: run data/fetch_npm_assets.sh"
  mkdir -p "$TMP/docs"
  cp "$speeches"/19[0-4]*.txt "$TMP/docs/"
  "$BIN" data prepare --input "$TMP/docs" --out "$out" --tokenizer bytes --val-fraction 0.1 >/dev/null
  echo "$out"
}

# Settings for a model that trains in a second.
TINY_SETS=(--set model.d_model=64 --set model.n_layers=2 --set model.n_heads=4 --set model.n_kv_heads=2
           --set model.head_dim=16 --set model.ffn_hidden=96 --set model.seq_len=64 --set train.batch_tokens=1024
           --set train.micro_batch=4 --set train.warmup_steps=2 --set train.log_every=1 --set eval.sequences=8)

MPIRUN="$SRC/launch/mpirun.sh"  # $MPIRUN NP command...

# expect_fail WHAT PATTERN command...: the command must exit non-zero within 120 s and print PATTERN.
expect_fail() {
  local what="$1" pattern="$2"
  shift 2
  local out rc=0
  out=$(timeout 120 "$@" 2>&1) || rc=$?
  [[ $rc -ne 0 ]] || fail "$what: exited 0; output: $out"
  [[ $rc -ne 124 ]] || fail "$what: hung (killed after 120 s); output: $out"
  grep -qF -- "$pattern" <<<"$out" || fail "$what: message does not contain '$pattern'; output: $out"
  echo "ok: $what -> $(grep -F -- "$pattern" <<<"$out" | head -n 1)"
}

# Column of metrics.jsonl (training lines only) as one value per line.
metric() {  # metric FILE KEY
  python3 -c "
import json, sys
for line in open('$1'):
    d = json.loads(line)
    if '$2' in d and 'val_loss' not in d: print(d['$2'])"
}

# same_steps A_METRICS B_METRICS STEPS TOL KEY...: both runs logged training steps 1..STEPS, each once and in order,
# in the same phase, and every KEY agrees step by step within TOL relative (TOL 0: bit for bit).
same_steps() {
  local a="$1" b="$2" steps="$3" tol="$4"
  shift 4
  python3 - "$a" "$b" "$steps" "$tol" "$@" <<'PY'
import json, sys
a, b, steps, tol, keys = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4]), sys.argv[5:]
def train(path):
    return [json.loads(l) for l in open(path) if 'val_loss' not in l]
ra, rb = train(a), train(b)
for r, path in ((ra, a), (rb, b)):
    assert [d['step'] for d in r] == list(range(1, steps + 1)), f"{path}: steps {[d['step'] for d in r]}"
worst = 0.0
for x, y in zip(ra, rb):
    assert x.get('phase') == y.get('phase'), (x['step'], x.get('phase'), y.get('phase'))
    for key in keys:
        rel = abs(x[key] - y[key]) / max(abs(x[key]), 1e-12)
        assert rel <= tol, f"step {x['step']}: {key} {x[key]} vs {y[key]} differs by {rel:.2e} relative (limit {tol})"
        worst = max(worst, rel)
print(f"ok: {b} matches {a} on {', '.join(keys)} for steps 1..{steps}: largest relative difference {worst:.2e}")
PY
}

# require_gpu: exit 77 (CTest: skipped) with the reason when this machine has no CUDA device.
require_gpu() {
  if "$BIN" --version | grep -qE "no CUDA device|CUDA backend not built"; then
    echo "SKIP: no CUDA device here ($("$BIN" --version | tail -n 1))"
    exit 77
  fi
}
