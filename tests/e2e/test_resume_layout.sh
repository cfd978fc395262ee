# Resume under another data-parallel layout: saved at dp=2 on 2 ranks and resumed at dp=1 on 1 rank (and the
# other way round), the run keeps the global batch and data order: losses within 1e-5 relative of the run
# that was never interrupted.
source "$MSATRAIN_SOURCE_DIR/tests/lib.sh"
data=$(small_corpus)
run=(train --config "$SRC/configs/tiny.yaml" "${TINY_SETS[@]}" --set data.dir="$data" --set train.steps=12
     --set eval.every=0 --set checkpoint.every=6)

"$MPIRUN" 2 "$BIN" "${run[@]}" --set run.dir="$TMP/straight" >/dev/null

check_close() {  # check_close REFERENCE RESUMED
  same_steps "$1" "$2" 12 1e-5 loss grad_norm lr
}

# dp=2 (2 ranks) -> dp=1 (1 rank)
MSATRAIN_INJECT_FAILURE=1:6 expect_fail "crash in step 7 at dp=2" "injected failure" \
  "$MPIRUN" 2 "$BIN" "${run[@]}" --set run.dir="$TMP/down"
"$MPIRUN" 1 "$BIN" "${run[@]}" --set run.dir="$TMP/down" --set parallel.dp=1 --resume auto >"$TMP/down.log"
grep -q "written by msatrain .* with dp=2 cp=1 ep=1 on 2 rank(s)" "$TMP/down.log" || fail "$(head -n 3 "$TMP/down.log")"
grep -q "the parallel layout changes to dp=1 cp=1 ep=1 on 1 rank(s)" "$TMP/down.log" || fail "$(head -n 3 "$TMP/down.log")"
check_close "$TMP/straight/metrics.jsonl" "$TMP/down/metrics.jsonl"

# dp=1 (1 rank) -> dp=2 (2 ranks)
MSATRAIN_INJECT_FAILURE=0:6 expect_fail "crash in step 7 at dp=1" "injected failure" \
  "$MPIRUN" 1 "$BIN" "${run[@]}" --set run.dir="$TMP/up" --set parallel.dp=1
"$MPIRUN" 2 "$BIN" "${run[@]}" --set run.dir="$TMP/up" --resume auto >"$TMP/up.log"
grep -q "the parallel layout changes to dp=2 cp=1 ep=1 on 2 rank(s)" "$TMP/up.log" || fail "$(head -n 3 "$TMP/up.log")"
check_close "$TMP/straight/metrics.jsonl" "$TMP/up/metrics.jsonl"
