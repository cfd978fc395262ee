# kill -9 in the middle of writing a checkpoint: `latest` still names the previous, complete checkpoint, the
# half-written file is only a temporary file, and --resume auto continues exactly (same losses as a run that
# was never killed).
source "$MSATRAIN_SOURCE_DIR/tests/lib.sh"
data=$(small_corpus)
run=(train --config "$SRC/configs/tiny.yaml" "${TINY_SETS[@]}" --set data.dir="$data" --set train.steps=8
     --set eval.every=0 --set checkpoint.every=2)
ckpts="$TMP/run/checkpoints"

"$MPIRUN" 2 "$BIN" "${run[@]}" --set run.dir="$TMP/straight" >/dev/null

# The save of step 4 sleeps halfway through its file; kill -9 both ranks then.
MSATRAIN_INJECT_CKPT_SLEEP=4:60 "$MPIRUN" 2 "$BIN" "${run[@]}" --set run.dir="$TMP/run" >"$TMP/run.log" 2>&1 &
launcher=$!
for _ in $(seq 600); do
  grep -q "MSATRAIN_INJECT_CKPT_SLEEP: sleeping" "$TMP/run.log" && break
  sleep 0.1
done
grep -q "MSATRAIN_INJECT_CKPT_SLEEP: sleeping" "$TMP/run.log" || { kill -9 "$launcher"; fail "the save never started"; }
ranks=$(ps -o pid= --ppid "$launcher")
[[ -n "$ranks" ]] || fail "no rank processes under mpirun"
kill -9 $ranks
wait "$launcher" && fail "mpirun exited 0 after its ranks were killed" || true
ls -la "$ckpts"

tmpfile=$(ls -A "$ckpts" | grep '^\.step_00000004\.h5\.tmp\.' || true)
[[ -n "$tmpfile" ]] || fail "no partial temporary file of step 4 (was the kill too late?)"
[[ ! -e "$ckpts/step_00000004.h5" ]] || fail "step_00000004.h5 exists although its save was killed"
[[ $(cat "$ckpts/latest") == "step_00000002.h5" ]] || fail "latest is '$(cat "$ckpts/latest")', expected step_00000002.h5"
"$BIN" ckpt inspect "$ckpts/step_00000002.h5" >/dev/null || fail "the previous checkpoint does not load"
echo "ok: after kill -9 mid-save, latest -> step_00000002.h5 (loadable), partial file $tmpfile"

"$MPIRUN" 2 "$BIN" "${run[@]}" --set run.dir="$TMP/run" --resume auto >"$TMP/resume.log"
grep -qF "resuming from $ckpts/step_00000002.h5 at step 2" "$TMP/resume.log" || fail "$(head -n 3 "$TMP/resume.log")"
[[ ! -e "$ckpts/$tmpfile" ]] || fail "the partial file was not cleaned up"
[[ $(cat "$ckpts/latest") == "step_00000008.h5" ]] || fail "latest is '$(cat "$ckpts/latest")' after the resumed run"
[[ "$(metric "$TMP/run/metrics.jsonl" step | tr '\n' ' ')" == "1 2 3 4 5 6 7 8 " ]] ||
  fail "steps in metrics.jsonl: $(metric "$TMP/run/metrics.jsonl" step | tr '\n' ' ')"
[[ "$(metric "$TMP/run/metrics.jsonl" loss)" == "$(metric "$TMP/straight/metrics.jsonl" loss)" ]] ||
  fail "losses differ from the run that was never killed"
echo "ok: resumed from step 2; steps 1..8 once each, losses identical to the uninterrupted run"
