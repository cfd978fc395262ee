# Context parallel: 5 steps with each sequence split over cp = 2 and 4 ranks give the same losses and gradient
# norms as cp = 1 within 1e-5 relative — dense GQA; MSA through its warmup (steps 1-2) into the sparse phase
# (steps 3-5); cp = 2 combined with dp = 2, and with MoE over ep = 2. The validation loss after the last step too.
source "$MSATRAIN_SOURCE_DIR/tests/lib.sh"
data=$(small_corpus)
common=(train --config "$SRC/configs/tiny.yaml" "${TINY_SETS[@]}" --set data.dir="$data" --set train.steps=5
        --set eval.every=0 --set checkpoint.every=0)
# MSA at T = 64 with blocks of 8 and 3 blocks per query: sparse from the 25th token on. Layer 0 stays dense.
msa=(--set attention.type=msa --set attention.block_size=8 --set attention.topk_blocks=3
     --set attention.index_head_dim=16 --set attention.warmup_steps=2 --set attention.dense_layers=0
     --set attention.recall_every=1)

same() {  # same REFERENCE_DIR DIR KEY...: every step's KEYs within 1e-5 relative
  local ref="$1" dir="$2"
  shift 2
  python3 - "$ref/metrics.jsonl" "$dir/metrics.jsonl" "$@" <<'PY'
import json, sys
def train(path):
    return [json.loads(l) for l in open(path) if 'val_loss' not in l]
a, b = train(sys.argv[1]), train(sys.argv[2])
assert len(a) == 5 and len(b) == 5, (len(a), len(b))
worst = 0.0
for x, y in zip(a, b):
    assert x['phase'] == y['phase'], (x['phase'], y['phase'])
    for k in sys.argv[3:]:
        rel = abs(x[k] - y[k]) / max(abs(x[k]), 1e-12)
        assert rel < 1e-5, f"step {x['step']}: {k} {x[k]} vs {y[k]}: {rel:.2e} relative"
        worst = max(worst, rel)
va = [json.loads(l)['val_loss'] for l in open(sys.argv[1]) if 'val_loss' in l]
vb = [json.loads(l)['val_loss'] for l in open(sys.argv[2]) if 'val_loss' in l]
assert len(va) == 1 and len(vb) == 1 and abs(va[0] - vb[0]) < 1e-5 * abs(va[0]), (va, vb)
print(f"ok: {sys.argv[2]} matches {sys.argv[1]} on {', '.join(sys.argv[3:])}: largest relative difference {worst:.2e}; phases {[x['phase'] for x in b]}")
PY
}

# Dense GQA.
"$MPIRUN" 1 "$BIN" "${common[@]}" --set parallel.dp=1 --set run.dir="$TMP/gqa_cp1" >/dev/null
for cp in 2 4; do
  "$MPIRUN" $cp "$BIN" "${common[@]}" --set parallel.dp=1 --set parallel.cp=$cp --set run.dir="$TMP/gqa_cp$cp" >/dev/null
  same "$TMP/gqa_cp1" "$TMP/gqa_cp$cp" loss lm_loss grad_norm
done

# MSA: warmup for 2 steps, then sparse.
"$MPIRUN" 1 "$BIN" "${common[@]}" "${msa[@]}" --set parallel.dp=1 --set run.dir="$TMP/msa_cp1" >/dev/null
for cp in 2 4; do
  "$MPIRUN" $cp "$BIN" "${common[@]}" "${msa[@]}" --set parallel.dp=1 --set parallel.cp=$cp \
    --set run.dir="$TMP/msa_cp$cp" >/dev/null
  same "$TMP/msa_cp1" "$TMP/msa_cp$cp" loss lm_loss kl_loss grad_norm index_grad_norm selected_share index_recall
done
metric "$TMP/msa_cp4/metrics.jsonl" attn_imbalance | python3 -c "
import sys
v = [float(x) for x in sys.stdin]
assert len(v) == 5 and all(x >= 1.0 for x in v), v
print('attn_imbalance at cp=4 (max/mean attended pairs per rank):', ' '.join(f'{x:.4f}' for x in v))"

# cp = 2 with dp = 2 (4 ranks), dense and MSA.
"$MPIRUN" 4 "$BIN" "${common[@]}" --set parallel.dp=2 --set parallel.cp=2 --set run.dir="$TMP/gqa_dp2cp2" >/dev/null
same "$TMP/gqa_cp1" "$TMP/gqa_dp2cp2" loss lm_loss grad_norm
"$MPIRUN" 4 "$BIN" "${common[@]}" "${msa[@]}" --set parallel.dp=2 --set parallel.cp=2 \
  --set run.dir="$TMP/msa_dp2cp2" >/dev/null
# (index_recall is sampled on each dp slice's first micro-batch, so it depends on dp: not compared here.)
same "$TMP/msa_cp1" "$TMP/msa_dp2cp2" loss lm_loss kl_loss grad_norm index_grad_norm selected_share

# cp = 2 with MoE over ep = 2 (2 ranks: the cp pair is also the ep pair), dense and MSA attention. Dropless routing
# and no load-balancing term: the aux loss and a capacity are statistics of each rank's own tokens, which cp
# changes (docs/moe.md); the z loss is per token and stays.
moe=(--set model.ffn=moe --set moe.n_experts=4 --set moe.top_k=2 --set moe.d_ff=32 --set moe.dense_layers=none
     --set moe.aux_loss_coef=0 --set moe.z_loss_coef=0.001)
"$MPIRUN" 1 "$BIN" "${common[@]}" "${moe[@]}" --set parallel.dp=1 --set run.dir="$TMP/moe_cp1" >/dev/null
"$MPIRUN" 2 "$BIN" "${common[@]}" "${moe[@]}" --set parallel.dp=1 --set parallel.cp=2 --set parallel.ep=2 \
  --set run.dir="$TMP/moe_cp2ep2" >/dev/null
same "$TMP/moe_cp1" "$TMP/moe_cp2ep2" loss lm_loss grad_norm z_loss
"$MPIRUN" 1 "$BIN" "${common[@]}" "${moe[@]}" "${msa[@]}" --set parallel.dp=1 --set run.dir="$TMP/moe_msa_cp1" >/dev/null
"$MPIRUN" 2 "$BIN" "${common[@]}" "${moe[@]}" "${msa[@]}" --set parallel.dp=1 --set parallel.cp=2 --set parallel.ep=2 \
  --set run.dir="$TMP/moe_msa_cp2ep2" >/dev/null
same "$TMP/moe_msa_cp1" "$TMP/moe_msa_cp2ep2" loss lm_loss kl_loss grad_norm index_grad_norm z_loss
