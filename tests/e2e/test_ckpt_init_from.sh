# model.init_from: a run starts from another run's checkpoint, loading the tensors whose name and shape match
# and initialising the others fresh; optimizer and data start fresh. Cases: a qk_norm model from a checkpoint
# trained without q/k norms, and an MSA model from a dense GQA checkpoint (the Index Branch is new).
source "$MSATRAIN_SOURCE_DIR/tests/lib.sh"
data=$(small_corpus)
run=(train --config "$SRC/configs/tiny.yaml" "${TINY_SETS[@]}" --set data.dir="$data" --set eval.every=0)
"$MPIRUN" 2 "$BIN" "${run[@]}" --set train.steps=30 --set model.qk_norm=false --set run.dir="$TMP/src" >/dev/null
src="$TMP/src/checkpoints/step_00000030.h5"

"$MPIRUN" 2 "$BIN" "${run[@]}" --set train.steps=3 --set model.qk_norm=true --set run.dir="$TMP/fresh" >/dev/null
"$MPIRUN" 2 "$BIN" "${run[@]}" --set train.steps=3 --set model.qk_norm=true --set model.init_from="$src" \
  --set run.dir="$TMP/init" >"$TMP/init.log"
head -n 5 "$TMP/init.log"
grep -qF "msatrain: init_from $src (step 30): loaded 14 of 18 parameter tensors" "$TMP/init.log" || fail "no load report"
grep -qF "initialised fresh: layers.0.attn.q_norm, layers.0.attn.k_norm, layers.1.attn.q_norm, layers.1.attn.k_norm" \
  "$TMP/init.log" || fail "the fresh tensors are not listed"
grep -q "  loaded: embed.weight, layers.0.attn_norm, layers.0.attn.wqkv," "$TMP/init.log" || fail "loaded tensors not listed"
python3 - "$TMP/fresh/metrics.jsonl" "$TMP/init/metrics.jsonl" "$TMP/src/metrics.jsonl" <<'PY'
import json, sys
first = lambda p: [json.loads(l) for l in open(p) if 'val_loss' not in l]
fresh, init, src = first(sys.argv[1]), first(sys.argv[2]), first(sys.argv[3])
assert [d['step'] for d in init] == [1, 2, 3], 'the run starts at step 1'
# Trained weights: the first loss is near the source run's last, far below a fresh model's.
assert init[0]['loss'] < fresh[0]['loss'] - 1.0, (init[0]['loss'], fresh[0]['loss'])
assert abs(init[0]['loss'] - src[-1]['loss']) < 0.5, (init[0]['loss'], src[-1]['loss'])
print('ok: first loss', init[0]['loss'], 'vs fresh', fresh[0]['loss'], 'and source', src[-1]['loss'])
PY
grep -q "optimizer steps 3," <<<"$("$BIN" ckpt inspect "$TMP/init/checkpoints/step_00000003.h5")" ||
  fail "the optimizer did not start fresh"

# Dense GQA -> MSA (layer 0 stays dense, layer 1 gets an Index Branch).
"$MPIRUN" 2 "$BIN" train --config "$SRC/configs/tiny_msa.yaml" "${TINY_SETS[@]}" --set data.dir="$data" \
  --set model.seq_len=128 --set train.batch_tokens=1024 --set train.micro_batch=2 --set attention.block_size=16 \
  --set attention.topk_blocks=3 --set attention.index_head_dim=16 --set attention.warmup_steps=2 \
  --set train.steps=4 --set eval.every=0 --set model.qk_norm=false --set model.init_from="$src" \
  --set run.dir="$TMP/msa" >"$TMP/msa.log"
grep -qF "msatrain: init_from $src (step 30): loaded 14 of 18 parameter tensors" "$TMP/msa.log" ||
  fail "no load report: $(head -n 4 "$TMP/msa.log")"
grep -qF "initialised fresh: layers.1.attn.index.wq, layers.1.attn.index.wk, layers.1.attn.index.q_norm, layers.1.attn.index.k_norm" \
  "$TMP/msa.log" || fail "the Index Branch is not listed as fresh: $(head -n 4 "$TMP/msa.log")"
python3 - "$TMP/fresh/metrics.jsonl" "$TMP/msa/metrics.jsonl" <<'PY'
import json, sys
first = lambda p: [json.loads(l) for l in open(p) if 'val_loss' not in l]
fresh, msa = first(sys.argv[1]), first(sys.argv[2])
assert [d['phase'] for d in msa] == ['warmup', 'warmup', 'sparse', 'sparse'], msa
assert msa[0]['lm_loss'] < fresh[0]['lm_loss'] - 1.0, (msa[0]['lm_loss'], fresh[0]['lm_loss'])
print('ok: GQA -> MSA: first lm_loss', msa[0]['lm_loss'], 'vs fresh', fresh[0]['lm_loss'], '; phases', [d['phase'] for d in msa])
PY

expect_fail "init_from with another shape" \
  "model.init_from: checkpoint $src: tensor params/embed.weight has shape (256, 64) in the file but (256, 32) in this model" \
  "$MPIRUN" 2 "$BIN" "${run[@]}" --set train.steps=3 --set model.d_model=32 --set model.init_from="$src" \
  --set run.dir="$TMP/bad"
expect_fail "init_from a missing file" "model.init_from: checkpoint $TMP/none.h5: no such file" \
  "$MPIRUN" 2 "$BIN" "${run[@]}" --set train.steps=3 --set model.init_from="$TMP/none.h5" --set run.dir="$TMP/bad"
