# Two ranks on one GPU (the host-staged MPI path: NCCL refuses two ranks on one device) give the same losses and
# gradient norms as one rank for 5 steps, within bf16 tolerance. Skipped (exit 77) where there is no GPU.
source "$MSATRAIN_SOURCE_DIR/tests/lib.sh"
require_gpu
data=$(small_corpus)
common=(train --config "$SRC/configs/tiny.yaml" "${TINY_SETS[@]}" --set data.dir="$data" --set train.steps=5
        --set eval.every=0 --set device=cuda --set model.head_dim=32)  # the GPU attention takes 32, 64, 128
"$MPIRUN" 1 "$BIN" "${common[@]}" --set parallel.dp=1 --set run.dir="$TMP/np1" >/dev/null
MSATRAIN_NCCL=0 "$MPIRUN" 2 "$BIN" "${common[@]}" --set parallel.dp=2 --set run.dir="$TMP/np2" >/dev/null
same_steps "$TMP/np1/metrics.jsonl" "$TMP/np2/metrics.jsonl" 5 1e-3 loss grad_norm  # bf16 sums in another order
