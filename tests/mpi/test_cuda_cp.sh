# Context parallel on one GPU (host-staged key gather and fp32 gradient scatter): cp = 2 gives the same losses and
# gradient norms as cp = 1 for 5 steps within bf16 tolerance, and logs its traffic. Skipped (77) without a GPU.
source "$MSATRAIN_SOURCE_DIR/tests/lib.sh"
require_gpu
data=$(small_corpus)
common=(train --config "$SRC/configs/tiny.yaml" "${TINY_SETS[@]}" --set data.dir="$data" --set train.steps=5
        --set eval.every=0 --set device=cuda --set model.head_dim=32 --set parallel.dp=1)
"$MPIRUN" 1 "$BIN" "${common[@]}" --set run.dir="$TMP/cp1" >/dev/null
"$MPIRUN" 2 "$BIN" "${common[@]}" --set parallel.cp=2 --set run.dir="$TMP/cp2" >/dev/null
same_steps "$TMP/cp1/metrics.jsonl" "$TMP/cp2/metrics.jsonl" 5 2e-3 loss grad_norm
metric "$TMP/cp2/metrics.jsonl" cp_bytes_in | python3 -c "
import sys
v = [float(x) for x in sys.stdin]
# per step, 2 layers x 4 micro-batches x B=4 rows of 32 tokens x Hkv 2 x d 32: K and V gathered in bf16, dK and dV
# summed in fp32
want = 2 * 4 * 4 * 32 * 2 * 32 * (2 * 2 + 2 * 4)
assert v and all(x == want for x in v), (v, want)
print('ok: cp_bytes_in per step', v[0])"
