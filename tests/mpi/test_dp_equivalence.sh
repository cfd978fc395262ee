# Data parallel: 5 steps with -np 2 (dp = 2) and -np 1 (dp = 1) at the same global batch give the same losses
# and gradient norms within 1e-5 relative.
source "$MSATRAIN_SOURCE_DIR/tests/lib.sh"
data=$(small_corpus)
common=(train --config "$SRC/configs/tiny.yaml" "${TINY_SETS[@]}" --set data.dir="$data" --set train.steps=5
        --set eval.every=0)
"$MPIRUN" 1 "$BIN" "${common[@]}" --set parallel.dp=1 --set run.dir="$TMP/np1" >/dev/null
"$MPIRUN" 2 "$BIN" "${common[@]}" --set parallel.dp=2 --set run.dir="$TMP/np2" >/dev/null
same_steps "$TMP/np1/metrics.jsonl" "$TMP/np2/metrics.jsonl" 5 1e-5 loss grad_norm
