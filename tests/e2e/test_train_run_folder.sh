# A short run on 2 ranks writes the run folder of the contract and learns something.
source "$MSATRAIN_SOURCE_DIR/tests/lib.sh"
data=$(small_corpus)
"$MPIRUN" 2 "$BIN" train --config "$SRC/configs/tiny.yaml" "${TINY_SETS[@]}" --set data.dir="$data" \
  --set train.steps=30 --set eval.every=10 --set run.dir="$TMP/run" >"$TMP/log"
cat "$TMP/log" | tail -n 5
grep -q "eta" "$TMP/log" || fail "no progress line"
[[ -f "$TMP/run/config.yaml" ]] || fail "no config.yaml"
grep -q "steps: 30" "$TMP/run/config.yaml" || fail "config.yaml does not hold the --set value"
python3 - "$TMP/run/metrics.jsonl" <<'PY'
import json, sys
lines = [json.loads(l) for l in open(sys.argv[1])]
train = [l for l in lines if 'val_loss' not in l]
val = [l for l in lines if 'val_loss' in l]
assert [l['step'] for l in train] == list(range(1, 31)), 'one line per step expected'
for key in ('step', 'loss', 'lm_loss', 'lr', 'grad_norm', 'tokens_per_s', 'phase', 'skipped_steps'):
    assert key in train[0], f'metrics lack {key}'
assert [l['step'] for l in val] == [10, 20, 30], val
assert train[-1]['loss'] < train[0]['loss'] - 1.0, (train[0]['loss'], train[-1]['loss'])
assert val[-1]['val_loss'] < 4.0, val
print('ok: metrics', train[0]['loss'], '->', train[-1]['loss'], 'val', val[-1]['val_loss'])
PY
