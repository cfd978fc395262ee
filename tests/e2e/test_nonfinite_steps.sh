# A non-finite loss or gradient skips the step and is counted; too many in a row stop the run on every rank.
source "$MSATRAIN_SOURCE_DIR/tests/lib.sh"
data=$(small_corpus)
run=(train --config "$SRC/configs/tiny.yaml" "${TINY_SETS[@]}" --set data.dir="$data" --set train.steps=6
     --set eval.every=0)

MSATRAIN_INJECT_NAN_STEPS=2 "$MPIRUN" 2 "$BIN" "${run[@]}" --set run.dir="$TMP/one" >"$TMP/one.log"
grep -q "SKIPPED" "$TMP/one.log" || fail "the skipped step is not shown"
last=$(metric "$TMP/one/metrics.jsonl" skipped_steps | tail -n 1)
[[ "$last" == "1" ]] || fail "skipped_steps is $last, expected 1"
[[ $(metric "$TMP/one/metrics.jsonl" step | tail -n 1) == 6 ]] || fail "the run did not finish"
echo "ok: one NaN step skipped and counted, run finished"

MSATRAIN_INJECT_NAN_STEPS=1,2,3,4 expect_fail "NaN steps in a row stop the run" "steps in a row had a non-finite" \
  "$MPIRUN" 2 "$BIN" "${run[@]}" --set run.dir="$TMP/many" --set train.max_bad_steps=2
