# MoE checkpoints hold every expert as a global tensor: a run saved with ep=2 (experts split over 2 ranks)
# resumes with ep=1 on one rank and with ep=4 on four ranks, and the losses continue within 1e-5 relative of
# the run that was never interrupted; resumed with the same layout, they continue bit for bit.
source "$MSATRAIN_SOURCE_DIR/tests/lib.sh"
data=$(small_corpus)
run=(train --config "$SRC/configs/tiny.yaml" "${TINY_SETS[@]}" --set data.dir="$data" --set train.steps=12
     --set eval.every=0 --set checkpoint.every=6 --set model.ffn=moe --set moe.n_experts=8 --set moe.top_k=2
     --set moe.d_ff=32 --set moe.dense_layers=0 --set moe.shared_experts=1)

"$MPIRUN" 2 "$BIN" "${run[@]}" --set parallel.ep=2 --set run.dir="$TMP/straight" >/dev/null

# The file written at ep=2 lists all 8 experts of the MoE layer (params and both AdamW moments).
"$BIN" ckpt inspect "$TMP/straight/checkpoints/step_00000006.h5" >"$TMP/inspect.txt"
for e in 0 1 2 3 4 5 6 7; do
  for kind in params optim/m optim/v; do
    grep -qE "^  $kind/layers.1.ffn.experts.$e.w13 +f32 \(64, 64\) .* ok$" "$TMP/inspect.txt" ||
      fail "no $kind/layers.1.ffn.experts.$e.w13 in the ep=2 checkpoint"
  done
done
[[ $(grep -cE '^  params/layers.1.ffn.experts.[0-9]+.w(13|2) ' "$TMP/inspect.txt") == 16 ]] || fail "not 16 expert tensors"
grep -qE "^  moe +8 experts \(top-2, softmax scores, renormalised\), d_ff 32, shared 1, dense_layers 0" "$TMP/inspect.txt" ||
  fail "inspect shows no moe line: $(grep '^  moe' "$TMP/inspect.txt")"
echo "ok: the ep=2 checkpoint holds the 8 experts as global tensors"

check_close() {  # check_close REFERENCE RESUMED [TOLERANCE]
  same_steps "$1" "$2" 12 "${3:-1e-5}" loss grad_norm aux_loss z_loss lr
}

# ep=2 on 2 ranks -> the same layout: bit for bit
MSATRAIN_INJECT_FAILURE=1:8 expect_fail "crash in step 9 at ep=2" "injected failure" \
  "$MPIRUN" 2 "$BIN" "${run[@]}" --set parallel.ep=2 --set run.dir="$TMP/same"
"$MPIRUN" 2 "$BIN" "${run[@]}" --set parallel.ep=2 --set run.dir="$TMP/same" --resume auto >"$TMP/same.log"
check_close "$TMP/straight/metrics.jsonl" "$TMP/same/metrics.jsonl" 0

# ep=2 on 2 ranks -> ep=1 on 1 rank
MSATRAIN_INJECT_FAILURE=1:6 expect_fail "crash in step 7 at ep=2" "injected failure" \
  "$MPIRUN" 2 "$BIN" "${run[@]}" --set parallel.ep=2 --set run.dir="$TMP/down"
"$MPIRUN" 1 "$BIN" "${run[@]}" --set run.dir="$TMP/down" --set parallel.dp=1 --resume auto >"$TMP/down.log"
grep -q "written by msatrain .* with dp=2 cp=1 ep=2 on 2 rank(s)" "$TMP/down.log" || fail "$(head -n 3 "$TMP/down.log")"
grep -q "the parallel layout changes to dp=1 cp=1 ep=1 on 1 rank(s)" "$TMP/down.log" || fail "$(head -n 3 "$TMP/down.log")"
check_close "$TMP/straight/metrics.jsonl" "$TMP/down/metrics.jsonl"

# ep=2 on 2 ranks -> ep=4 on 4 ranks
MSATRAIN_INJECT_FAILURE=0:6 expect_fail "crash in step 7 at ep=2" "injected failure" \
  "$MPIRUN" 2 "$BIN" "${run[@]}" --set parallel.ep=2 --set run.dir="$TMP/up"
"$MPIRUN" 4 "$BIN" "${run[@]}" --set run.dir="$TMP/up" --set parallel.dp=4 --set parallel.ep=4 --resume auto >"$TMP/up.log"
grep -q "the parallel layout changes to dp=4 cp=1 ep=4 on 4 rank(s)" "$TMP/up.log" || fail "$(head -n 3 "$TMP/up.log")"
check_close "$TMP/straight/metrics.jsonl" "$TMP/up/metrics.jsonl"

# And back: the ep=4 run's last checkpoint (step 12) loads at ep=2 (nothing left to train, it just loads).
"$MPIRUN" 2 "$BIN" "${run[@]}" --set run.dir="$TMP/up" --set parallel.ep=2 --resume auto >"$TMP/back.log"
grep -q "written by msatrain .* with dp=4 cp=1 ep=4 on 4 rank(s)" "$TMP/back.log" || fail "$(head -n 3 "$TMP/back.log")"
