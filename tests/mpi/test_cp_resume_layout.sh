# Checkpoints are layout-free under context parallel: an MSA run saved at cp=2 (step 6, in the sparse phase)
# resumes at cp=1 and at cp=4 with losses within 1e-5 relative of the run that was never interrupted.
source "$MSATRAIN_SOURCE_DIR/tests/lib.sh"
data=$(small_corpus)
run=(train --config "$SRC/configs/tiny.yaml" "${TINY_SETS[@]}" --set data.dir="$data" --set train.steps=12
     --set eval.every=0 --set checkpoint.every=6 --set parallel.dp=1
     --set attention.type=msa --set attention.block_size=8 --set attention.topk_blocks=3
     --set attention.index_head_dim=16 --set attention.warmup_steps=4 --set attention.dense_layers=0)

"$MPIRUN" 2 "$BIN" "${run[@]}" --set parallel.cp=2 --set run.dir="$TMP/straight" >/dev/null

check_close() {  # check_close REFERENCE RESUMED
  same_steps "$1" "$2" 12 1e-5 loss lm_loss kl_loss grad_norm index_grad_norm lr
}

for cp in 1 4; do
  dir="$TMP/to_cp$cp"
  MSATRAIN_INJECT_FAILURE=1:6 expect_fail "crash in step 7 at cp=2" "injected failure" \
    "$MPIRUN" 2 "$BIN" "${run[@]}" --set parallel.cp=2 --set run.dir="$dir"
  "$MPIRUN" $cp "$BIN" "${run[@]}" --set parallel.cp=$cp --set run.dir="$dir" --resume auto >"$dir.log"
  grep -q "written by msatrain .* with dp=1 cp=2 ep=1 on 2 rank(s)" "$dir.log" || fail "$(head -n 3 "$dir.log")"
  grep -q "the parallel layout changes to dp=1 cp=$cp ep=1 on $cp rank(s)" "$dir.log" || fail "$(head -n 3 "$dir.log")"
  check_close "$TMP/straight/metrics.jsonl" "$dir/metrics.jsonl"
done
