# configs/tiny_moe.yaml (shrunk) trains with expert parallel on 2 ranks: the loss falls, metrics.jsonl carries
# the MoE metrics, the progress line shows them; bad MoE layouts stop before any work with the keys named.
source "$MSATRAIN_SOURCE_DIR/tests/lib.sh"
data=$(small_corpus)
run=(train --config "$SRC/configs/tiny_moe.yaml" "${TINY_SETS[@]}" --set moe.d_ff=32 --set data.dir="$data"
     --set train.steps=20 --set eval.every=10 --set checkpoint.every=0 --set run.dir="$TMP/run")
"$MPIRUN" 2 "$BIN" "${run[@]}" --set parallel.ep=2 >"$TMP/train.log"
grep -qE "^step 20/20 \| loss [0-9.]+ \| aux [0-9.]+ z [0-9.]+ load [0-9.]+ \| lr" "$TMP/train.log" ||
  fail "progress line: $(grep '^step 20/20' "$TMP/train.log")"
python3 - "$TMP/run/metrics.jsonl" <<'PY'
import json, sys
lines = [json.loads(l) for l in open(sys.argv[1])]
train = [d for d in lines if 'val_loss' not in d]
assert len(train) == 20, len(train)
for d in train:
    for k in ('aux_loss', 'z_loss', 'dropped_token_share', 'expert_load_max_over_mean'):
        assert k in d, (k, d)
    assert len(d['expert_load_max_over_mean']) == 1, d  # layer 0 dense, layer 1 MoE
    assert 1.0 <= d['expert_load_max_over_mean'][0] <= 8.0, d
    assert d['dropped_token_share'] == 0, d          # dropless by default
    assert d['aux_loss'] > 0 and d['z_loss'] > 0, d
assert train[-1]['lm_loss'] < train[0]['lm_loss'] - 0.5, (train[0]['lm_loss'], train[-1]['lm_loss'])
assert any('val_loss' in d for d in lines)
print(f"ok: lm_loss {train[0]['lm_loss']:.3f} -> {train[-1]['lm_loss']:.3f}, "
      f"load {train[-1]['expert_load_max_over_mean']}, aux {train[-1]['aux_loss']:.3f}")
PY

# Every layer dense (moe.dense_layers names them all): no MoE statistics to average, and none of them NaN.
"$BIN" "${run[@]}" --set parallel.dp=1 --set moe.dense_layers=0-1 --set train.steps=2 --set eval.every=0 --set run.dir="$TMP/all_dense" \
  >/dev/null
python3 - "$TMP/all_dense/metrics.jsonl" <<'PY'
import json, math, sys
for d in (json.loads(l) for l in open(sys.argv[1]) if 'val_loss' not in l):
    assert math.isfinite(d['loss']) and d.get('aux_loss', 0) == 0 and d.get('z_loss', 0) == 0, d
    assert all(math.isfinite(v) for v in d.values() if isinstance(v, float)), d
PY

bad=(train --config "$SRC/configs/tiny_moe.yaml" --set data.dir="$data" --set run.dir="$TMP/bad")
expect_fail "ep does not divide the experts" "parallel.ep (4) must divide moe.n_experts (6)" \
  "$BIN" "${bad[@]}" --set moe.n_experts=6 --set parallel.dp=4 --set parallel.ep=4
expect_fail "ep does not divide the ranks" "parallel.ep (4) must divide parallel.dp x parallel.cp = 2" \
  "$BIN" "${bad[@]}" --set parallel.ep=4
expect_fail "top_k above the experts" "moe.top_k (9) must be <= moe.n_experts (8)" "$BIN" "${bad[@]}" --set moe.top_k=9
expect_fail "ep with a dense model" "but model.ffn is dense" "$BIN" "${bad[@]}" --set model.ffn=dense --set parallel.ep=2
expect_fail "layout does not fit the world" "does not match the 4 MPI ranks" \
  "$MPIRUN" 4 "$BIN" "${bad[@]}" --set parallel.ep=2
[[ ! -e "$TMP/bad/metrics.jsonl" ]] || fail "a rejected run wrote metrics"
